//! The OpenAPI document says exactly what the server accepts: for every constrained
//! text field, the field's schema in the document (lengths, pattern, format) and the
//! server's own parser agree on every string of a corpus of edge cases and random text.
//! Clients generate their form validation from the document; a schema looser or
//! stricter than the server shows up here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

type Parser = fn(&str) -> bool;

fn parsers() -> Vec<(&'static str, &'static str, Parser)> {
    use synctalk_auth::domain as auth;
    use synctalk_messaging::service as messaging;
    use synctalk_users::domain as users;
    vec![
        ("RegisterRequest", "username", |v| {
            users::Username::parse(v).is_ok()
        }),
        ("RegisterRequest", "email", |v| {
            users::Email::parse(v).is_ok()
        }),
        ("RegisterRequest", "password", |v| {
            auth::Password::parse(v).is_ok()
        }),
        ("RegisterRequest", "device_id", |v| {
            auth::parse_device_id(v).is_ok()
        }),
        ("LoginRequest", "device_id", |v| {
            auth::parse_device_id(v).is_ok()
        }),
        ("UpdateCurrentUser", "display_name", |v| {
            users::parse_display_name(v).is_ok()
        }),
        ("UpdateCurrentUser", "bio", |v| users::parse_bio(v).is_ok()),
        ("UpdateCurrentUser", "status_text", |v| {
            users::parse_status_text(v).is_ok()
        }),
        ("UpdateCurrentUser", "avatar_url", |v| {
            users::parse_avatar_url(v).is_ok()
        }),
        ("FriendRequest", "username", |v| {
            users::parse_friend_username(v).is_ok()
        }),
        // Empty only beside files (which the schema's anyOf says).
        ("SendMessage", "content", |v| {
            v.is_empty() || messaging::parse_content(v).is_ok()
        }),
        ("SendMessage", "nonce", |v| {
            messaging::parse_nonce(v).is_ok()
        }),
        ("EditMessage", "content", |v| {
            messaging::parse_content(v).is_ok()
        }),
    ]
}

/// Characters where parsers and patterns tend to part: controls, every kind of blank,
/// invisible and direction-changing marks, the emoji joiner, URL delimiters, letters
/// outside ASCII and outside the BMP.
const ALPHABET: &[char] = &[
    'a', 'z', 'A', '0', '9', '_', '.', '-', '+', '@', '/', '?', '#', ':', 'h', 't', 'p', 's', ' ',
    '\t', '\n', '\r', '\u{0}', '\u{1f}', '\u{7f}', '\u{85}', '\u{9f}', '\u{a0}', '\u{ad}',
    '\u{61c}', '\u{115f}', '\u{1680}', '\u{180e}', '\u{2000}', '\u{200a}', '\u{200b}', '\u{200d}',
    '\u{200e}', '\u{2028}', '\u{202e}', '\u{202f}', '\u{205f}', '\u{2060}', '\u{2066}', '\u{3000}',
    '\u{3164}', '\u{feff}', '\u{ffa0}', 'é', 'İ', 'ß', '日', '😀',
];

fn corpus() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        " ",
        "a",
        "ab",
        "abc",
        "alice",
        "Alice",
        "a.b_c",
        "a@example.com",
        " a@example.com",
        "a@b",
        "https://x",
        "http://x/a.png",
        "https://",
        "https:///a",
        "https://?a",
        "ftp://x",
        " https://x",
        "https://x ",
        "javascript:alert(1)",
        "correct horse",
        "  x  ",
        "x\ny",
        "👩\u{200d}💻",
        "Zoë",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    // Around every length limit, plain and with a blank at either end.
    for n in [
        1, 2, 3, 7, 8, 31, 32, 33, 127, 128, 129, 189, 190, 191, 253, 254, 255,
    ] {
        out.push("a".repeat(n));
        out.push(format!(" {}", "a".repeat(n - 1)));
        out.push(format!("{} ", "a".repeat(n - 1)));
        out.push(format!("https://{}", "a".repeat(n)));
        out.push(format!("{}@example.com", "a".repeat(n)));
    }
    for n in [2040, 2047, 2048, 2049] {
        out.push(format!("https://x/{}", "a".repeat(n - 10)));
    }
    // Random text over the alphabet, alone and after each prefix that opens a valid form.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4000 {
        let len = (next() % 12) as usize;
        let text: String = (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect();
        for prefix in ["", "abc", "https://", "a@example.com"] {
            out.push(format!("{prefix}{text}"));
        }
    }
    out
}

#[test]
fn every_constrained_field_in_the_document_matches_the_server() {
    let doc: Value = serde_json::from_str(&synctalk_app::openapi::document_json()).unwrap();
    let corpus = corpus();
    let mut mismatches = Vec::new();
    for (schema, field, parse) in parsers() {
        // A schema with a rule across fields is an allOf of its object and the rule.
        let whole = &doc["components"]["schemas"][schema];
        let property = whole["allOf"]
            .as_array()
            .and_then(|parts| parts.iter().find(|p| p["properties"][field].is_object()))
            .unwrap_or(whole);
        let property = &property["properties"][field];
        assert!(
            property.is_object(),
            "{schema}.{field} is not in the document"
        );
        // The field's own constraints, without its nullability.
        let mut constraints = serde_json::Map::new();
        constraints.insert("type".into(), json!("string"));
        for key in ["pattern", "maxLength", "minLength", "format"] {
            if let Some(value) = property.get(key) {
                constraints.insert(key.into(), value.clone());
            }
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&Value::Object(constraints))
            .unwrap();
        for text in &corpus {
            let documented = validator.is_valid(&json!(text));
            let served = parse(text);
            if documented != served {
                mismatches.push(format!(
                    "{schema}.{field} {text:?}: document {documented}, server {served}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches[..mismatches.len().min(30)].join("\n")
    );
}

#[test]
fn the_search_query_parameter_matches_the_server() {
    let doc: Value = serde_json::from_str(&synctalk_app::openapi::document_json()).unwrap();
    let params = doc["paths"]["/api/v1/users"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let query = params.iter().find(|p| p["name"] == "query").unwrap();
    let validator = jsonschema::validator_for(&query["schema"]).unwrap();
    for text in corpus() {
        let documented = validator.is_valid(&json!(text));
        let served = synctalk_users::domain::parse_search_prefix(&text).is_ok();
        assert_eq!(documented, served, "query {text:?}");
    }
}
