//! Serde helpers for wire types.

use serde::{Deserialize, Deserializer};

/// For PATCH bodies: tells a missing field (`None`, leave unchanged) from an explicit
/// `null` (`Some(None)`, clear it). Use with `#[serde(default, deserialize_with = ...)]`.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// An optional integer that may come as any JSON number whose value is a whole
/// number (`3` or `3.0`), as JSON Schema's `integer` allows; `null` is `None`. Out of
/// the i64 range or with a fraction, it is refused. Use with
/// `#[serde(default, deserialize_with = ...)]`.
pub fn whole_number<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Number {
        Int(i64),
        Float(f64),
    }
    match Option::<Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Number::Int(n)) => Ok(Some(n)),
        Some(Number::Float(f)) => {
            // Whole and inside i64's range (2^63 is the first float outside it).
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                #[allow(clippy::cast_possible_truncation)]
                Ok(Some(f as i64))
            } else {
                Err(serde::de::Error::custom("must be a whole number"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Form {
        #[serde(default, deserialize_with = "whole_number")]
        n: Option<i64>,
    }

    #[test]
    fn whole_numbers_come_as_integers_or_floats() {
        let n = |json: &str| serde_json::from_str::<Form>(json).map(|f| f.n);
        assert_eq!(n("{}").unwrap(), None);
        assert_eq!(n(r#"{"n":null}"#).unwrap(), None);
        assert_eq!(n(r#"{"n":3}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n":3.0}"#).unwrap(), Some(3));
        assert_eq!(n(r#"{"n":-2e3}"#).unwrap(), Some(-2000));
        assert!(n(r#"{"n":3.5}"#).is_err());
        assert!(n(r#"{"n":1e19}"#).is_err());
        assert!(n(r#"{"n":"3"}"#).is_err());
    }

    #[derive(Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "double_option")]
        bio: Option<Option<String>>,
    }

    #[test]
    fn tells_missing_from_null() {
        let missing: Patch = serde_json::from_str("{}").unwrap();
        assert_eq!(missing.bio, None);
        let null: Patch = serde_json::from_str(r#"{"bio":null}"#).unwrap();
        assert_eq!(null.bio, Some(None));
        let set: Patch = serde_json::from_str(r#"{"bio":"hi"}"#).unwrap();
        assert_eq!(set.bio, Some(Some("hi".to_owned())));
    }
}
