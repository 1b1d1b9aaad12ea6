//! What the scheduler and the protocol drivers (XMPP, native gRPC) say to each other: a
//! logged-in connection takes `Action`s on schedule and reports `Event`s as they happen.

use std::net::{IpAddr, SocketAddr};

use tokio::sync::mpsc;

use crate::run::Clock;
use crate::scenario::Driver;

/// Actions queued towards one connection before the scheduler counts a backlog error.
pub const QUEUE: usize = 1024;

/// What the scheduler asks a connection to do.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// A chat message to user `to`; `n` numbers it in this process's history.
    Message { to: usize, n: u64, intended_us: u64 },
    /// A presence change carrying its intended time, for the contacts to time.
    Presence { intended_us: u64 },
}

/// A measurement from a connection. `sec` is the second of the sending phase it fell in.
#[derive(Debug)]
pub enum Event {
    Delivered {
        sec: usize,
        latency_us: u64,
    },
    /// The server acknowledged message `n` (stored, for Telex).
    Acked {
        sec: usize,
        latency_us: u64,
        n: u64,
    },
    /// The server refused message `n`.
    Refused {
        sec: usize,
        n: u64,
        kind: String,
    },
    PresenceSeen {
        sec: usize,
        latency_us: u64,
    },
    /// A subscription this connection asked for was approved.
    Subscribed,
    /// The connection of `user`'s `device` (its `generation`th login) ended.
    Closed {
        user: usize,
        device: usize,
        generation: u64,
    },
    Error {
        sec: usize,
        kind: String,
    },
}

/// A logged-in connection, ready to act. Dropping it ends the session.
pub struct Conn {
    pub user: usize,
    pub out: mpsc::Sender<Action>,
}

/// Everything a driver needs to log one connection in.
#[derive(Clone)]
pub struct Login {
    pub driver: Driver,
    pub server: SocketAddr,
    pub source: Option<IpAddr>,
    pub domain: String,
    pub password: String,
    pub user: usize,
    pub device: usize,
    /// Users whose presence this connection subscribes to after logging in.
    pub subscribe_to: Vec<usize>,
    /// The room this connection enters after logging in, and says its messages in.
    pub room: Option<String>,
    pub body_bytes: usize,
    /// Makes message ids unique across worker processes.
    pub id_prefix: String,
    /// Counts this slot's logins, so that the end of an old connection is told apart.
    pub generation: u64,
    pub clock: Clock,
    pub events: mpsc::UnboundedSender<Event>,
}

impl Login {
    /// The event a connection's reader sends when it ends.
    pub fn closed(&self) -> Event {
        Event::Closed { user: self.user, device: self.device, generation: self.generation }
    }

    pub fn jid(&self, user: usize) -> String {
        format!("lt{user}@{}", self.domain)
    }

    /// This connection's nickname in its room.
    pub fn nick(&self) -> String {
        format!("lt{}d{}", self.user, self.device)
    }

    pub fn message_id(&self, n: u64) -> String {
        format!("{}{n}", self.id_prefix)
    }

    /// The message number in an id this process made.
    pub fn number_of(&self, id: &str) -> Option<u64> {
        id.strip_prefix(&self.id_prefix)?.parse().ok()
    }

    /// A body carrying its intended send time, padded to the scenario's size.
    pub fn body(&self, intended_us: u64) -> String {
        let mut b = format!("t{intended_us} ");
        while b.len() < self.body_bytes {
            b.push('x');
        }
        b
    }

    pub async fn connect(self) -> anyhow::Result<Conn> {
        match self.driver {
            Driver::Xmpp => crate::xmpp::connect(self).await,
            Driver::Grpc => crate::grpc::connect(self).await,
        }
    }
}

/// The send time a body or status carries (`t<µs> ...`).
pub fn stamped(text: &str) -> Option<u64> {
    text.strip_prefix('t')?.split(' ').next()?.parse().ok()
}
