//! The messaging gateway (`/gateway/messaging`): a session listens to the topic of
//! every channel you can read (guild channels you can see, your DMs and group DMs)
//! and to your guilds' topics (through which new channels are subscribed). Commands:
//! SEND_MESSAGE, TYPING and ACK. READY carries `read_states`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::{
    BoxFuture, CommandContext, Domain, EventInfo, GatewayDomain, ReadyPart, Topic,
};
use synctalk_kernel::{AppError, AuthUser, ChannelId, ErrorCode, UserId};
use utoipa::ToSchema;

use crate::dto::{SendMessage, SendMessageCommand};
use crate::read_states::{self, ReadState};
use crate::typing::Typing;

/// READY's messaging part.
#[derive(Debug, Serialize)]
pub struct MessagingReady {
    /// Your read state of every channel you can read.
    pub read_states: Vec<ReadState>,
}

/// The messaging domain of the gateway.
#[derive(Debug)]
pub struct MessagingGateway {
    typing: Arc<Typing>,
}

impl MessagingGateway {
    /// The domain, announcing typing through `typing`.
    pub fn new(typing: Arc<Typing>) -> Self {
        Self { typing }
    }
}

/// TYPING's `d`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypingCommand {
    /// Where you type.
    pub channel_id: ChannelId,
}

/// ACK's `d`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckCommand {
    /// The channel.
    pub channel_id: ChannelId,
    /// The last message read.
    pub message_id: synctalk_kernel::MessageId,
}

fn decode<T: serde::de::DeserializeOwned>(
    name: &str,
    data: serde_json::Value,
) -> Result<T, AppError> {
    serde_json::from_value(data)
        .map_err(|e| AppError::new(ErrorCode::ValidationFailed, format!("invalid {name}: {e}")))
}

impl GatewayDomain for MessagingGateway {
    fn domain(&self) -> Domain {
        Domain::Messaging
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let users: Vec<UserId> = auths.iter().map(|a| a.user_id).collect();
            let mut guild_topics = synctalk_guilds::gateway::topics(conn, &users).await?;
            let mut parts = Vec::with_capacity(auths.len());
            for auth in auths {
                let mut topics = guild_topics.remove(&auth.user_id).unwrap_or_default();
                let dms = synctalk_channels::dms::list(conn, auth.user_id).await?;
                topics.extend(dms.iter().map(|c| Topic::Channel(c.id)));
                let channels = read_states::channels_of(&topics);
                let read_states = read_states::of(conn, auth.user_id, &channels).await?;
                parts.push(ReadyPart::new(&MessagingReady { read_states }, topics)?);
            }
            Ok(parts)
        })
    }

    fn commands(&self) -> &'static [&'static str] {
        &["SEND_MESSAGE", "TYPING", "ACK"]
    }

    fn command<'a>(
        &'a self,
        ctx: &'a CommandContext,
        name: &'a str,
        data: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, AppError>> {
        Box::pin(async move {
            match name {
                "SEND_MESSAGE" => {
                    let command: SendMessageCommand = decode(name, data)?;
                    let new = crate::routes::checked(SendMessage {
                        content: command.content,
                        reply_to: command.reply_to,
                        attachment_ids: command.attachment_ids,
                        nonce: command.nonce,
                    })?;
                    // Alone, on the node's pool: the batches of a worker run on its
                    // own pool (and a socket sends one command at a time anyway).
                    let mut conn = synctalk_db::conn(ctx.hub.pool()).await?;
                    let (message, _) =
                        crate::service::send(&mut conn, ctx.auth.user_id, command.channel_id, new)
                            .await?;
                    self.typing.stopped(ctx.auth.user_id, command.channel_id);
                    serde_json::to_value(message)
                        .map_err(|e| AppError::internal(anyhow::anyhow!(e)))
                }
                "TYPING" => {
                    let command: TypingCommand = decode(name, data)?;
                    self.typing
                        .start(ctx.auth.user_id, command.channel_id)
                        .await?;
                    Ok(serde_json::Value::Null)
                }
                "ACK" => {
                    let command: AckCommand = decode(name, data)?;
                    let mut conn = synctalk_db::conn(ctx.hub.pool()).await?;
                    read_states::ack(
                        &mut conn,
                        ctx.auth.user_id,
                        command.channel_id,
                        command.message_id,
                    )
                    .await?;
                    Ok(serde_json::Value::Null)
                }
                _ => Err(AppError::new(
                    ErrorCode::NotFound,
                    format!("unknown command {name}"),
                )),
            }
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}
