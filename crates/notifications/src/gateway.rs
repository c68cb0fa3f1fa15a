//! The notifications gateway (`/gateway/notifications`): a session listens to its
//! user's topic for NOTIFICATION_CREATE and NOTIFICATION_UPDATE; READY carries the
//! unread count.

use serde::Serialize;
use synctalk_db::AsyncPgConnection;
use synctalk_gateway::{BoxFuture, Domain, EventInfo, GatewayDomain, ReadyPart, Topic};
use synctalk_kernel::{AppError, AuthUser};

use crate::service;

/// READY's notifications part.
#[derive(Debug, Serialize)]
pub struct NotificationsReady {
    /// Your unread notifications.
    pub unread_notifications: i64,
}

/// The notifications domain of the gateway.
#[derive(Debug)]
pub struct NotificationsGateway;

impl GatewayDomain for NotificationsGateway {
    fn domain(&self) -> Domain {
        Domain::Notifications
    }

    fn ready<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        auths: &'a [AuthUser],
    ) -> BoxFuture<'a, Result<Vec<ReadyPart>, AppError>> {
        Box::pin(async move {
            let mut parts = Vec::with_capacity(auths.len());
            for auth in auths {
                let unread_notifications = service::unread_count(conn, auth.user_id).await?;
                parts.push(ReadyPart::new(
                    &NotificationsReady {
                        unread_notifications,
                    },
                    vec![Topic::User(auth.user_id)],
                )?);
            }
            Ok(parts)
        })
    }

    fn events(&self) -> Vec<EventInfo> {
        crate::events::all()
    }
}
