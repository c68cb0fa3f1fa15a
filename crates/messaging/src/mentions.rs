//! Mentions in a message's content: `<@user_id>`, `<@&role_id>` and `@everyone`.
//! Parsing only finds candidates; the service keeps those that exist where the
//! message is sent (live users who can be in the channel, the guild's roles) and
//! `@everyone` only with MENTION_EVERYONE.

use uuid::Uuid;

/// The most distinct users or roles one message may mention; more are ignored.
pub const MAX_MENTIONS: usize = 100;

/// What a message's content mentions, before checking.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// `<@id>` (also Discord's nickname form `<@!id>`), distinct, in order.
    pub users: Vec<Uuid>,
    /// `<@&id>`, distinct, in order.
    pub roles: Vec<Uuid>,
    /// `@everyone` appears.
    pub everyone: bool,
}

impl Parsed {
    /// Whether it mentions nothing.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.roles.is_empty() && !self.everyone
    }
}

/// Finds the mentions in `content`.
pub fn parse(content: &str) -> Parsed {
    let mut parsed = Parsed {
        everyone: content.contains("@everyone"),
        ..Parsed::default()
    };
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let (list, body) = match rest.as_bytes().first() {
            Some(b'&') => (&mut parsed.roles, &rest[1..]),
            Some(b'!') => (&mut parsed.users, &rest[1..]),
            _ => (&mut parsed.users, rest),
        };
        let Some(end) = body.find('>') else { break };
        if let Ok(id) = Uuid::parse_str(&body[..end])
            && body[..end].len() == 36
            && !list.contains(&id)
            && list.len() < MAX_MENTIONS
        {
            list.push(id);
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_roles_and_everyone() {
        let (a, b, r) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let text = format!("hi <@{a}> and <@!{b}>, <@&{r}> @everyone <@{a}>");
        let parsed = parse(&text);
        assert_eq!(parsed.users, vec![a, b]);
        assert_eq!(parsed.roles, vec![r]);
        assert!(parsed.everyone);
    }

    #[test]
    fn ignores_what_is_not_a_mention() {
        let a = Uuid::now_v7();
        for text in [
            "no mentions".to_owned(),
            "<@not-a-uuid>".to_owned(),
            format!("<@{a}"),
            format!("<@{}>", a.simple()),
            "<@".to_owned(),
            "<@&>".to_owned(),
        ] {
            let parsed = parse(&text);
            assert!(parsed.users.is_empty() && parsed.roles.is_empty(), "{text}");
            assert!(!parsed.everyone);
        }
    }

    #[test]
    fn caps_the_number_of_mentions() {
        let text: String = (0..MAX_MENTIONS + 20)
            .map(|_| format!("<@{}> ", Uuid::now_v7()))
            .collect();
        assert_eq!(parse(&text).users.len(), MAX_MENTIONS);
    }
}
