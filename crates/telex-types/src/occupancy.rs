//! What devices ask of a room they are in, what the room answers, and what a room actor hands
//! to the nodes holding its members' actors. These cross nodes (the room's shard leader may be
//! elsewhere), in the versioned wire encoding.

use serde::{Deserialize, Serialize};

use crate::presence::DevicePresence;
use crate::room::{Occupant, Role, RoomEntry, RoomEvent, RoomJid};
use crate::UserJid;

/// How much of the room's log a device entering wants (XEP-0045 §7.2.15); the room's
/// `history_on_join` bounds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLimit {
    pub max_stanzas: Option<u32>,
    /// Only entries sent at or after this time.
    pub since_ms: Option<u64>,
}

/// A device's request to the room it is (or wants to be) in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomCall {
    /// Enter under `nick`; from a device already in: a change of presence (or of nickname).
    Enter {
        user: UserJid,
        device: String,
        nick: String,
        password: String,
        presence: DevicePresence,
        history: HistoryLimit,
    },
    /// The device is still in the room (its session says so periodically: occupancy is soft
    /// state, lost with the room's leader and rebuilt from these).
    Refresh {
        user: UserJid,
        device: String,
        nick: String,
        presence: DevicePresence,
    },
    Leave {
        user: UserJid,
        device: String,
    },
    /// A moderator (`user`) takes the occupant under `nick` out of the room (XEP-0045 §8.2).
    Kick {
        user: UserJid,
        nick: String,
    },
    /// A private message from the occupant (`user`, `device`) to the one under `to_nick`.
    Private {
        user: UserJid,
        device: String,
        to_nick: String,
        client_id: String,
        body: String,
        extras: String,
    },
    /// A moderator (`user`) gives the occupant under `nick` a role (XEP-0045 §8.3–8.5, §9.6).
    SetRole {
        user: UserJid,
        nick: String,
        role: Role,
    },
    /// A moderator asks who is in the room with `role` (the voice and moderator lists).
    WithRole {
        user: UserJid,
        role: Role,
    },
}

impl RoomCall {
    pub fn user(&self) -> &UserJid {
        match self {
            RoomCall::Enter { user, .. }
            | RoomCall::Refresh { user, .. }
            | RoomCall::Leave { user, .. }
            | RoomCall::Kick { user, .. }
            | RoomCall::Private { user, .. }
            | RoomCall::SetRole { user, .. }
            | RoomCall::WithRole { user, .. } => user,
        }
    }
}

/// The room's answer to a `RoomCall`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomReply {
    /// In the room: the other occupants, the device's own occupancy, the history to show it
    /// and the subject. `fresh`: it was not in before (a presence change is not fresh);
    /// `created`: its entering created the room.
    Entered {
        others: Vec<(Occupant, DevicePresence)>,
        you: Occupant,
        fresh: bool,
        created: bool,
        history: Vec<(u64, RoomEntry)>,
        subject: String,
    },
    /// Out of the room (`you`: as whom it was in, if it was).
    Left {
        you: Option<Occupant>,
    },
    Refreshed,
    /// The occupant is out, every device of it under that nickname.
    Kicked,
    /// The private message was handed to the other occupant's devices.
    Sent,
    /// The occupant has the role now (it and the room are told by its presence).
    RoleSet,
    /// Occupants, one per nickname.
    Occupants(Vec<Occupant>),
}

/// Who on one node gets a room's events: listed devices (occupants) and, with `members`, every
/// native device of the user (a member).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub user: UserJid,
    pub devices: Vec<String>,
    pub members: bool,
}

/// One batch of a room's events for the users whose actors one node holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomDelivery {
    pub room: RoomJid,
    pub events: Vec<RoomEvent>,
    pub to: Vec<Recipient>,
}
