//! Typed topics: who an event is for. Stored on outbox rows as text (`guild:<id>`);
//! everywhere else they are values of [`Topic`].

use std::fmt;
use std::str::FromStr;

use synctalk_kernel::{CallId, ChannelId, GuildId, SessionId, UserId};

/// An audience an event is written to and a session listens to.
///
/// Every session always listens to its user's and its own topic; the others come and
/// go as the domains decide (READY's snapshot, then subscribe and unsubscribe records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// Private to one user: their relationships, their own profile, their
    /// subscriptions; every session of the user listens to it.
    User(UserId),
    /// One signed-in session (device), across all its sockets.
    Session(SessionId),
    /// A user's public face (profile changes, presence), for those who may see it.
    Profile(UserId),
    /// A guild: its settings, members, roles, bans.
    Guild(GuildId),
    /// A channel: its messages, pins, typing.
    Channel(ChannelId),
    /// A call: ringing, participants, signaling.
    Call(CallId),
}

impl Topic {
    /// The topics every session of `user` on `session` listens to, whatever happens.
    pub fn pinned(user: UserId, session: SessionId) -> [Topic; 2] {
        [Topic::User(user), Topic::Session(session)]
    }

    fn parts(self) -> (&'static str, uuid::Uuid) {
        match self {
            Topic::User(id) => ("user", id.0),
            Topic::Session(id) => ("session", id.0),
            Topic::Profile(id) => ("profile", id.0),
            Topic::Guild(id) => ("guild", id.0),
            Topic::Channel(id) => ("channel", id.0),
            Topic::Call(id) => ("call", id.0),
        }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = self.parts();
        write!(f, "{kind}:{id}")
    }
}

impl FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("not a topic: {s}"))?;
        let id = uuid::Uuid::parse_str(id).map_err(|e| e.to_string())?;
        Ok(match kind {
            "user" => Topic::User(UserId(id)),
            "session" => Topic::Session(SessionId(id)),
            "profile" => Topic::Profile(UserId(id)),
            "guild" => Topic::Guild(GuildId(id)),
            "channel" => Topic::Channel(ChannelId(id)),
            "call" => Topic::Call(CallId(id)),
            _ => return Err(format!("unknown topic kind {kind}")),
        })
    }
}

impl serde::Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Topic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The gateway domains; each event belongs to one, and a socket carries a set of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// Presence, relationships, profile, folders.
    Users,
    /// Guilds, members, roles, bans, guild channels.
    Guilds,
    /// DM and group DM channels.
    Channels,
    /// Messages.
    Messaging,
    /// Notifications.
    Notifications,
    /// Calls and voice.
    Calls,
}

impl Domain {
    /// Every domain.
    pub const ALL: [Domain; 6] = [
        Domain::Users,
        Domain::Guilds,
        Domain::Channels,
        Domain::Messaging,
        Domain::Notifications,
        Domain::Calls,
    ];

    /// The path segment and query name.
    pub fn as_str(self) -> &'static str {
        match self {
            Domain::Users => "users",
            Domain::Guilds => "guilds",
            Domain::Channels => "channels",
            Domain::Messaging => "messaging",
            Domain::Notifications => "notifications",
            Domain::Calls => "calls",
        }
    }

    /// Parses a domain name.
    pub fn parse(name: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| d.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl serde::Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Domain::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown domain {name}")))
    }
}

/// A set of domains, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct DomainSet(u8);

impl DomainSet {
    /// Adds a domain.
    pub fn insert(&mut self, domain: Domain) {
        self.0 |= domain.bit();
    }

    /// Whether it has a domain.
    pub fn contains(self, domain: Domain) -> bool {
        self.0 & domain.bit() != 0
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Its domains, in order.
    pub fn iter(self) -> impl Iterator<Item = Domain> {
        Domain::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// Names, for storage.
    pub fn names(self) -> Vec<String> {
        self.iter().map(|d| d.as_str().to_owned()).collect()
    }
}

impl FromIterator<Domain> for DomainSet {
    fn from_iter<I: IntoIterator<Item = Domain>>(iter: I) -> Self {
        let mut set = DomainSet::default();
        for d in iter {
            set.insert(d);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        for topic in [
            Topic::User(UserId::new()),
            Topic::Session(SessionId::new()),
            Topic::Profile(UserId::new()),
            Topic::Guild(GuildId::new()),
            Topic::Channel(ChannelId::new()),
            Topic::Call(CallId::new()),
        ] {
            assert_eq!(topic.to_string().parse::<Topic>().unwrap(), topic);
            let json = serde_json::to_string(&topic).unwrap();
            assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), topic);
        }
        assert!("guild:1".parse::<Topic>().is_err());
        assert!(
            "planet:0190a1b2-0000-7000-8000-000000000000"
                .parse::<Topic>()
                .is_err()
        );
    }

    #[test]
    fn domain_sets() {
        let set: DomainSet = [Domain::Users, Domain::Calls].into_iter().collect();
        assert!(set.contains(Domain::Users) && set.contains(Domain::Calls));
        assert!(!set.contains(Domain::Messaging));
        assert_eq!(set.names(), ["users", "calls"]);
        assert_eq!(Domain::parse("messaging"), Some(Domain::Messaging));
        assert_eq!(Domain::parse("nope"), None);
    }
}
