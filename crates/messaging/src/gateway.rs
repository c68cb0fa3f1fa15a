//! The messaging gateway (`/gateway/messaging`): a session listens to the topic of
//! every channel you can read (guild channels you can see, your DMs and group DMs)
//! and to your guilds' topics (through which new channels are subscribed). Commands:
//! SEND_MESSAGE.

use serde::Serialize;
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::{
    BoxFuture, CommandContext, Domain, EventInfo, GatewayDomain, ReadyPart, Topic,
};
use synctalk_kernel::{AppError, AuthUser, ErrorCode, UserId};

use crate::dto::{SendMessage, SendMessageCommand};

/// READY's messaging part (its fields come with read states).
#[derive(Debug, Serialize)]
pub struct MessagingReady {}

/// The messaging domain of the gateway.
#[derive(Debug, Default)]
pub struct MessagingGateway;

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
                parts.push(ReadyPart::new(&MessagingReady {}, topics)?);
            }
            Ok(parts)
        })
    }

    fn commands(&self) -> &'static [&'static str] {
        &["SEND_MESSAGE"]
    }

    fn command<'a>(
        &'a self,
        ctx: &'a CommandContext,
        name: &'a str,
        data: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, AppError>> {
        Box::pin(async move {
            if name != "SEND_MESSAGE" {
                return Err(AppError::new(
                    ErrorCode::NotFound,
                    format!("unknown command {name}"),
                ));
            }
            let command: SendMessageCommand = serde_json::from_value(data).map_err(|e| {
                AppError::new(
                    ErrorCode::ValidationFailed,
                    format!("invalid SEND_MESSAGE: {e}"),
                )
            })?;
            let new = crate::routes::checked(SendMessage {
                content: command.content,
                reply_to: command.reply_to,
                attachment_ids: Vec::new(),
                nonce: command.nonce,
            })?;
            let mut conn = synctalk_db::conn(ctx.hub.pool()).await?;
            let (message, _) =
                crate::service::send(&mut conn, ctx.auth.user_id, command.channel_id, new).await?;
            serde_json::to_value(message).map_err(|e| AppError::internal(anyhow::anyhow!(e)))
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}
