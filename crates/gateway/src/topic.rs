//! Typed topics: who an event is for. Stored on outbox rows as text (`user:<id>`);
//! everywhere else they are values of [`Topic`].

use std::fmt;
use std::str::FromStr;

use synctalk_kernel::{SessionId, UserId};

/// An audience an event is published to and a session subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Everything for one user: their relationships, profile, friends' changes.
    User(UserId),
    /// One signed-in session (device), across all its sockets.
    Session(SessionId),
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::User(id) => write!(f, "user:{id}"),
            Topic::Session(id) => write!(f, "session:{id}"),
        }
    }
}

impl FromStr for Topic {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("not a topic: {s}"))?;
        let id = uuid::Uuid::parse_str(id).map_err(|e| e.to_string())?;
        match kind {
            "user" => Ok(Topic::User(UserId(id))),
            "session" => Ok(Topic::Session(SessionId(id))),
            _ => Err(format!("unknown topic kind {kind}")),
        }
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
        let topic = Topic::User(UserId::new());
        assert_eq!(topic.to_string().parse::<Topic>().unwrap(), topic);
        let topic = Topic::Session(SessionId::new());
        assert_eq!(topic.to_string().parse::<Topic>().unwrap(), topic);
        assert!("guild:1".parse::<Topic>().is_err());
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
