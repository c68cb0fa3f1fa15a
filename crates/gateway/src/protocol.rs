//! The wire protocol: frames, ops and close codes (API.md, `asyncapi.yaml`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Server event (`t`, and `s` for replayable events).
    Dispatch = 0,
    /// Client keep-alive; answered by [`Op::HeartbeatAck`].
    Heartbeat = 1,
    /// Client authentication `{token}`.
    Identify = 2,
    /// Client continues a dropped session `{token, session_id, seq}`.
    Resume = 6,
    /// Server asks the client to reconnect and resume (graceful shutdown).
    Reconnect = 7,
    /// The session cannot be resumed: identify again and refetch over REST.
    InvalidSession = 9,
    /// First frame from the server `{heartbeat_interval_ms}`.
    Hello = 10,
    /// Answer to a heartbeat.
    HeartbeatAck = 11,
    /// Client command with `t` and a `nonce`.
    Request = 12,
    /// Answer to a request, with the same `nonce`.
    Response = 13,
}

impl Op {
    /// The op for a number, if it is one.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0 => Op::Dispatch,
            1 => Op::Heartbeat,
            2 => Op::Identify,
            6 => Op::Resume,
            7 => Op::Reconnect,
            9 => Op::InvalidSession,
            10 => Op::Hello,
            11 => Op::HeartbeatAck,
            12 => Op::Request,
            13 => Op::Response,
            _ => return None,
        })
    }
}

/// Close codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Something went wrong on our side, or the socket could not keep up; resume.
    UnknownError = 4000,
    /// An op the server does not know.
    UnknownOp = 4001,
    /// A frame that is not a valid JSON frame, or is too large.
    DecodeError = 4002,
    /// Something other than IDENTIFY, RESUME or HEARTBEAT before identifying, or no
    /// IDENTIFY in time.
    NotAuthenticated = 4003,
    /// The token is invalid or expired, or its session was revoked.
    AuthenticationFailed = 4004,
    /// A second IDENTIFY.
    AlreadyAuthenticated = 4005,
    /// RESUME with a sequence number the session never reached.
    InvalidSeq = 4007,
    /// Too many commands.
    RateLimited = 4008,
    /// No heartbeat in time.
    SessionTimedOut = 4009,
}

impl CloseCode {
    /// All close codes (for the contract test).
    pub const ALL: &'static [CloseCode] = &[
        CloseCode::UnknownError,
        CloseCode::UnknownOp,
        CloseCode::DecodeError,
        CloseCode::NotAuthenticated,
        CloseCode::AuthenticationFailed,
        CloseCode::AlreadyAuthenticated,
        CloseCode::InvalidSeq,
        CloseCode::RateLimited,
        CloseCode::SessionTimedOut,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// A frame as it goes on the wire: `{"op", "t", "s", "d"}` (and `nonce` on 12/13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The opcode.
    pub op: u8,
    /// Event or command name.
    #[serde(default)]
    pub t: Option<String>,
    /// Sequence number of a replayable dispatch.
    #[serde(default)]
    pub s: Option<i64>,
    /// Payload.
    #[serde(default)]
    pub d: Value,
    /// The client's nonce, on REQUEST and RESPONSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl Frame {
    fn new(op: Op, d: Value) -> Self {
        Self {
            op: op as u8,
            t: None,
            s: None,
            d,
            nonce: None,
        }
    }

    /// HELLO.
    pub fn hello(heartbeat_interval_ms: u64) -> Self {
        Self::new(
            Op::Hello,
            serde_json::json!(Hello {
                heartbeat_interval_ms
            }),
        )
    }

    /// HEARTBEAT_ACK.
    pub fn heartbeat_ack() -> Self {
        Self::new(Op::HeartbeatAck, Value::Null)
    }

    /// RECONNECT.
    pub fn reconnect() -> Self {
        Self::new(Op::Reconnect, Value::Null)
    }

    /// INVALID_SESSION: whether resuming may work later (a fault on our side) and why
    /// it did not work now.
    pub fn invalid_session(resumable: bool, reason: &str) -> Self {
        Self::new(
            Op::InvalidSession,
            serde_json::json!({ "resumable": resumable, "reason": reason }),
        )
    }

    /// A DISPATCH; `seq` only for replayable events.
    pub fn dispatch(name: &str, seq: Option<i64>, d: Value) -> Self {
        Self {
            op: Op::Dispatch as u8,
            t: Some(name.to_owned()),
            s: seq,
            d,
            nonce: None,
        }
    }

    /// A RESPONSE to a REQUEST.
    pub fn response(nonce: String, result: Result<Value, CommandError>) -> Self {
        let d = match result {
            Ok(result) => serde_json::json!({"ok": true, "result": result}),
            Err(error) => serde_json::json!({"ok": false, "error": error}),
        };
        Self {
            op: Op::Response as u8,
            t: None,
            s: None,
            d,
            nonce: Some(nonce),
        }
    }

    /// The frame as JSON text.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// HELLO payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// How often the client must send HEARTBEAT.
    pub heartbeat_interval_ms: u64,
}

/// IDENTIFY payload.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identify {
    /// An access token.
    pub token: String,
}

impl std::fmt::Debug for Identify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identify")
            .field("token", &"[redacted]")
            .finish()
    }
}

/// RESUME payload.
#[derive(Clone, Serialize, Deserialize)]
pub struct Resume {
    /// An access token of the same user.
    pub token: String,
    /// The `session_id` from READY.
    pub session_id: uuid::Uuid,
    /// The last `s` received; `null` when none was (the replay starts at the
    /// beginning of the session).
    pub seq: Option<i64>,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("token", &"[redacted]")
            .field("session_id", &self.session_id)
            .field("seq", &self.seq)
            .finish()
    }
}

/// The error of a failed command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandError {
    /// A code from the REST error table, or `unknown_command`.
    pub code: String,
    /// Human text.
    pub message: String,
    /// For `validation_failed`: each invalid field and its problems.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<synctalk_kernel::error::FieldErrors>,
}

impl From<synctalk_kernel::AppError> for CommandError {
    fn from(error: synctalk_kernel::AppError) -> Self {
        if error.code() == synctalk_kernel::ErrorCode::InternalError {
            tracing::error!(?error, "gateway command failed");
        }
        Self {
            code: error.code().as_str().to_owned(),
            message: error.message().to_owned(),
            fields: error.fields().cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let text = Frame::hello(41_250).to_text();
        assert_eq!(
            text,
            r#"{"op":10,"t":null,"s":null,"d":{"heartbeat_interval_ms":41250}}"#
        );
        let response = Frame::response("n1".into(), Ok(Value::Null)).to_text();
        assert_eq!(
            response,
            r#"{"op":13,"t":null,"s":null,"d":{"ok":true,"result":null},"nonce":"n1"}"#
        );
        let request: Frame =
            serde_json::from_str(r#"{"op":12,"t":"PRESENCE","nonce":"a","d":{"status":"idle"}}"#)
                .unwrap();
        assert_eq!(request.nonce.as_deref(), Some("a"));
        assert_eq!(Op::from_u8(request.op), Some(Op::Request));
        assert_eq!(Op::from_u8(3), None);
    }
}
