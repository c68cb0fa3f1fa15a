//! Everything a client writes that the server parses before it touches the database:
//! profile fields, credentials, search text, request bodies, and the proxy headers that
//! name a client's address. Nothing may panic, and what a parser accepts must hold its
//! promises (a username is lower case, a display name is trimmed and not blank).
#![no_main]

use actix_web::test::TestRequest;
use actix_web::web;
use libfuzzer_sys::fuzz_target;
use synctalk_kernel::http::{TrustedProxies, client_ip, json_object};
use synctalk_users::domain;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    if let Ok(name) = domain::Username::parse(text) {
        assert!(name.as_str().chars().all(|c| !c.is_ascii_uppercase()));
    }
    let _ = domain::Email::parse(text);
    if let Ok(name) = domain::parse_display_name(text) {
        assert!(!name.is_empty() && name.trim() == name);
    }
    let _ = domain::parse_bio(text);
    let _ = domain::parse_status_text(text);
    if let Ok(url) = domain::parse_avatar_url(text) {
        assert!(url.starts_with("http://") || url.starts_with("https://"));
    }
    let _ = domain::parse_friend_username(text);
    let _ = domain::parse_search_prefix(text);
    let _ = synctalk_auth::domain::parse_device_id(text);
    let _ = synctalk_auth::domain::Password::parse(text);

    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = json_object::<synctalk_auth::dto::RegisterRequest>(value.clone());
        let _ = json_object::<synctalk_auth::dto::LoginRequest>(value.clone());
        let _ = json_object::<synctalk_auth::dto::RefreshRequest>(value.clone());
        let _ = json_object::<synctalk_users::dto::UpdateCurrentUser>(value.clone());
        let _ = json_object::<synctalk_users::relationships::FriendRequest>(value.clone());
        let _ = json_object::<synctalk_users::relationships::RelationshipUpdate>(value);
    }
    let _ = web::Query::<synctalk_kernel::PageQuery>::from_query(text);

    // A request through a trusted proxy, with the fuzz input as its forwarding headers.
    let proxies = TrustedProxies(vec!["10.0.0.0/8".parse().expect("a range")]);
    let mut request = TestRequest::default()
        .peer_addr("10.0.0.1:443".parse().expect("an address"))
        .app_data(web::Data::new(proxies));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_bytes(data) {
        request = request
            .insert_header(("x-forwarded-for", value.clone()))
            .insert_header(("forwarded", value));
    }
    let ip = client_ip(&request.to_http_request()).expect("an address");
    assert!(ip.parse::<std::net::IpAddr>().is_ok(), "{ip}");
});
