//! The channels domain's gateway events (on `/gateway/channels`): your DMs and group
//! DMs. Guild channels' events belong to the guilds gateway
//! (`synctalk_guilds::events`). A DM's events go to its channel topic, which its
//! recipients listen to; CHANNEL_CREATE and CHANNEL_DELETE to the user whom a DM
//! appears to or disappears from.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use synctalk_gateway::{EventInfo, gateway_event};
use synctalk_guilds::dto::{Channel, ChannelKind};
use synctalk_kernel::{ChannelId, UserId};
use synctalk_users::dto::User;
use utoipa::ToSchema;

/// CHANNEL_CREATE of a DM or group DM: opened, or you were added.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct PrivateChannelCreate(pub Channel);

/// CHANNEL_UPDATE of a group DM (its name, its owner).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct PrivateChannelUpdate(pub Channel);

/// CHANNEL_DELETE of a group DM: you left or were removed (the last of it you get).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct PrivateChannelDelete(pub Channel);

/// CHANNEL_RECIPIENT_ADD and CHANNEL_RECIPIENT_REMOVE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelRecipient {
    /// The group DM.
    pub channel_id: ChannelId,
    /// Who joined or left.
    pub user: User,
}

/// CHANNEL_RECIPIENT_REMOVE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ChannelRecipientRemove(pub ChannelRecipient);

gateway_event!(PrivateChannelCreate, "CHANNEL_CREATE", Channels, replayed);
gateway_event!(PrivateChannelUpdate, "CHANNEL_UPDATE", Channels, replayed);
gateway_event!(PrivateChannelDelete, "CHANNEL_DELETE", Channels, replayed);
gateway_event!(
    ChannelRecipient,
    "CHANNEL_RECIPIENT_ADD",
    Channels,
    replayed
);
gateway_event!(
    ChannelRecipientRemove,
    "CHANNEL_RECIPIENT_REMOVE",
    Channels,
    replayed
);

/// Every event of the channels domain, each with an example.
pub fn all() -> Vec<EventInfo> {
    let user = User {
        id: UserId::new(),
        username: "bob".into(),
        display_name: None,
        avatar_url: None,
        bio: None,
        status_text: None,
        created_at: Utc::now(),
    };
    let channel = Channel {
        id: ChannelId::new(),
        kind: ChannelKind::GroupDm,
        guild_id: None,
        name: Some("weekend".into()),
        topic: None,
        parent_id: None,
        position: 0,
        owner_id: Some(user.id),
        recipients: vec![user.clone()],
        overwrites: Vec::new(),
    };
    let recipient = ChannelRecipient {
        channel_id: channel.id,
        user,
    };
    let infos = [
        EventInfo::of(&PrivateChannelCreate(channel.clone())),
        EventInfo::of(&PrivateChannelUpdate(channel.clone())),
        EventInfo::of(&PrivateChannelDelete(channel)),
        EventInfo::of(&recipient),
        EventInfo::of(&ChannelRecipientRemove(recipient.clone())),
    ];
    infos.into_iter().filter_map(Result::ok).collect()
}
