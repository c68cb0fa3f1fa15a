"""Shared by the bench scripts: adds a row to a table of bench/results/summary.md."""


def add_row(summary, head, row):
    """Appends `row` to the table of the section `head` starts (made when missing)."""
    heading = head.strip().splitlines()[0]
    text = open(summary).read()
    if heading not in text:
        text = text.rstrip("\n") + "\n\n" + head.strip("\n") + "\n"
    start = text.index(heading)
    nxt = text.find("\n## ", start)
    end = len(text) if nxt < 0 else nxt
    rest = text[end:].lstrip("\n")
    text = text[:start] + text[start:end].rstrip("\n") + "\n" + row + "\n" + ("\n" + rest if rest else "")
    open(summary, "w").write(text)
