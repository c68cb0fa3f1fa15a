//! The kernel of SyncTalk: the small set of types every domain crate shares.
//!
//! - [`id`]: typed ids (UUIDv7 newtypes), so a `UserId` can never be passed where a
//!   `SessionId` is expected.
//! - [`error`]: the one table of error codes and their HTTP statuses, and [`AppError`],
//!   the error every handler returns.
//! - [`auth`]: the [`AuthUser`] extractor and the [`Authenticator`] port it calls.
//! - [`pagination`]: cursor pagination (`limit`, `before`, `after`).
//! - [`http`]: helpers that give every route the same error behaviour.
//! - [`serde_ext`], [`secret`]: small helpers for wire types and settings.

pub mod auth;
pub mod error;
pub mod http;
pub mod id;
pub mod pagination;
pub mod secret;
pub mod serde_ext;

pub use auth::{AuthUser, Authenticator};
pub use error::{AppError, AppResult, ErrorCode, ErrorResponse};
pub use id::{CallId, ChannelId, GuildId, MessageId, RoleId, SessionId, UserId};
pub use pagination::{Page, PageQuery};
pub use secret::Secret;
