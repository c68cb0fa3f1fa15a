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

#[cfg(test)]
mod tests {
    use super::*;

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
