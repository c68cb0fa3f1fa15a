//! The permission bitfield and the one algorithm every route and every gateway
//! subscription uses (API.md, Discord's bit values):
//!
//! 1. The owner has everything.
//! 2. Base = `@everyone`'s permissions | each of the member's roles'; ADMINISTRATOR
//!    in it gives everything.
//! 3. In a channel: the `@everyone` overwrite (deny, then allow), then the member's
//!    roles' overwrites together (deny, then allow), then the member's own overwrite
//!    (deny, then allow). Without VIEW_CHANNEL there, nothing else counts.
//!
//! Managing a role (or a member) takes a highest role strictly above it; the owner
//! is above everyone.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use synctalk_kernel::{RoleId, UserId};

/// A set of permissions: a u64 bitfield, on the wire as a decimal string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(pub u64);

macro_rules! bits {
    ($( $(#[$doc:meta])* $name:ident = $bit:expr; )*) => {
        impl Permissions {
            $( $(#[$doc])* pub const $name: Permissions = Permissions(1 << $bit); )*

            /// Every named permission with its name, in bit order.
            pub const NAMED: &'static [(&'static str, Permissions)] =
                &[$( (stringify!($name), Permissions(1 << $bit)), )*];
        }
    };
}

bits! {
    /// Create invites.
    CREATE_INVITE = 0;
    /// Kick members below your highest role.
    KICK_MEMBERS = 1;
    /// Ban members below your highest role.
    BAN_MEMBERS = 2;
    /// Everything, in every channel.
    ADMINISTRATOR = 3;
    /// Create, edit and delete channels, and their overwrites.
    MANAGE_CHANNELS = 4;
    /// Edit the guild.
    MANAGE_GUILD = 5;
    /// React to messages.
    ADD_REACTIONS = 6;
    /// Read the audit log.
    VIEW_AUDIT_LOG = 7;
    /// See a channel.
    VIEW_CHANNEL = 10;
    /// Send messages.
    SEND_MESSAGES = 11;
    /// Delete others' messages, pin.
    MANAGE_MESSAGES = 13;
    /// Upload files.
    ATTACH_FILES = 15;
    /// Read a channel's history.
    READ_MESSAGE_HISTORY = 16;
    /// Mention `@everyone`.
    MENTION_EVERYONE = 17;
    /// Join voice.
    CONNECT = 20;
    /// Speak in voice.
    SPEAK = 21;
    /// Mute others in voice.
    MUTE_MEMBERS = 22;
    /// Move others between voice channels.
    MOVE_MEMBERS = 24;
    /// Change your own nickname.
    CHANGE_NICKNAME = 26;
    /// Change others' nicknames.
    MANAGE_NICKNAMES = 27;
    /// Create, edit, assign and delete roles below your highest role.
    MANAGE_ROLES = 28;
}

impl Permissions {
    /// Nothing.
    pub const NONE: Permissions = Permissions(0);

    /// Every named permission.
    pub const ALL: Permissions = {
        let mut all = 0;
        let mut i = 0;
        while i < Self::NAMED.len() {
            all |= Self::NAMED[i].1.0;
            i += 1;
        }
        Permissions(all)
    };

    /// What a new guild's `@everyone` role has.
    pub const EVERYONE_DEFAULT: Permissions = Permissions(
        Self::VIEW_CHANNEL.0
            | Self::SEND_MESSAGES.0
            | Self::READ_MESSAGE_HISTORY.0
            | Self::ADD_REACTIONS.0
            | Self::ATTACH_FILES.0
            | Self::CREATE_INVITE.0
            | Self::CHANGE_NICKNAME.0
            | Self::CONNECT.0
            | Self::SPEAK.0,
    );

    /// Whether every bit of `other` is here.
    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The bits of both.
    #[must_use]
    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The bits here but not in `other`.
    #[must_use]
    pub fn without(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    /// The bits of `other` that are also here.
    #[must_use]
    pub fn intersect(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// From the stored bigint (two's complement).
    pub fn from_db(value: i64) -> Permissions {
        Permissions(u64::from_ne_bytes(value.to_ne_bytes()))
    }

    /// As stored.
    pub fn to_db(self) -> i64 {
        i64::from_ne_bytes(self.0.to_ne_bytes())
    }

    /// Parses the wire form: 1 to 19 decimal digits. Bits that are no permission are
    /// dropped (as Discord does), so a client that knows newer bits is not refused.
    pub fn parse(text: &str) -> Result<Permissions, &'static str> {
        if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must be a decimal string of 1 to 19 digits");
        }
        let value: u64 = text
            .parse()
            .map_err(|_| "must be a decimal string of 1 to 19 digits")?;
        Ok(Permissions(value).intersect(Permissions::ALL))
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Permissions {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Permissions::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Permissions {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9]{1,19}$"))
            .description(Some(
                "A permission bitfield (u64) as a decimal string, with Discord's bit values; \
                 bits that are no permission are dropped.",
            ))
            .examples([serde_json::json!("70356033")])
            .into()
    }
}

impl utoipa::ToSchema for Permissions {}

/// A role as the algorithm needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleRank {
    /// Its permissions.
    pub permissions: Permissions,
    /// Its position (`@everyone` is 0; higher is above).
    pub position: i32,
}

/// Whose overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverwriteTarget {
    /// A role's (the guild id's is `@everyone`'s).
    Role(RoleId),
    /// One member's.
    Member(UserId),
}

/// A channel's overwrite for a role or a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overwrite {
    /// Whose.
    pub target: OverwriteTarget,
    /// Granted in the channel.
    pub allow: Permissions,
    /// Taken away in the channel.
    pub deny: Permissions,
}

/// A guild's roles and owner: everything the algorithm needs but the member and the
/// channel.
#[derive(Debug, Clone)]
pub struct Roles {
    /// The owner.
    pub owner: UserId,
    /// `@everyone`'s id (the guild's).
    pub everyone: RoleId,
    /// Every role, `@everyone` included.
    pub roles: HashMap<RoleId, RoleRank>,
}

impl Roles {
    fn everyone(&self) -> Permissions {
        self.roles
            .get(&self.everyone)
            .map_or(Permissions::NONE, |r| r.permissions)
    }

    /// A member's guild-wide permissions.
    pub fn base(&self, user: UserId, member_roles: &[RoleId]) -> Permissions {
        if user == self.owner {
            return Permissions::ALL;
        }
        let mut permissions = self.everyone();
        for role in member_roles {
            if let Some(rank) = self.roles.get(role) {
                permissions = permissions.union(rank.permissions);
            }
        }
        if permissions.contains(Permissions::ADMINISTRATOR) {
            return Permissions::ALL;
        }
        permissions
    }

    /// A member's permissions in a channel with these overwrites.
    pub fn in_channel(
        &self,
        user: UserId,
        member_roles: &[RoleId],
        overwrites: &[Overwrite],
    ) -> Permissions {
        let base = self.base(user, member_roles);
        if base.contains(Permissions::ADMINISTRATOR) {
            return Permissions::ALL;
        }
        let mut permissions = base;
        let target = |t: OverwriteTarget| overwrites.iter().find(|o| o.target == t);
        if let Some(everyone) = target(OverwriteTarget::Role(self.everyone)) {
            permissions = permissions.without(everyone.deny).union(everyone.allow);
        }
        let (mut allow, mut deny) = (Permissions::NONE, Permissions::NONE);
        for role in member_roles {
            if *role == self.everyone {
                continue;
            }
            if let Some(o) = target(OverwriteTarget::Role(*role)) {
                allow = allow.union(o.allow);
                deny = deny.union(o.deny);
            }
        }
        permissions = permissions.without(deny).union(allow);
        if let Some(o) = target(OverwriteTarget::Member(user)) {
            permissions = permissions.without(o.deny).union(o.allow);
        }
        if !permissions.contains(Permissions::VIEW_CHANNEL) {
            return Permissions::NONE;
        }
        permissions
    }

    /// The position of a member's highest role (`@everyone`'s 0 when they have none);
    /// the owner is above every role.
    pub fn highest(&self, user: UserId, member_roles: &[RoleId]) -> i32 {
        if user == self.owner {
            return i32::MAX;
        }
        member_roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .map(|r| r.position)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    /// Whether `actor` may manage a role at `position` (its highest role is above it).
    pub fn outranks_role(&self, actor: UserId, actor_roles: &[RoleId], position: i32) -> bool {
        self.highest(actor, actor_roles) > position
    }

    /// Whether `actor` may act on member `target` (kick, ban, nickname, roles): the
    /// owner can never be acted on; otherwise the actor's highest role must be above
    /// the target's.
    pub fn outranks_member(
        &self,
        actor: UserId,
        actor_roles: &[RoleId],
        target: UserId,
        target_roles: &[RoleId],
    ) -> bool {
        target != self.owner
            && self.highest(actor, actor_roles) > self.highest(target, target_roles)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctalk_kernel::GuildId;

    struct Guild {
        roles: Roles,
        mods: RoleId,
        muted: RoleId,
        owner: UserId,
    }

    fn guild() -> Guild {
        let guild = GuildId::new();
        let everyone = RoleId(guild.0);
        let (mods, muted) = (RoleId::new(), RoleId::new());
        let owner = UserId::new();
        let roles = [
            (
                everyone,
                RoleRank {
                    permissions: Permissions::EVERYONE_DEFAULT,
                    position: 0,
                },
            ),
            (
                muted,
                RoleRank {
                    permissions: Permissions::NONE,
                    position: 1,
                },
            ),
            (
                mods,
                RoleRank {
                    permissions: Permissions::KICK_MEMBERS.union(Permissions::MANAGE_MESSAGES),
                    position: 2,
                },
            ),
        ]
        .into_iter()
        .collect();
        Guild {
            roles: Roles {
                owner,
                everyone,
                roles,
            },
            mods,
            muted,
            owner,
        }
    }

    #[test]
    fn wire_form_is_a_decimal_string_of_known_bits() {
        let p = Permissions::VIEW_CHANNEL.union(Permissions::SEND_MESSAGES);
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"3072\"");
        assert_eq!(serde_json::from_str::<Permissions>("\"3072\"").unwrap(), p);
        assert!(
            serde_json::from_str::<Permissions>("3072").is_err(),
            "a string"
        );
        assert!(serde_json::from_str::<Permissions>("\"-1\"").is_err());
        assert!(serde_json::from_str::<Permissions>("\"1x\"").is_err());
        assert!(serde_json::from_str::<Permissions>("\"\"").is_err());
        assert!(serde_json::from_str::<Permissions>("\"18446744073709551615\"").is_err());
        assert_eq!(
            serde_json::from_str::<Permissions>("\"3328\"").unwrap(),
            p,
            "bit 8 is no permission: dropped"
        );
        assert_eq!(
            Permissions::from_db(Permissions(u64::MAX).to_db()).0,
            u64::MAX
        );
        assert_eq!(Permissions::EVERYONE_DEFAULT.0, 70_356_033);
        assert!(Permissions::ALL.contains(Permissions::MANAGE_ROLES));
    }

    #[test]
    fn base_is_everyone_and_roles_and_the_owner_and_administrators_have_all() {
        let g = guild();
        let user = UserId::new();
        assert_eq!(g.roles.base(user, &[]), Permissions::EVERYONE_DEFAULT);
        let base = g.roles.base(user, &[g.mods]);
        assert!(base.contains(Permissions::KICK_MEMBERS.union(Permissions::VIEW_CHANNEL)));
        assert!(!base.contains(Permissions::BAN_MEMBERS));
        assert_eq!(g.roles.base(g.owner, &[]), Permissions::ALL);
        let mut admin = g.roles.clone();
        admin.roles.insert(
            g.muted,
            RoleRank {
                permissions: Permissions::ADMINISTRATOR,
                position: 1,
            },
        );
        assert_eq!(admin.base(user, &[g.muted]), Permissions::ALL);
        // An unknown (deleted) role gives nothing.
        assert_eq!(
            g.roles.base(user, &[RoleId::new()]),
            Permissions::EVERYONE_DEFAULT
        );
    }

    #[test]
    fn overwrites_apply_everyone_then_roles_then_the_member() {
        let g = guild();
        let user = UserId::new();
        let send = Permissions::SEND_MESSAGES;
        let view = Permissions::VIEW_CHANNEL;
        // @everyone denied sending; a role allows it back; the member's own deny wins.
        let mut overwrites = vec![
            Overwrite {
                target: OverwriteTarget::Role(g.roles.everyone),
                allow: Permissions::NONE,
                deny: send,
            },
            Overwrite {
                target: OverwriteTarget::Role(g.mods),
                allow: send,
                deny: Permissions::NONE,
            },
        ];
        assert!(!g.roles.in_channel(user, &[], &overwrites).contains(send));
        assert!(
            g.roles
                .in_channel(user, &[g.mods], &overwrites)
                .contains(send)
        );
        overwrites.push(Overwrite {
            target: OverwriteTarget::Member(user),
            allow: Permissions::NONE,
            deny: send,
        });
        assert!(
            !g.roles
                .in_channel(user, &[g.mods], &overwrites)
                .contains(send)
        );
        // Role allow beats role deny among the member's roles (allows applied last).
        let both = [
            Overwrite {
                target: OverwriteTarget::Role(g.muted),
                allow: Permissions::NONE,
                deny: send,
            },
            Overwrite {
                target: OverwriteTarget::Role(g.mods),
                allow: send,
                deny: Permissions::NONE,
            },
        ];
        assert!(
            g.roles
                .in_channel(user, &[g.muted, g.mods], &both)
                .contains(send)
        );
        assert!(!g.roles.in_channel(user, &[g.muted], &both).contains(send));
        // A private channel: @everyone cannot view, a member overwrite lets one in; no
        // VIEW_CHANNEL means nothing at all.
        let private = [
            Overwrite {
                target: OverwriteTarget::Role(g.roles.everyone),
                allow: Permissions::NONE,
                deny: view,
            },
            Overwrite {
                target: OverwriteTarget::Member(user),
                allow: view,
                deny: Permissions::NONE,
            },
        ];
        assert_eq!(
            g.roles.in_channel(UserId::new(), &[g.mods], &private),
            Permissions::NONE
        );
        assert!(
            g.roles
                .in_channel(user, &[], &private)
                .contains(view.union(send))
        );
        // The owner and administrators ignore overwrites.
        assert_eq!(g.roles.in_channel(g.owner, &[], &private), Permissions::ALL);
    }

    #[test]
    fn hierarchy_needs_a_strictly_higher_role_and_spares_the_owner() {
        let g = guild();
        let (a, b) = (UserId::new(), UserId::new());
        assert!(g.roles.outranks_member(a, &[g.mods], b, &[g.muted]));
        assert!(
            !g.roles.outranks_member(a, &[g.mods], b, &[g.mods]),
            "equal"
        );
        assert!(
            !g.roles.outranks_member(a, &[], b, &[]),
            "both at @everyone"
        );
        assert!(!g.roles.outranks_member(a, &[g.mods], g.owner, &[]));
        assert!(g.roles.outranks_member(g.owner, &[], a, &[g.mods]));
        assert!(g.roles.outranks_role(a, &[g.mods], 1));
        assert!(!g.roles.outranks_role(a, &[g.mods], 2));
        assert!(g.roles.outranks_role(g.owner, &[], 2));
    }
}
