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
