//! The users domain's gateway events, and the registry the contract test reads.

use chrono::Utc;
use synctalk_gateway::{EventInfo, gateway_event};
use synctalk_kernel::UserId;

use crate::dto::{CurrentUser, User};
use crate::presence::{Presence, Status};
use crate::relationships::{Relationship, RelationshipRemoved, RelationshipType};

// Your own profile changed (with your email), to your own sessions.
gateway_event!(CurrentUser, "USER_UPDATE", Users, replayed);
// A friend's public profile changed, to those who listen to their profile.
gateway_event!(User, "USER_UPDATE", Users, replayed);
gateway_event!(Relationship, "RELATIONSHIP_ADD", Users, replayed);
gateway_event!(RelationshipRemoved, "RELATIONSHIP_REMOVE", Users, replayed);

/// Every event of the users domain, each with an example.
pub fn all() -> Vec<EventInfo> {
    let user = User {
        id: UserId::new(),
        username: "alice".into(),
        display_name: Some("Alice".into()),
        avatar_url: None,
        bio: Some("hi".into()),
        status_text: None,
        created_at: Utc::now(),
    };
    let me = CurrentUser {
        id: user.id,
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        avatar_url: None,
        bio: None,
        status_text: Some("busy".into()),
        created_at: user.created_at,
        email: "alice@example.com".into(),
    };
    let infos = [
        EventInfo::of(&me),
        EventInfo::of(&user),
        EventInfo::of(&Relationship {
            id: user.id,
            kind: RelationshipType::Friend,
            user: user.clone(),
            since: Utc::now(),
        }),
        EventInfo::of(&RelationshipRemoved {
            id: user.id,
            kind: RelationshipType::Incoming,
        }),
        EventInfo::of(&Presence {
            user_id: user.id,
            status: Status::Dnd,
        }),
    ];
    infos.into_iter().filter_map(Result::ok).collect()
}
