//! The messaging domain's gateway events (on `/gateway/messaging`), each written to
//! its channel's topic: those who can read the channel listen to it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synctalk_gateway::{EventInfo, gateway_event};
use synctalk_kernel::{ChannelId, GuildId, MessageId, UserId};
use synctalk_users::dto::User;
use utoipa::ToSchema;

use crate::dto::{Message, ReplySummary};

/// MESSAGE_CREATE: a new message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct MessageCreate(pub Message);

/// MESSAGE_UPDATE: a message edited (the whole message after the edit).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct MessageUpdate(pub Message);

/// MESSAGE_DELETE: a message deleted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageDelete {
    /// The message.
    pub id: MessageId,
    /// Its channel.
    pub channel_id: ChannelId,
    /// The channel's guild, for a guild channel.
    pub guild_id: Option<GuildId>,
}

/// A reaction added or taken away.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReactionChange {
    /// The channel.
    pub channel_id: ChannelId,
    /// The message.
    pub message_id: MessageId,
    /// The channel's guild, for a guild channel.
    pub guild_id: Option<GuildId>,
    /// Who reacted.
    pub user_id: UserId,
    /// The emoji.
    #[schema(example = "👍")]
    pub emoji: String,
}

/// MESSAGE_REACTION_ADD.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct MessageReactionAdd(pub ReactionChange);

/// MESSAGE_REACTION_REMOVE.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct MessageReactionRemove(pub ReactionChange);

/// CHANNEL_PINS_UPDATE: a message of the channel was pinned or unpinned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChannelPinsUpdate {
    /// The channel.
    pub channel_id: ChannelId,
    /// The channel's guild, for a guild channel.
    pub guild_id: Option<GuildId>,
    /// When the latest pin still there was made; null when none is left.
    pub last_pin_timestamp: Option<DateTime<Utc>>,
}

gateway_event!(MessageCreate, "MESSAGE_CREATE", Messaging, replayed);
gateway_event!(
    MessageReactionAdd,
    "MESSAGE_REACTION_ADD",
    Messaging,
    replayed
);
gateway_event!(
    MessageReactionRemove,
    "MESSAGE_REACTION_REMOVE",
    Messaging,
    replayed
);
gateway_event!(
    ChannelPinsUpdate,
    "CHANNEL_PINS_UPDATE",
    Messaging,
    replayed
);
gateway_event!(MessageUpdate, "MESSAGE_UPDATE", Messaging, replayed);
gateway_event!(MessageDelete, "MESSAGE_DELETE", Messaging, replayed);

/// An example message, for the contract test.
pub fn example_message() -> Message {
    let author = User {
        id: UserId::new(),
        username: "alice".into(),
        display_name: Some("Alice".into()),
        avatar_url: None,
        bio: None,
        status_text: None,
        created_at: Utc::now(),
    };
    Message {
        id: MessageId::new(),
        channel_id: ChannelId::new(),
        guild_id: Some(GuildId::new()),
        author: author.clone(),
        content: format!("thanks <@{}>", author.id),
        created_at: Utc::now(),
        edited_at: None,
        reply_to: Some(ReplySummary {
            id: MessageId::new(),
            author_id: author.id,
            content: "hello".into(),
            deleted: false,
        }),
        mentions: vec![author],
        mention_roles: Vec::new(),
        mention_everyone: false,
        attachments: Vec::new(),
        reactions: Vec::new(),
        pinned: false,
        nonce: Some("k3j5h2".into()),
    }
}

/// Every event of the messaging domain, each with an example.
pub fn all() -> Vec<EventInfo> {
    let message = example_message();
    let reaction = ReactionChange {
        channel_id: message.channel_id,
        message_id: message.id,
        guild_id: message.guild_id,
        user_id: message.author.id,
        emoji: "👍".into(),
    };
    let infos = [
        EventInfo::of(&MessageCreate(message.clone())),
        EventInfo::of(&MessageUpdate(message.clone())),
        EventInfo::of(&MessageDelete {
            id: message.id,
            channel_id: message.channel_id,
            guild_id: message.guild_id,
        }),
        EventInfo::of(&MessageReactionAdd(reaction.clone())),
        EventInfo::of(&MessageReactionRemove(reaction)),
        EventInfo::of(&ChannelPinsUpdate {
            channel_id: message.channel_id,
            guild_id: message.guild_id,
            last_pin_timestamp: Some(Utc::now()),
        }),
        EventInfo::of(&crate::read_states::MessageAck(
            crate::read_states::ReadState {
                channel_id: message.channel_id,
                last_read_message_id: Some(message.id),
                unread_count: 0,
                mention_count: 0,
            },
        )),
        EventInfo::of(&crate::receipts::MessageReceipt {
            channel_id: message.channel_id,
            message_id: message.id,
            user_id: message.author.id,
            delivered_at: Some(Utc::now()),
            read_at: Some(Utc::now()),
        }),
        EventInfo::of(&crate::typing::TypingStart {
            channel_id: message.channel_id,
            guild_id: message.guild_id,
            user_id: message.author.id,
            timestamp: Utc::now(),
            expires_at: Utc::now() + chrono::Duration::seconds(crate::typing::TYPING_SECS),
        }),
    ];
    infos.into_iter().filter_map(Result::ok).collect()
}
