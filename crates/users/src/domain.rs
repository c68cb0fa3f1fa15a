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
    /// Parses an email address (RFC 5322 addr-spec, at most 254 characters, with a
    /// dot in the domain).
    pub fn parse(value: &str) -> Result<Self, Problem> {
        let value = value.trim();
        if value.len() > 254 {
            return Err("must be at most 254 characters".into());
        }
        let valid = email_address::EmailAddress::parse_with_options(
            value,
            email_address::Options::default()
                .without_display_text()
                .without_domain_literal(),
        )
        .is_ok();
        let dotted_domain = value.rsplit_once('@').is_some_and(|(_, domain)| {
            domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
        if !valid || !dotted_domain {
            return Err("must be a valid email address".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A profile text field with a length limit (display name, bio, custom status).
fn bounded_text(value: &str, min: usize, max: usize) -> Result<String, Problem> {
    let value = value.trim();
    let len = value.chars().count();
    if len < min || len > max {
        return Err(if min > 0 {
            format!("must be {min} to {max} characters")
        } else {
            format!("must be at most {max} characters")
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err("must not contain control characters".into());
    }
    if value.chars().any(deceptive) {
        return Err("must not contain invisible or direction-changing characters".into());
    }
    Ok(value.to_owned())
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

/// A display name: 1 to 32 characters.
pub fn parse_display_name(value: &str) -> Result<String, Problem> {
    bounded_text(value, 1, 32).and_then(|v| {
        if v.contains('\n') {
            Err("must be a single line".into())
        } else {
            Ok(v)
        }
    })
}

/// A bio: at most 190 characters.
pub fn parse_bio(value: &str) -> Result<String, Problem> {
    bounded_text(value, 0, 190)
}

/// A custom status: at most 128 characters, one line.
pub fn parse_status_text(value: &str) -> Result<String, Problem> {
    bounded_text(value, 0, 128).and_then(|v| {
        if v.contains('\n') {
            Err("must be a single line".into())
        } else {
            Ok(v)
        }
    })
}

/// An avatar URL: `http` or `https`, at most 2048 characters.
pub fn parse_avatar_url(value: &str) -> Result<String, Problem> {
    let value = value.trim();
    if value.len() > 2048 {
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
