//! The channels gateway (`/gateway/channels`): READY carries your DMs and group DMs
//! (`channels`), and the session listens to each one's topic.

use serde::Serialize;
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::{BoxFuture, Domain, EventInfo, GatewayDomain, ReadyPart, Topic};
use synctalk_guilds::dto::Channel;
use synctalk_kernel::{AppError, AuthUser};

/// READY's channels part.
#[derive(Debug, Serialize)]
pub struct ChannelsReady {
    /// Your DMs and group DMs, newest first.
    pub channels: Vec<Channel>,
}

/// The channels domain of the gateway.
#[derive(Debug, Default)]
pub struct ChannelsGateway;

impl GatewayDomain for ChannelsGateway {
    fn domain(&self) -> Domain {
        Domain::Channels
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let mut parts = Vec::with_capacity(auths.len());
            for auth in auths {
                let channels = crate::dms::list(conn, auth.user_id).await?;
                let topics = channels.iter().map(|c| Topic::Channel(c.id)).collect();
                parts.push(ReadyPart::new(&ChannelsReady { channels }, topics)?);
            }
            Ok(parts)
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}
