//! What one device session exchanges with the server, in Telex terms. Both protocol adapters
//! (gRPC, XMPP) translate their wire format to and from these; the actors and the session core
//! see nothing else.

use std::fmt;
use std::time::Duration;

use crate::presence::DevicePresence;
use crate::records::ArchivedMessage;
use crate::room::{RoomEvent, RoomJid};
use crate::roster::RosterItem;
use crate::{ErrorCode, TelexError, UserJid};

/// Longest device (resource) name.
pub const MAX_DEVICE_BYTES: usize = 256;

/// Checks a device (resource) name a client gave: not too long, no control characters.
pub fn check_device(device: &str) -> Result<(), TelexError> {
    if device.len() > MAX_DEVICE_BYTES {
        return Err(TelexError::invalid(format!("device name longer than {MAX_DEVICE_BYTES} bytes")));
    }
    if device.chars().any(|c| c.is_control()) {
        return Err(TelexError::invalid("device name contains control characters"));
    }
    Ok(())
}

/// A message a device asks to store and deliver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendMessage {
    /// The device's id for it: a retry with the same id stores nothing twice.
    pub client_id: String,
    /// The recipient's bare JID, as the device wrote it (checked by the core).
    pub to: String,
    /// The recipient's device when the message is addressed to one (XMPP full JID); empty for
    /// the user.
    pub to_device: String,
    pub body: String,
    /// Extension elements that travel with the message (opaque to the server).
    pub extras: String,
}

/// What a device sends its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientFrame {
    Send(SendMessage),
    /// The device has every archive entry up to this position.
    Ack(u64),
    /// The device's own presence (unavailable included).
    Presence(DevicePresence),
    /// A chat state, receipt, marker or directed presence for `to`'s online devices; not stored.
    Signal {
        to: String,
        payload: String,
    },
    /// The device has the room's entries up to this position (its room cursor: a session it
    /// opens later starts with what came after).
    RoomRead {
        room: RoomJid,
        position: u64,
    },
}

impl ClientFrame {
    /// The client id of a send.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientFrame::Send(m) => Some(&m.client_id),
            _ => None,
        }
    }
}

/// A durably stored message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub server_id: String,
    /// Position in the sender's archive, and in the recipient's.
    pub position: u64,
    pub recipient_position: u64,
}

/// Why a send was not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub error: TelexError,
    /// For rate limiting: when a retry can succeed.
    pub retry_after: Option<Duration>,
}

impl From<TelexError> for Refused {
    fn from(error: TelexError) -> Self {
        Refused { error, retry_after: None }
    }
}

impl Refused {
    /// A send the session could not carry because the user's actor is moving: retryable, with
    /// the same client id (the archive deduplicates).
    pub fn moving() -> Refused {
        Refused::from(TelexError::unavailable(
            "the user's actor is moving to another node; retry with the same client id",
        ))
    }
}

/// What the server sends a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFrame {
    /// An archive entry of the session's user, at `position`. `for_other_device`: the message
    /// is addressed to another of the user's devices that is online (XMPP shows it to this one
    /// only as a carbon copy).
    Message { position: u64, message: ArchivedMessage, for_other_device: bool },
    /// The presence of one device of a contact (or of the user's own other device) changed;
    /// `None`: that device is unavailable.
    Presence { from: UserJid, device: String, presence: Option<DevicePresence> },
    /// A roster item changed (`None`: removed); `version` is the roster's version after it.
    Roster { contact: UserJid, item: Option<RosterItem>, version: String },
    /// Someone asks to see the user's presence.
    SubscriptionRequest { from: UserJid },
    /// A signal from another user's device; not stored.
    Signal { from: UserJid, from_device: String, payload: String },
    /// The user's block list changed (from any of their devices).
    Blocked { jid: UserJid, blocked: bool },
    /// The outcome of a send, by its client id.
    Sent { client_id: String, result: Result<Sent, Refused> },
    /// Something happened in a room the device is in (a native member's device is in all of
    /// its user's rooms; an XMPP device in those it entered).
    Room { room: RoomJid, event: RoomEvent },
}

/// Why the server ended a session. Adapters map each to their protocol's condition; nothing
/// matches on the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CutOff {
    /// The user's actor moved to another node (its shard's leader changed): attach again there.
    Moved,
    /// This node is shutting down: reconnect to another.
    ShuttingDown,
    /// A newer session of the same device took over.
    Replaced,
    /// The device stopped reading: its queue stayed full for `stalled` with `queued` entries
    /// waiting; it catches up when it reconnects.
    SlowReader { stalled: Duration, queued: u64 },
    /// An administrator ended the session.
    Kicked,
    /// The device broke the protocol (an acknowledgement of something never sent, a bad frame).
    Protocol(String),
    /// The session could not be kept attached to the user's actor (it kept moving, or no node
    /// serves the user's shard).
    Unreachable(String),
}

impl CutOff {
    /// The error code a protocol without cut-off reasons of its own reports it with.
    pub fn code(&self) -> ErrorCode {
        match self {
            CutOff::Moved | CutOff::ShuttingDown | CutOff::Unreachable(_) => ErrorCode::Unavailable,
            CutOff::Replaced => ErrorCode::AlreadyExists,
            CutOff::SlowReader { .. } => ErrorCode::ResourceExhausted,
            CutOff::Kicked => ErrorCode::PermissionDenied,
            CutOff::Protocol(_) => ErrorCode::InvalidArgument,
        }
    }

    /// A stable name for logs, metrics and the node-to-node encoding.
    pub fn kind(&self) -> &'static str {
        match self {
            CutOff::Moved => "moved",
            CutOff::ShuttingDown => "shutting_down",
            CutOff::Replaced => "replaced",
            CutOff::SlowReader { .. } => "slow_reader",
            CutOff::Kicked => "kicked",
            CutOff::Protocol(_) => "protocol",
            CutOff::Unreachable(_) => "unreachable",
        }
    }
}

impl fmt::Display for CutOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CutOff::Moved => f.write_str("the user's actor moved to another node; attach again"),
            CutOff::ShuttingDown => f.write_str("this node is shutting down; reconnect to another"),
            CutOff::Replaced => f.write_str("replaced by a newer session of the same device"),
            CutOff::SlowReader { stalled, queued } => write!(
                f,
                "disconnected: the device stopped reading for {stalled:?} with {queued} messages queued; \
                 reconnect to catch up"
            ),
            CutOff::Kicked => f.write_str("disconnected by an administrator"),
            CutOff::Protocol(why) => write!(f, "protocol violation: {why}"),
            CutOff::Unreachable(why) => write!(f, "the user's actor cannot be reached: {why}; reconnect"),
        }
    }
}
