//! Typing: TYPING_START (ephemeral: never stored, never replayed) to the other readers
//! of a channel. It says when it expires ([`TYPING_SECS`] later); a client that keeps
//! typing renews it (the TYPING command or `POST /channels/{id}/typing`). This node
//! sends a renewal on only when the last one it sent is [`RENEW_AFTER`] old, and a
//! message sent ends the user's typing, so the next TYPING goes out at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synctalk_channels::access;
use synctalk_db::Pool;
use synctalk_gateway::{Ephemeral, Hub, Topic, gateway_event};
use synctalk_guilds::permissions::Permissions;
use synctalk_kernel::{AppError, AppResult, ChannelId, GuildId, UserId};
use utoipa::ToSchema;

/// How long a TYPING_START holds, in seconds.
pub const TYPING_SECS: i64 = 8;
/// How old the last TYPING_START of a user in a channel must be before a renewal is
/// sent on.
pub const RENEW_AFTER: Duration = Duration::from_secs(5);

/// TYPING_START: someone is typing in a channel you can read (not sent to their own
/// sockets).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TypingStart {
    /// The channel.
    pub channel_id: ChannelId,
    /// The channel's guild, for a guild channel.
    pub guild_id: Option<GuildId>,
    /// Who is typing.
    pub user_id: UserId,
    /// When they started (or renewed).
    pub timestamp: DateTime<Utc>,
    /// When it ends unless renewed: `timestamp` + 8 s.
    pub expires_at: DateTime<Utc>,
}

gateway_event!(TypingStart, "TYPING_START", Messaging, ephemeral);

/// Who is typing where, as this node last announced it.
pub struct Typing {
    hub: Weak<Hub>,
    pool: Pool,
    last: Mutex<HashMap<(ChannelId, UserId), Instant>>,
}

impl std::fmt::Debug for Typing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typing").finish_non_exhaustive()
    }
}

impl Typing {
    /// Typing on `hub`'s node.
    pub fn new(hub: &Arc<Hub>, pool: Pool) -> Arc<Self> {
        Arc::new(Self {
            hub: Arc::downgrade(hub),
            pool,
            last: Mutex::new(HashMap::new()),
        })
    }

    /// `user` types in `channel`: SEND_MESSAGES there (a category: 409).
    pub async fn start(&self, user: UserId, channel: ChannelId) -> AppResult<()> {
        let guild = {
            let conn = synctalk_db::conn(&self.pool).await?;
            let access = access::load(&conn, channel, user, false).await?;
            crate::service::holds_messages(&access)?;
            access.require(Permissions::SEND_MESSAGES, "send messages here")?;
            access.row.guild_id
        };
        {
            let mut last = self
                .last
                .lock()
                .map_err(|_| AppError::internal(anyhow::anyhow!("typing state poisoned")))?;
            let expiry = Duration::from_secs(TYPING_SECS.unsigned_abs());
            if last.len() > 1024 {
                last.retain(|_, at| at.elapsed() < expiry);
            }
            if last
                .get(&(channel, user))
                .is_some_and(|at| at.elapsed() < RENEW_AFTER)
            {
                return Ok(());
            }
            last.insert((channel, user), Instant::now());
        }
        let Some(hub) = self.hub.upgrade() else {
            return Ok(());
        };
        let now = Utc::now();
        let event = TypingStart {
            channel_id: channel,
            guild_id: guild,
            user_id: user,
            timestamp: now,
            expires_at: now + chrono::Duration::seconds(TYPING_SECS),
        };
        hub.publish_ephemeral(Ephemeral::new(vec![Topic::Channel(channel)], &event)?.except(user))
            .await;
        Ok(())
    }

    /// `user` sent a message in `channel`: their typing there is over.
    pub fn stopped(&self, user: UserId, channel: ChannelId) {
        if let Ok(mut last) = self.last.lock() {
            last.remove(&(channel, user));
        }
    }
}
