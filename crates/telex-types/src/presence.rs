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

/// Longest presence status text.
pub const MAX_STATUS_BYTES: usize = 1024;
/// Most bytes of extension elements a presence may carry.
pub const MAX_PRESENCE_EXTRAS_BYTES: usize = 2048;

impl DevicePresence {
    /// A device's presence from what a client sent, each field checked and named when wrong.
    pub fn from_parts(show: &str, status: String, priority: i32, extras: String) -> Result<Self, crate::TelexError> {
        use crate::TelexError;
        let show = Show::parse(show).ok_or_else(|| {
            TelexError::invalid(format!("presence show {show:?} is not available, chat, away, xa, dnd or unavailable"))
        })?;
        let priority = i8::try_from(priority)
            .map_err(|_| TelexError::invalid(format!("presence priority {priority} is outside -128..127")))?;
        if status.len() > MAX_STATUS_BYTES {
            return Err(TelexError::invalid(format!("presence status is longer than {MAX_STATUS_BYTES} bytes")));
        }
        if extras.len() > MAX_PRESENCE_EXTRAS_BYTES {
            return Err(TelexError::invalid(format!(
                "presence extras are longer than {MAX_PRESENCE_EXTRAS_BYTES} bytes"
            )));
        }
        Ok(DevicePresence { show, status, priority, extras })
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
