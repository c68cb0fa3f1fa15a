#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The gateway contract: every frame the server sends, serialized from the real Rust
//! types exactly as the server does, and examples of what clients send, must validate
//! against the JSON schemas of `asyncapi.yaml`; every close code, op and event name
//! the code uses must be in the document. A change on either side that the other does
//! not follow fails here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use synctalk_gateway::protocol::{CloseCode, CommandError, Frame, Identify, Op, Resume};
use synctalk_gateway::{Domain, DomainSet, EventInfo};
use synctalk_kernel::{AppError, ErrorCode, UserId};
use synctalk_users::dto::{CurrentUser, User};
use synctalk_users::presence::{Presence, Status};
use synctalk_users::relationships::{Relationship, RelationshipRemoved, RelationshipType};

/// Every event type of every domain (the registry the server is built from).
fn registry() -> Vec<EventInfo> {
    synctalk_app::events()
}

/// Durable (replayable) dispatches: they carry an integer `s`.
fn durable_events() -> BTreeSet<&'static str> {
    registry()
        .iter()
        .filter(|e| e.replayed)
        .map(|e| e.name)
        .collect()
}

/// Ephemeral dispatches: `s` is null, never replayed.
fn ephemeral_events() -> BTreeSet<&'static str> {
    registry()
        .iter()
        .filter(|e| !e.replayed)
        .map(|e| e.name)
        .collect()
}
/// Dispatches of the session itself: `s` is null.
const SESSION_EVENTS: &[&str] = &["READY", "RESUMED"];
/// Commands (op 12 `t`) the gateway handles.
const COMMANDS: &[&str] = &["PRESENCE", "SEND_MESSAGE", "TYPING", "ACK"];
/// The channels, their addresses and the domains they carry.
const CHANNELS: &[(&str, &str, &[Domain])] = &[
    ("users", "/gateway/users", &[Domain::Users]),
    ("guilds", "/gateway/guilds", &[Domain::Guilds]),
    ("channels", "/gateway/channels", &[Domain::Channels]),
    ("messaging", "/gateway/messaging", &[Domain::Messaging]),
    (
        "notifications",
        "/gateway/notifications",
        &[Domain::Notifications],
    ),
    (
        "gateway",
        "/gateway",
        &[
            Domain::Users,
            Domain::Guilds,
            Domain::Channels,
            Domain::Messaging,
            Domain::Notifications,
        ],
    ),
];
/// What every channel's server sends, whatever its domains.
const SESSION_FRAMES: &[&str] = &[
    "HELLO",
    "HEARTBEAT_ACK",
    "RECONNECT",
    "INVALID_SESSION",
    "RESPONSE",
    "READY",
    "RESUMED",
];
/// What every channel's client sends, whatever its domains.
const CLIENT_FRAMES: &[&str] = &["HEARTBEAT", "IDENTIFY", "RESUME"];

/// The commands of a domain.
fn commands_of(domain: Domain) -> &'static [&'static str] {
    match domain {
        Domain::Users => &["PRESENCE"],
        Domain::Messaging => &["SEND_MESSAGE", "TYPING", "ACK"],
        _ => &[],
    }
}

/// The server messages a channel carrying `domains` must list: the session's and the
/// events of its domains.
fn server_messages(domains: &[Domain]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = SESSION_FRAMES.iter().map(|m| (*m).to_owned()).collect();
    out.extend(
        registry()
            .iter()
            .filter(|e| domains.contains(&e.domain))
            .map(|e| e.name.to_owned()),
    );
    out
}

/// The client messages a channel carrying `domains` must list.
fn client_messages(domains: &[Domain]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = CLIENT_FRAMES.iter().map(|m| (*m).to_owned()).collect();
    for domain in domains {
        out.extend(commands_of(*domain).iter().map(|c| (*c).to_owned()));
    }
    out
}

/// The parsed `asyncapi.yaml`.
struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../asyncapi.yaml");
        let text = std::fs::read_to_string(path).expect("read asyncapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("asyncapi.yaml is YAML");
        assert_eq!(doc["asyncapi"], "3.0.0");
        Self { doc }
    }

    /// Follows local `$ref`s until a value that is not one.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(pointer) = value.get("$ref").and_then(Value::as_str) {
            let pointer = pointer
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local refs: {pointer}"));
            value = self
                .doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref #{pointer}"));
        }
        value
    }

    fn message(&self, name: &str) -> &Value {
        let message = self
            .doc
            .pointer(&format!("/components/messages/{name}"))
            .unwrap_or_else(|| panic!("no message {name} in asyncapi.yaml"));
        assert_eq!(
            message["name"], name,
            "message {name} is named by its event"
        );
        message
    }

    /// A draft-07 validator for a schema of this document; `$ref:
    /// '#/components/schemas/X'` resolves because the schemas are embedded.
    fn validator_for_schema(&self, schema: &Value) -> jsonschema::Validator {
        let root = json!({
            "allOf": [schema],
            "components": {"schemas": self.doc["components"]["schemas"]},
        });
        jsonschema::draft7::options()
            .should_validate_formats(true)
            // `uuid` is not a draft-07 format: check it ourselves.
            .with_format("uuid", |s| {
                s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
            })
            .build(&root)
            .unwrap_or_else(|e| panic!("schema {schema} does not compile: {e}"))
    }

    fn validator(&self, message: &str) -> jsonschema::Validator {
        self.validator_for_schema(&self.message(message)["payload"])
    }

    /// The names of the messages an operation lists.
    fn operation_messages(&self, operation: &str) -> BTreeSet<String> {
        let operation = &self.doc["operations"][operation];
        operation["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("operation {operation} lists no messages"))
            .iter()
            .map(|m| {
                self.resolve(m)["name"]
                    .as_str()
                    .expect("message name")
                    .to_owned()
            })
            .collect()
    }

    fn operation(&self, channel: &str, action: &str) -> String {
        let found: Vec<String> = self.doc["operations"]
            .as_object()
            .expect("operations")
            .iter()
            .filter(|(_, op)| {
                op["action"] == action
                    && op["channel"]["$ref"] == format!("#/channels/{channel}").as_str()
            })
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {action} operation on {channel}: {found:?}"
        );
        found.into_iter().next().expect("one")
    }
}

fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect()
}

/// Asserts `frame` is a valid `message`, and, on every channel that has it, matches
/// exactly that one message of the operation in `action` (so a client can tell frames
/// apart).
fn assert_frame(spec: &Spec, action: &str, message: &str, frame: &Value) {
    let problems = errors(&spec.validator(message), frame);
    assert!(
        problems.is_empty(),
        "{message} rejects {frame}: {problems:#?}"
    );
    for (channel, _, _) in CHANNELS {
        let operation = spec.operation(channel, action);
        let listed = spec.operation_messages(&operation);
        if !listed.contains(message) {
            continue;
        }
        let matching: Vec<String> = listed
            .into_iter()
            .filter(|m| spec.validator(m).is_valid(frame))
            .collect();
        assert_eq!(
            matching,
            [message],
            "on {channel}, {frame} should match only {message}"
        );
    }
}

/// The frame as it goes on the wire.
fn wire(frame: &Frame) -> Value {
    serde_json::from_str(&frame.to_text()).expect("frames are JSON")
}

/// A durable or ephemeral event's frame, in the shape the hub renders.
fn event_frame(name: &str, seq: Option<i64>, payload: &impl serde::Serialize) -> Value {
    wire(&Frame::dispatch(
        name,
        seq,
        serde_json::to_value(payload).unwrap(),
    ))
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("timestamp")
}

fn bob() -> User {
    User {
        id: UserId::new(),
        username: "bob".into(),
        display_name: None,
        avatar_url: None,
        bio: None,
        status_text: None,
        created_at: at("2025-01-02T12:00:00Z"),
    }
}

fn carol() -> User {
    User {
        id: UserId::new(),
        username: "carol".into(),
        display_name: Some("Carol".into()),
        avatar_url: Some("https://example.com/carol.png".into()),
        bio: Some("Hi".into()),
        status_text: Some("Around".into()),
        created_at: Utc::now(),
    }
}

fn alice() -> CurrentUser {
    CurrentUser {
        id: UserId::new(),
        username: "alice".into(),
        display_name: Some("Alice".into()),
        avatar_url: None,
        bio: None,
        status_text: None,
        created_at: at("2025-01-01T12:00:00Z"),
        email: "alice@example.com".into(),
    }
}

fn relationship(user: User, kind: RelationshipType) -> Relationship {
    Relationship {
        id: user.id,
        kind,
        user,
        since: Utc::now(),
    }
}

/// READY as the session builds it: `user`, the users domain's fields, `session_id`
/// and `domains`.
fn ready_frame() -> Value {
    let (bob, carol) = (bob(), carol());
    let relationships = vec![
        relationship(bob.clone(), RelationshipType::Friend),
        relationship(carol, RelationshipType::Incoming),
    ];
    let presences = vec![Presence {
        user_id: bob.id,
        status: Status::Idle,
    }];
    let mut ready = Map::new();
    ready.insert("user".into(), serde_json::to_value(alice()).unwrap());
    ready.insert(
        "relationships".into(),
        serde_json::to_value(relationships).unwrap(),
    );
    ready.insert("presences".into(), serde_json::to_value(presences).unwrap());
    let folders = vec![synctalk_channels::folders::Folder {
        id: uuid::Uuid::now_v7(),
        name: "Work".into(),
        position: 0,
        items: vec![synctalk_channels::folders::FolderItem {
            id: uuid::Uuid::now_v7(),
            kind: synctalk_channels::folders::ItemKind::Channel,
        }],
    }];
    ready.insert("folders".into(), serde_json::to_value(folders).unwrap());
    ready.insert(
        "session_id".into(),
        Value::String(uuid::Uuid::now_v7().to_string()),
    );
    let domains: DomainSet = [Domain::Users].into_iter().collect();
    ready.insert(
        "domains".into(),
        Value::Array(domains.names().into_iter().map(Value::String).collect()),
    );
    wire(&Frame::dispatch("READY", None, Value::Object(ready)))
}

/// READY of `/gateway/guilds`: `user`, `guilds`, `session_id` and `domains`.
fn guilds_ready_frame() -> Value {
    let state = synctalk_guilds::events::all()
        .into_iter()
        .find(|e| e.name == "GUILD_CREATE")
        .expect("GUILD_CREATE")
        .example;
    let ready = json!({
        "user": alice(),
        "guilds": [state],
        "session_id": uuid::Uuid::now_v7(),
        "domains": [Domain::Guilds.as_str()],
    });
    wire(&Frame::dispatch("READY", None, ready))
}

fn resumed_frame(replayed: usize) -> Value {
    let done = json!({"session_id": uuid::Uuid::now_v7(), "replayed": replayed});
    wire(&Frame::dispatch("RESUMED", None, done))
}

/// Every kind of frame the server sends, with the message it must be.
fn server_frames() -> Vec<(&'static str, Value)> {
    let mut frames = vec![
        ("HELLO", wire(&Frame::hello(41_250))),
        ("HEARTBEAT_ACK", wire(&Frame::heartbeat_ack())),
        ("RECONNECT", wire(&Frame::reconnect())),
        (
            "INVALID_SESSION",
            wire(&Frame::invalid_session(false, "session_expired")),
        ),
        (
            "INVALID_SESSION",
            wire(&Frame::invalid_session(false, "too_far_behind")),
        ),
        (
            "INVALID_SESSION",
            wire(&Frame::invalid_session(true, "unavailable")),
        ),
        (
            "RESPONSE",
            wire(&Frame::response("n1".into(), Ok(Value::Null))),
        ),
        (
            "RESPONSE",
            wire(&Frame::response(
                "n2".into(),
                Err(CommandError {
                    code: "unknown_command".into(),
                    message: "unknown command \"TYPING\"".into(),
                    fields: None,
                }),
            )),
        ),
        (
            "RESPONSE",
            wire(&Frame::response(
                "n3".into(),
                Err(CommandError::from(synctalk_kernel::AppError::field(
                    "status",
                    "must be online, idle or dnd",
                ))),
            )),
        ),
        (
            "RESPONSE",
            wire(&Frame::response(
                String::new(),
                Err(AppError::field("status", "must be online, idle or dnd").into()),
            )),
        ),
        (
            "RESPONSE",
            wire(&Frame::response(
                "n3".into(),
                Err(AppError::new(ErrorCode::InvalidJson, "PRESENCE needs {status}").into()),
            )),
        ),
        ("READY", ready_frame()),
        ("RESUMED", resumed_frame(0)),
        ("RESUMED", resumed_frame(3)),
    ];
    for (seq, kind) in [
        RelationshipType::Friend,
        RelationshipType::Incoming,
        RelationshipType::Outgoing,
        RelationshipType::Blocked,
    ]
    .into_iter()
    .enumerate()
    {
        let seq = i64::try_from(seq).unwrap() + 1;
        frames.push((
            "RELATIONSHIP_ADD",
            event_frame("RELATIONSHIP_ADD", Some(seq), &relationship(carol(), kind)),
        ));
        let removed = RelationshipRemoved {
            id: UserId::new(),
            kind,
        };
        frames.push((
            "RELATIONSHIP_REMOVE",
            event_frame("RELATIONSHIP_REMOVE", Some(seq + 10), &removed),
        ));
    }
    frames.push(("USER_UPDATE", event_frame("USER_UPDATE", Some(1), &bob())));
    frames.push(("USER_UPDATE", event_frame("USER_UPDATE", Some(2), &carol())));
    frames.push((
        "USER_UPDATE",
        event_frame("USER_UPDATE", Some(i64::from(u32::MAX)), &alice()),
    ));
    // Every registered event, from its example (serialized from the real types).
    for (seq, event) in registry().into_iter().enumerate() {
        let seq = i64::try_from(seq).unwrap() + 1;
        frames.push((
            event.name,
            wire(&Frame::dispatch(
                event.name,
                event.replayed.then_some(seq),
                event.example,
            )),
        ));
    }
    frames.push(("READY", guilds_ready_frame()));
    for status in [Status::Online, Status::Idle, Status::Dnd, Status::Offline] {
        let presence = Presence {
            user_id: UserId::new(),
            status,
        };
        frames.push((
            "PRESENCE_UPDATE",
            event_frame("PRESENCE_UPDATE", None, &presence),
        ));
    }
    frames
}

/// What clients send, with the message it must be.
fn client_frames() -> Vec<(&'static str, Value)> {
    let session_id = uuid::Uuid::now_v7();
    vec![
        ("HEARTBEAT", json!({"op": 1, "d": null})),
        ("HEARTBEAT", json!({"op": 1, "t": null, "s": null, "d": 42})),
        ("IDENTIFY", json!({"op": 2, "d": {"token": "eyJ.e30.sig"}})),
        (
            "RESUME",
            json!({"op": 6, "d": {"token": "eyJ.e30.sig", "session_id": session_id, "seq": 0}}),
        ),
        (
            "RESUME",
            json!({"op": 6, "d": {"token": "eyJ.e30.sig", "session_id": session_id, "seq": 17}}),
        ),
        (
            "PRESENCE",
            json!({"op": 12, "t": "PRESENCE", "nonce": "1", "d": {"status": "online"}}),
        ),
        (
            "PRESENCE",
            json!({"op": 12, "t": "PRESENCE", "nonce": "a-b", "d": {"status": "idle"}}),
        ),
        (
            "PRESENCE",
            json!({"op": 12, "t": "PRESENCE", "nonce": "x", "d": {"status": "dnd"}}),
        ),
        (
            "SEND_MESSAGE",
            json!({"op": 12, "t": "SEND_MESSAGE", "nonce": "2", "d": {"channel_id": session_id, "content": "hi"}}),
        ),
        (
            "TYPING",
            json!({"op": 12, "t": "TYPING", "nonce": "4", "d": {"channel_id": session_id}}),
        ),
        (
            "ACK",
            json!({"op": 12, "t": "ACK", "nonce": "5", "d": {"channel_id": session_id, "message_id": session_id}}),
        ),
        (
            "SEND_MESSAGE",
            json!({"op": 12, "t": "SEND_MESSAGE", "nonce": "3", "d": {"channel_id": session_id, "content": "re", "reply_to": session_id, "nonce": "k1"}}),
        ),
    ]
}

#[test]
fn every_registered_event_type_has_its_schema() {
    let spec = Spec::load();
    let events = registry();
    assert!(!events.is_empty());
    for event in &events {
        let seq = event.replayed.then_some(7);
        let frame = wire(&Frame::dispatch(event.name, seq, event.example.clone()));
        let problems = errors(&spec.validator(event.name), &frame);
        assert!(
            problems.is_empty(),
            "{} ({}) does not fit {}: {problems:#?}",
            event.type_name,
            event.domain.as_str(),
            event.name
        );
    }
}

#[test]
fn every_server_frame_matches_its_message() {
    let spec = Spec::load();
    let frames = server_frames();
    for (message, frame) in &frames {
        assert_frame(&spec, "send", message, frame);
    }
    // Every server message is exercised by a real frame.
    let covered: BTreeSet<String> = frames.iter().map(|(m, _)| (*m).to_owned()).collect();
    for (channel, _, domains) in CHANNELS {
        let listed = spec.operation_messages(&spec.operation(channel, "send"));
        assert_eq!(
            listed,
            server_messages(domains),
            "server messages of {channel}"
        );
        assert!(
            listed.is_subset(&covered),
            "a real frame of each on {channel}"
        );
    }
}

#[test]
fn every_client_frame_matches_its_message_and_the_server_decodes_it() {
    let spec = Spec::load();
    let frames = client_frames();
    for (message, frame) in &frames {
        assert_frame(&spec, "receive", message, frame);
        // The server reads it as the frame the document says it is.
        let decoded: Frame = serde_json::from_value(frame.clone()).expect("a frame");
        let op = Op::from_u8(decoded.op).expect("a known op");
        match *message {
            "HEARTBEAT" => assert_eq!(op, Op::Heartbeat),
            "IDENTIFY" => {
                assert_eq!(op, Op::Identify);
                serde_json::from_value::<Identify>(decoded.d).expect("IDENTIFY d");
            }
            "RESUME" => {
                assert_eq!(op, Op::Resume);
                serde_json::from_value::<Resume>(decoded.d).expect("RESUME d");
            }
            command => {
                assert_eq!(op, Op::Request);
                assert!(COMMANDS.contains(&command));
                assert_eq!(decoded.t.as_deref(), Some(command));
                assert!(decoded.nonce.is_some());
                if command == "ACK" {
                    serde_json::from_value::<synctalk_messaging::gateway::AckCommand>(decoded.d)
                        .expect("ACK d");
                } else if command == "TYPING" {
                    serde_json::from_value::<synctalk_messaging::gateway::TypingCommand>(decoded.d)
                        .expect("TYPING d");
                } else if command == "SEND_MESSAGE" {
                    serde_json::from_value::<synctalk_messaging::dto::SendMessageCommand>(
                        decoded.d,
                    )
                    .expect("SEND_MESSAGE d");
                } else {
                    let status = decoded.d["status"].as_str().expect("status");
                    assert!(Status::parse(status).is_some_and(|s| s != Status::Offline));
                }
            }
        }
    }
    let covered: BTreeSet<String> = frames.iter().map(|(m, _)| (*m).to_owned()).collect();
    for (channel, _, domains) in CHANNELS {
        let listed = spec.operation_messages(&spec.operation(channel, "receive"));
        assert_eq!(
            listed,
            client_messages(domains),
            "client messages of {channel}"
        );
        assert!(
            listed.is_subset(&covered),
            "a real frame of each on {channel}"
        );
    }
}

#[test]
fn the_schemas_reject_frames_that_break_the_contract() {
    let spec = Spec::load();
    let reject = |message: &str, frame: Value, why: &str| {
        assert!(
            !spec.validator(message).is_valid(&frame),
            "{message} should reject {why}: {frame}"
        );
    };

    // A payload missing a required field.
    let mut ready = ready_frame();
    ready["d"].as_object_mut().unwrap().remove("session_id");
    reject("READY", ready, "a READY without session_id");
    let mut ready = ready_frame();
    ready["d"]["user"].as_object_mut().unwrap().remove("email");
    reject("READY", ready, "a READY whose user has no email");

    // Sequence numbers: durable events need one, the others must not have one.
    let add = event_frame(
        "RELATIONSHIP_ADD",
        None,
        &relationship(bob(), RelationshipType::Friend),
    );
    reject("RELATIONSHIP_ADD", add, "a durable event without s");
    let presence = Presence {
        user_id: UserId::new(),
        status: Status::Online,
    };
    reject(
        "PRESENCE_UPDATE",
        event_frame("PRESENCE_UPDATE", Some(1), &presence),
        "an ephemeral event with s",
    );
    reject(
        "READY",
        {
            let mut ready = ready_frame();
            ready["s"] = json!(1);
            ready
        },
        "READY with s",
    );
    reject(
        "USER_UPDATE",
        event_frame("USER_UPDATE", Some(0), &bob()),
        "s = 0",
    );

    // Shapes and values.
    reject(
        "RELATIONSHIP_REMOVE",
        event_frame(
            "RELATIONSHIP_ADD",
            Some(1),
            &relationship(bob(), RelationshipType::Friend),
        ),
        "another event's t",
    );
    let mut public = serde_json::to_value(bob()).unwrap();
    public["phone"] = json!("555");
    reject(
        "USER_UPDATE",
        wire(&Frame::dispatch("USER_UPDATE", Some(1), public)),
        "an undocumented field",
    );
    let mut bad_id = serde_json::to_value(bob()).unwrap();
    bad_id["id"] = json!("42");
    reject(
        "USER_UPDATE",
        wire(&Frame::dispatch("USER_UPDATE", Some(1), bad_id)),
        "an id that is not a UUID",
    );
    let mut bad_time = serde_json::to_value(bob()).unwrap();
    bad_time["created_at"] = json!("yesterday");
    reject(
        "USER_UPDATE",
        wire(&Frame::dispatch("USER_UPDATE", Some(1), bad_time)),
        "a timestamp that is not RFC 3339",
    );
    let mut response = wire(&Frame::response("n".into(), Ok(Value::Null)));
    response.as_object_mut().unwrap().remove("nonce");
    reject("RESPONSE", response, "a RESPONSE without nonce");
    reject(
        "RESPONSE",
        json!({"op": 13, "t": null, "s": null, "nonce": "n", "d": {"ok": false, "error": {"code": "x"}}}),
        "an error without message",
    );
    reject(
        "INVALID_SESSION",
        json!({"op": 9, "t": null, "s": null, "d": true}),
        "d true",
    );
    reject(
        "PRESENCE",
        json!({"op": 12, "t": "PRESENCE", "nonce": "1", "d": {"status": "offline"}}),
        "status offline",
    );
    reject(
        "PRESENCE",
        json!({"op": 12, "t": "PRESENCE", "d": {"status": "idle"}}),
        "a request without nonce",
    );
    reject(
        "RESUME",
        json!({"op": 6, "d": {"token": "t", "session_id": "nope", "seq": 1}}),
        "a RESUME with a bad session id",
    );
}

#[test]
fn every_message_example_is_valid() {
    let spec = Spec::load();
    let messages = spec.doc["components"]["messages"]
        .as_object()
        .expect("messages");
    for (name, message) in messages {
        let validator = spec.validator(name);
        let examples = message["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no examples"));
        for example in examples {
            let problems = errors(&validator, &example["payload"]);
            assert!(
                problems.is_empty(),
                "example {} of {name}: {problems:#?}",
                example["name"]
            );
        }
    }
}

#[test]
fn every_event_name_has_its_message_and_sequence_rule() {
    let spec = Spec::load();
    let seq_validator = |name: &str| {
        let frame = spec.resolve(&spec.message(name)["payload"]);
        assert_eq!(
            frame["properties"]["op"]["const"], 0,
            "{name} is a DISPATCH"
        );
        assert_eq!(frame["properties"]["t"]["const"], name, "{name} fixes t");
        spec.validator_for_schema(&frame["properties"]["s"])
    };
    let (durable, ephemeral) = (durable_events(), ephemeral_events());
    assert!(
        durable.is_disjoint(&ephemeral),
        "an event is durable or ephemeral"
    );
    for name in &durable {
        let s = seq_validator(name);
        assert!(
            s.is_valid(&json!(1)) && !s.is_valid(&Value::Null),
            "{name} is durable: s is an integer"
        );
    }
    for name in ephemeral.iter().chain(SESSION_EVENTS) {
        let s = seq_validator(name);
        assert!(
            s.is_valid(&Value::Null) && !s.is_valid(&json!(1)),
            "{name}: s is null"
        );
    }
    // ...and the document has no dispatch the code does not send.
    let known: BTreeSet<&str> = durable
        .iter()
        .chain(&ephemeral)
        .chain(SESSION_EVENTS)
        .copied()
        .collect();
    for (name, message) in spec.doc["components"]["messages"]
        .as_object()
        .expect("messages")
    {
        let frame = spec.resolve(&message["payload"]);
        if frame["properties"]["op"]["const"] == 0 {
            assert!(known.contains(name.as_str()), "unknown dispatch {name}");
        }
        if frame["properties"]["op"]["const"] == 12 {
            assert!(COMMANDS.contains(&name.as_str()), "unknown command {name}");
        }
    }
}

#[test]
fn every_op_and_close_code_is_documented() {
    let spec = Spec::load();
    let ops_in_code: BTreeSet<u64> = (0..=u8::MAX)
        .filter(|n| Op::from_u8(*n).is_some())
        .map(u64::from)
        .collect();
    let ops_in_doc: BTreeSet<u64> = spec.doc["components"]["schemas"]
        .as_object()
        .expect("schemas")
        .values()
        .filter_map(|schema| schema["properties"]["op"]["const"].as_u64())
        .collect();
    assert_eq!(ops_in_doc, ops_in_code, "ops");

    let codes_in_code: BTreeSet<u64> = CloseCode::ALL.iter().map(|c| u64::from(c.code())).collect();
    let listed = spec.doc["info"]["x-close-codes"]
        .as_array()
        .expect("info.x-close-codes");
    let codes_in_doc: BTreeSet<u64> = listed
        .iter()
        .map(|c| c["code"].as_u64().expect("code"))
        .collect();
    assert_eq!(codes_in_doc, codes_in_code, "close codes");
    assert_eq!(listed.len(), codes_in_doc.len(), "each code once");
    for code in listed {
        assert!(code["name"].is_string(), "{code} has a name");
        assert!(
            ["resume", "identify", "reauthenticate"].contains(&code["then"].as_str().unwrap_or("")),
            "{code} says what to do next"
        );
        assert!(
            code["when"].as_array().is_some_and(|w| !w.is_empty()),
            "{code} says when"
        );
    }
}

#[test]
fn the_channels_are_the_built_paths() {
    let spec = Spec::load();
    let channels = spec.doc["channels"].as_object().expect("channels");
    assert_eq!(channels.len(), CHANNELS.len());
    for (id, address, _) in CHANNELS {
        let channel = &channels[*id];
        assert_eq!(channel["address"], *address);
        // The channel's messages are exactly those its two operations use.
        let own: BTreeSet<String> = channel["messages"]
            .as_object()
            .expect("messages")
            .values()
            .map(|m| spec.resolve(m)["name"].as_str().expect("name").to_owned())
            .collect();
        let mut used = spec.operation_messages(&spec.operation(id, "send"));
        used.extend(spec.operation_messages(&spec.operation(id, "receive")));
        assert_eq!(own, used, "messages of {id}");
        // Operations name messages of their own channel.
        for action in ["send", "receive"] {
            let operation = spec.operation(id, action);
            for m in spec.doc["operations"][&operation]["messages"]
                .as_array()
                .expect("messages")
            {
                let reference = m["$ref"].as_str().expect("$ref");
                assert!(
                    reference.starts_with(&format!("#/channels/{id}/messages/")),
                    "{operation} uses {reference}"
                );
            }
        }
    }
    // `?domains=` takes the domains that exist.
    let query = &channels["gateway"]["bindings"]["ws"]["query"];
    let domains = spec.validator_for_schema(&query["properties"]["domains"]);
    assert!(domains.is_valid(&json!(Domain::Users.as_str())));
    assert!(domains.is_valid(&json!("users, users")));
    assert!(domains.is_valid(&json!(Domain::Guilds.as_str())));
    assert!(domains.is_valid(&json!("guilds,users")));
    assert!(domains.is_valid(&json!("channels,guilds,users")));
    assert!(domains.is_valid(&json!("messaging,users")));
    assert!(!domains.is_valid(&json!("calls")));
    assert!(!domains.is_valid(&json!("")));
}
