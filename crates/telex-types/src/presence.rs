//! Presence values: what one device says, and what a user shows to contacts.

use serde::{Deserialize, Serialize};

/// A device's availability (RFC 6121 `<show/>`, plus unavailable).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Show {
    Available,
    Chat,
    Away,
    /// Extended away.
    Xa,
    /// Do not disturb.
    Dnd,
    Unavailable,
}

impl Show {
    pub fn parse(s: &str) -> Option<Show> {
        Some(match s {
            "available" | "online" => Show::Available,
            "chat" => Show::Chat,
            "away" => Show::Away,
            "xa" => Show::Xa,
            "dnd" => Show::Dnd,
            "unavailable" | "offline" => Show::Unavailable,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Show::Available => "available",
            Show::Chat => "chat",
            Show::Away => "away",
            Show::Xa => "xa",
            Show::Dnd => "dnd",
            Show::Unavailable => "unavailable",
        }
    }
}

/// What one device (resource) announced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePresence {
    pub show: Show,
    pub status: String,
    /// RFC 6121 priority, -128..=127.
    pub priority: i8,
    /// Extension elements announced with it, opaque to the server (XMPP: entity capabilities,
    /// avatar hash); contacts see the ones of the device whose presence wins.
    pub extras: String,
}
