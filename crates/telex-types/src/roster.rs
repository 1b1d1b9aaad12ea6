//! Roster values (RFC 6121 section 2): subscription states, pending requests, names, groups.

use serde::{Deserialize, Serialize};

/// Who sees whose presence. `To`: the user sees the contact's; `From`: the contact sees the
/// user's; `Both`: each sees the other's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Subscription {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Subscription {
    /// Whether the user sees the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }
    /// Whether the contact sees the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }
    pub fn from_parts(to: bool, from: bool) -> Subscription {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
    pub fn parse(s: &str) -> Option<Subscription> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }
}

/// One contact on a user's roster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    pub subscription: Subscription,
    /// The user asked to see the contact's presence and awaits an answer ("ask=subscribe").
    pub pending_out: bool,
    /// The contact asked to see the user's presence and awaits the user's answer.
    pub pending_in: bool,
    pub name: String,
    pub groups: Vec<String>,
}

/// The four subscription stanza kinds of RFC 6121 section 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionKind {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

/// A roster's version (XEP-0237): a digest of every item, so equal rosters have equal
/// versions on every node and no counter needs storing. Opaque to clients.
pub fn version<'a>(items: impl IntoIterator<Item = (&'a crate::UserJid, &'a RosterItem)>) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (jid, item) in items {
        h.update(&crate::wire::encode(&(jid, item)));
    }
    format!("{:016x}", h.digest())
}

/// Roster and block-list requests from the user's own devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterOp {
    Get,
    /// Set the item's name and groups and ask to see the contact's presence.
    Add {
        contact: crate::UserJid,
        name: String,
        groups: Vec<String>,
    },
    /// Remove the item, ending subscriptions both ways.
    Remove {
        contact: crate::UserJid,
    },
    /// Let a contact who asked see the user's presence.
    Approve {
        contact: crate::UserJid,
    },
    /// Refuse a pending request, or stop a contact seeing the user's presence.
    Deny {
        contact: crate::UserJid,
    },
    Block {
        jid: crate::UserJid,
    },
    Unblock {
        jid: crate::UserJid,
    },
    Blocked,
    /// Set the item's name and groups only (an XMPP roster set), creating it if needed.
    Set {
        contact: crate::UserJid,
        name: String,
        groups: Vec<String>,
    },
    /// Ask to see the contact's presence, keeping the item's name and groups.
    Subscribe {
        contact: crate::UserJid,
    },
    /// Stop seeing the contact's presence, or withdraw a pending request.
    Unsubscribe {
        contact: crate::UserJid,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterReply {
    Items(Vec<(crate::UserJid, RosterItem)>),
    Blocked(Vec<crate::UserJid>),
}
