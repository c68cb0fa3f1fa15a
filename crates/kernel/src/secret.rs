//! A value that must never be printed: settings such as the JWT secret and database
//! passwords are wrapped in [`Secret`], whose `Debug` and `Display` say `[redacted]`.

use std::fmt;
use std::str::FromStr;

/// A string that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// `Debug` for a type that holds secrets (passwords, tokens, password hashes): the
/// plain fields are printed, the secret ones as `"[redacted]"`, so a request or a row
/// that ends up in a log never carries them.
///
/// ```
/// struct Login { login: String, password: String }
/// synctalk_kernel::debug_redacted!(Login { login } secret { password });
/// let printed = format!("{:?}", Login { login: "alice".into(), password: "hunter22".into() });
/// assert_eq!(printed, r#"Login { login: "alice", password: "[redacted]" }"#);
/// ```
#[macro_export]
macro_rules! debug_redacted {
    ($ty:ident $(<$lt:lifetime>)? { $($field:ident),* $(,)? } secret { $($secret:ident),+ $(,)? }) => {
        impl $(<$lt>)? ::std::fmt::Debug for $ty $(<$lt>)? {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &{ let _ = &self.$secret; "[redacted]" }))+
                    .finish()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose(), "hunter2");
    }
}
