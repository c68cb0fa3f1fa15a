//! The notification events, on `/gateway/notifications`, each on its user's topic.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use synctalk_gateway::{EventInfo, gateway_event};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::dto::{Notification, NotificationKind, NotificationUpdate};

/// NOTIFICATION_CREATE: a new notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct NotificationCreate(pub Notification);

gateway_event!(
    NotificationCreate,
    "NOTIFICATION_CREATE",
    Notifications,
    replayed
);
gateway_event!(
    NotificationUpdate,
    "NOTIFICATION_UPDATE",
    Notifications,
    replayed
);

/// Every event of the notifications domain, each with an example.
pub fn all() -> Vec<EventInfo> {
    let id = Uuid::now_v7();
    [
        EventInfo::of(&NotificationCreate(Notification {
            id,
            kind: NotificationKind::Message,
            title: "alice".into(),
            body: "are you coming tonight?".into(),
            data: serde_json::json!({"channel_id": Uuid::now_v7(), "guild_id": null, "message_id": Uuid::now_v7(), "author_id": Uuid::now_v7()}),
            read: false,
            created_at: Utc::now(),
        })),
        EventInfo::of(&NotificationUpdate {
            ids: vec![id],
            all: false,
            read: true,
            deleted: false,
            unread_count: 0,
        }),
    ]
    .into_iter()
    .filter_map(Result::ok)
    .collect()
}
