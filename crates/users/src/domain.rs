//! Parsed profile values: once a `Username` exists it is valid, so nothing past the
//! edge checks again.

use std::fmt;

/// The problem with a value, in words for the client.
pub type Problem = String;

/// A username: 3 to 32 of lower-case `a-z`, digits, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Parses a username; `Alice` is refused (lower case only).
    pub fn parse(value: &str) -> Result<Self, Problem> {
        let len = value.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters".into());
        }
        if !value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            return Err("may only contain lower-case letters a-z, digits, '_' and '.'".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address, kept as given; unique without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an email address: an RFC 5322 addr-spec of at most 254 characters, its
    /// local part ASCII, its domain a host name of two or more labels (`a-z`, `0-9`,
    /// `-`, at most 63 each), no display text, no address literal, nothing around it.
    /// This is JSON Schema's `email` format plus a dotted domain, as the OpenAPI
    /// document says.
    pub fn parse(value: &str) -> Result<Self, Problem> {
        if value.chars().count() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let parsed = email_address::EmailAddress::parse_with_options(
            value,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        );
        let valid = parsed.is_ok_and(|address| {
            address.local_part().is_ascii() && dotted_host_name(address.domain())
        });
        if !valid {
            return Err("must be a valid email address".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS host name of two or more labels: `a-z`, `A-Z`, `0-9` and inner `-`, 1 to 63
/// each, at most 253 in all.
fn dotted_host_name(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A profile text field: at most `max` characters as sent (blanks at the ends count,
/// then are trimmed off), no control characters but, where `lines` allows, the line
/// feed, nothing invisible or direction-changing.
fn bounded_text(value: &str, max: usize, lines: Lines) -> Result<String, Problem> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if lines == Lines::One && value.contains('\n') {
        return Err("must be a single line".into());
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must not contain control characters".into());
    }
    if value.chars().any(deceptive) {
        return Err("must not contain invisible or direction-changing characters".into());
    }
    Ok(value.trim().to_owned())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Many,
}

/// Characters that show nothing or reorder the text around them, with which one name
/// can pass for another: bidirectional embeddings, overrides, isolates and marks,
/// zero-width spaces and joiners (but the zero-width joiner, which emoji sequences
/// need), invisible operators and the byte-order mark.
fn deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200C}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

/// A name (of a guild, role or channel, or a nickname): at most `max` characters on
/// one line, not all blank, trimmed; the rules of a display name.
pub fn parse_name(value: &str, max: usize) -> Result<String, Problem> {
    let name = bounded_text(value, max, Lines::One)?;
    if name.is_empty() {
        return Err("must not be blank".into());
    }
    Ok(name)
}

/// A free text (a channel topic, an audit-log reason): at most `max` characters, line
/// feeds allowed, trimmed; the rules of a bio.
pub fn parse_text(value: &str, max: usize) -> Result<String, Problem> {
    bounded_text(value, max, Lines::Many)
}

/// A display name: at most 32 characters on one line, not all blank.
pub fn parse_display_name(value: &str) -> Result<String, Problem> {
    parse_name(value, 32)
}

/// A bio: at most 190 characters.
pub fn parse_bio(value: &str) -> Result<String, Problem> {
    parse_text(value, 190)
}

/// A custom status: at most 128 characters, one line.
pub fn parse_status_text(value: &str) -> Result<String, Problem> {
    bounded_text(value, 128, Lines::One)
}

/// An avatar URL: `http://` or `https://`, a host, no blanks or control characters, at
/// most 2048 characters.
pub fn parse_avatar_url(value: &str) -> Result<String, Problem> {
    if value.chars().count() > 2048 {
        return Err("must be at most 2048 characters".into());
    }
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| "must be an http or https URL".to_owned())?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must be an http or https URL".into());
    }
    Ok(value.to_owned())
}

/// The username of a friend request: any text without control characters (at most
/// 254, the longest login); a name nobody has is a 404, not a malformed request.
/// Compared trimmed and in lower case.
pub fn parse_friend_username(value: &str) -> Result<String, Problem> {
    name_lookup(value, 254)
}

/// The prefix of a user search: at most 32 characters as sent, no control characters;
/// compared trimmed and in lower case.
pub fn parse_search_prefix(value: &str) -> Result<String, Problem> {
    name_lookup(value, 32)
}

/// Text to look usernames up by: at most `max` characters as sent, no control
/// characters (no username holds one); trimmed and in lower case.
fn name_lookup(value: &str, max: usize) -> Result<String, Problem> {
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value.chars().any(char::is_control) {
        return Err("holds control characters; no username does".into());
    }
    Ok(value.trim().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_texts_refuse_invisible_and_direction_changing_characters() {
        for bad in [
            "admin\u{202E}nimda",
            "ali\u{200B}ce",
            "\u{2066}bob\u{2069}",
            "\u{FEFF}carol",
            "dave\u{200F}",
            "\u{3164}",
        ] {
            assert!(parse_display_name(bad).is_err(), "{bad:?}");
            assert!(parse_bio(bad).is_err(), "{bad:?}");
            assert!(parse_status_text(bad).is_err(), "{bad:?}");
        }
        // Emoji sequences keep their zero-width joiner; other scripts are welcome.
        for good in ["👩\u{200D}💻 at work", "Zoë", "مرحبا", "日本語"] {
            assert!(parse_display_name(good).is_ok(), "{good:?}");
            assert!(parse_status_text(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn usernames() {
        for good in ["abc", "alice_smith", "a.b.c", "user123", &"x".repeat(32)] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Alice",
            "al ice",
            "alice!",
            "ålice",
            &"x".repeat(33),
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        for good in ["a@example.com", "Alice.Smith+tag@Example.co.uk"] {
            assert!(Email::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "Alice <a@example.com>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_fields() {
        assert!(parse_display_name("Alice").is_ok());
        assert!(parse_display_name("  ").is_err());
        assert!(parse_display_name(&"x".repeat(33)).is_err());
        assert!(parse_bio(&"x".repeat(190)).is_ok());
        assert!(parse_bio(&"x".repeat(191)).is_err());
        assert!(parse_status_text("two\nlines").is_err());
        assert!(parse_avatar_url("https://cdn.example.com/a.png").is_ok());
        for bad in [
            "ftp://x/a.png",
            "https://",
            "javascript:alert(1)",
            "https://a b",
        ] {
            assert!(parse_avatar_url(bad).is_err(), "{bad}");
        }
    }
}
