//! Parsed credentials.

/// A password: 8 to 128 characters.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl Password {
    /// Parses a new password.
    pub fn parse(value: &str) -> Result<Self, String> {
        let len = value.chars().count();
        if !(8..=128).contains(&len) {
            return Err("must be 8 to 128 characters".into());
        }
        Ok(Self(value.to_owned()))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A client-chosen device id: identifies a device across logins, so that logging in
/// again from the same device replaces its old session.
pub fn parse_device_id(value: &str) -> Result<String, String> {
    let printable = value.chars().count() <= 128
        && !value.chars().any(char::is_control)
        && !value.trim().is_empty();
    if !printable {
        return Err("must be 1 to 128 printable characters, not all blank".into());
    }
    Ok(value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(!format!("{:?}", Password::parse("secret-password").unwrap()).contains("secret"));
    }
}
