//! In-memory ports: a ledger, a directory and single-node routing, so the adapters can be
//! driven (fuzzed, unit-tested) without Raft or RocksDB. Not for production: nothing is durable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::BoxFuture;
use telex_actors::{Ledger, Limits, Messaging, RoomHub, RoomLimits, RoomStore, WeakRoomHub};
use telex_sasl::scram::{self, Hash};
use telex_types::records::{AccountRecord, ArchivedMessage, ScramKeys, TenantLimits};
use telex_types::room::{RoomChange, RoomEntry, RoomJid, RoomRecord};
use telex_types::roster::RosterItem;
use telex_types::{Domain, ErrorCode, TelexError, UserJid};

use crate::ports::{Directory, Home, Remote, RemoteLink};
use crate::Core;

#[derive(Default)]
struct State {
    tenants: BTreeSet<Domain>,
    accounts: BTreeMap<UserJid, AccountRecord>,
    archives: HashMap<UserJid, Vec<ArchivedMessage>>,
    cursors: HashMap<(UserJid, String), u64>,
    rosters: HashMap<UserJid, BTreeMap<UserJid, RosterItem>>,
    blocked: HashMap<UserJid, BTreeSet<UserJid>>,
    vcards: HashMap<UserJid, String>,
    rooms: BTreeMap<RoomJid, RoomRecord>,
    /// Each room's log; a position is its index + 1, kept across a destroy (as in Raft).
    room_logs: HashMap<RoomJid, Vec<RoomEntry>>,
    room_cursors: HashMap<(RoomJid, UserJid, String), u64>,
    memberships: BTreeMap<UserJid, BTreeSet<RoomJid>>,
}

/// Everything a single node keeps, in memory: implements the actors' `Ledger` and the core's
/// `Directory`.
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<State>>, Arc<std::sync::OnceLock<WeakRoomHub>>);

impl Memory {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a user (and its tenant) whose password is `password`; SCRAM keys are derived with
    /// few iterations (this is for tests).
    pub fn add_user(&self, jid: &UserJid, password: &str) {
        let credentials = scram::new_credentials(password, 16);
        let record =
            AccountRecord { jid: jid.clone(), credentials, disabled: false, created_at: 0, password_changed_at: 0 };
        let mut s = self.state();
        s.tenants.insert(jid.domain().clone());
        s.accounts.insert(jid.clone(), record);
    }

    /// A core over this memory, serving every actor (and room) here.
    pub fn core(&self, limits: Limits) -> Core {
        let messaging = Messaging::new(Arc::new(self.clone()), limits);
        let rooms = RoomHub::new(messaging.hub().clone(), Arc::new(self.clone()), RoomLimits::default());
        let _ = self.1.set(rooms.downgrade());
        Core::new(messaging, Arc::new(self.clone()), Arc::new(SingleNode)).with_rooms(rooms)
    }

    /// What the room actor hears from storage (a node's replica applying a command).
    fn room_changed(&self, room: &RoomJid, log: bool) {
        if let Some(hub) = self.1.get().and_then(WeakRoomHub::upgrade) {
            if log {
                hub.appended(room);
            } else {
                hub.changed(room);
            }
        }
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

impl Ledger for Memory {
    fn append(&self, owner: UserJid, message: ArchivedMessage) -> BoxFuture<'_, Result<u64, TelexError>> {
        let mut s = self.state();
        let archive = s.archives.entry(owner).or_default();
        let found = archive.iter().position(|m| m.from == message.from && m.client_id == message.client_id);
        let position = match found {
            Some(i) => i as u64 + 1,
            None => {
                archive.push(message);
                archive.len() as u64
            }
        };
        ready(Ok(position))
    }

    fn set_cursor(&self, owner: UserJid, device: String, position: u64) -> BoxFuture<'_, Result<(), TelexError>> {
        let mut s = self.state();
        let c = s.cursors.entry((owner, device)).or_default();
        *c = (*c).max(position);
        ready(Ok(()))
    }

    fn head(&self, owner: &UserJid) -> Result<u64, TelexError> {
        Ok(self.state().archives.get(owner).map_or(0, |a| a.len() as u64))
    }

    fn position_of(&self, owner: &UserJid, server_id: &str) -> Result<Option<u64>, TelexError> {
        let s = self.state();
        Ok(s.archives.get(owner).and_then(|a| a.iter().position(|m| m.server_id == server_id)).map(|i| i as u64 + 1))
    }

    fn cursor(&self, owner: &UserJid, device: &str) -> Result<u64, TelexError> {
        Ok(self.state().cursors.get(&(owner.clone(), device.to_string())).copied().unwrap_or(0))
    }

    fn latest_cursor(&self, owner: &UserJid) -> Result<u64, TelexError> {
        let s = self.state();
        Ok(s.cursors.iter().filter(|((o, _), _)| o == owner).map(|(_, c)| *c).max().unwrap_or(0))
    }

    fn range(
        &self,
        owner: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let s = self.state();
        let Some(a) = s.archives.get(owner) else { return Ok(Vec::new()) };
        Ok((from.max(1)..=to.min(a.len() as u64))
            .take(limit)
            .filter_map(|p| a.get(p as usize - 1).map(|m| (p, m.clone())))
            .collect())
    }

    fn peer_positions(
        &self,
        owner: &UserJid,
        peer: &UserJid,
        from: u64,
        to: u64,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<u64>, TelexError> {
        let all: Vec<u64> = Ledger::range(self, owner, from, to, usize::MAX)?
            .into_iter()
            .filter(|(_, m)| &m.from == peer || &m.to == peer)
            .map(|(p, _)| p)
            .collect();
        Ok(if newest_first {
            all.into_iter().rev().take(limit).collect()
        } else {
            all.into_iter().take(limit).collect()
        })
    }

    fn peer_index_start(&self, _owner: &UserJid) -> Result<u64, TelexError> {
        Ok(1)
    }

    fn entries(&self, owner: &UserJid, positions: &[u64]) -> Result<Vec<(u64, ArchivedMessage)>, TelexError> {
        let s = self.state();
        let Some(a) = s.archives.get(owner) else { return Ok(Vec::new()) };
        Ok(positions
            .iter()
            .filter_map(|&p| p.checked_sub(1).and_then(|i| a.get(i as usize)).map(|m| (p, m.clone())))
            .collect())
    }

    fn roster_put(
        &self,
        owner: UserJid,
        contact: UserJid,
        item: Option<RosterItem>,
    ) -> BoxFuture<'_, Result<(), TelexError>> {
        let mut s = self.state();
        let roster = s.rosters.entry(owner).or_default();
        match item {
            Some(i) => roster.insert(contact, i),
            None => roster.remove(&contact),
        };
        ready(Ok(()))
    }

    fn set_blocked(&self, owner: UserJid, jid: UserJid, blocked: bool) -> BoxFuture<'_, Result<(), TelexError>> {
        let mut s = self.state();
        let set = s.blocked.entry(owner).or_default();
        if blocked {
            set.insert(jid);
        } else {
            set.remove(&jid);
        }
        ready(Ok(()))
    }

    fn roster(&self, owner: &UserJid) -> Result<Vec<(UserJid, RosterItem)>, TelexError> {
        let s = self.state();
        Ok(s.rosters.get(owner).map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
    }

    fn blocked(&self, owner: &UserJid) -> Result<Vec<UserJid>, TelexError> {
        Ok(self.state().blocked.get(owner).map(|b| b.iter().cloned().collect()).unwrap_or_default())
    }

    fn is_blocked(&self, owner: &UserJid, jid: &UserJid) -> Result<bool, TelexError> {
        Ok(self.state().blocked.get(owner).is_some_and(|b| b.contains(jid)))
    }

    fn tenant_limits(&self, _domain: &Domain) -> Result<TenantLimits, TelexError> {
        Ok(TenantLimits::default())
    }

    fn user_exists(&self, jid: &UserJid) -> Result<bool, TelexError> {
        Ok(self.state().accounts.contains_key(jid))
    }
}

impl Directory for Memory {
    fn tenant_exists(&self, domain: &Domain) -> Result<bool, TelexError> {
        Ok(self.state().tenants.contains(domain))
    }

    fn scram_keys(
        &self,
        jid: &UserJid,
        hash: Hash,
    ) -> BoxFuture<'_, Result<(Option<AccountRecord>, ScramKeys), TelexError>> {
        let account = self.state().accounts.get(jid).cloned();
        let keys = match (&account, hash) {
            (Some(a), Hash::Sha256) => a.credentials.sha256.clone(),
            (Some(a), Hash::Sha1) => a.credentials.sha1.clone(),
            (None, _) => {
                ScramKeys { salt: vec![0; 16], iterations: 16, stored_key: vec![0; 32], server_key: vec![0; 32] }
            }
        };
        ready(Ok((account, keys)))
    }

    fn check_password<'a>(
        &'a self,
        jid: &'a UserJid,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AccountRecord, TelexError>> {
        let account = self.state().accounts.get(jid).cloned();
        let ok = account.filter(|a| scram::verify(Hash::Sha256, password, &a.credentials.sha256));
        ready(ok.ok_or_else(TelexError::bad_credentials))
    }

    fn vcard<'a>(&'a self, owner: &'a UserJid) -> BoxFuture<'a, Result<Option<String>, TelexError>> {
        ready(Ok(self.state().vcards.get(owner).cloned()))
    }

    fn set_vcard<'a>(&'a self, owner: &'a UserJid, vcard: String) -> BoxFuture<'a, Result<(), TelexError>> {
        let mut s = self.state();
        if vcard.is_empty() {
            s.vcards.remove(owner);
        } else {
            s.vcards.insert(owner.clone(), vcard);
        }
        ready(Ok(()))
    }
}

impl RoomStore for Memory {
    fn create(&self, mut record: RoomRecord) -> BoxFuture<'_, Result<(), TelexError>> {
        let room = record.room.clone();
        {
            let mut s = self.state();
            if s.rooms.contains_key(&room) {
                return ready(Err(TelexError::new(ErrorCode::AlreadyExists, format!("room {room} exists"))));
            }
            record.log_start = s.room_logs.get(&room).map_or(0, Vec::len) as u64 + 1;
            s.rooms.insert(room.clone(), record);
        }
        self.room_changed(&room, false);
        ready(Ok(()))
    }

    fn change(&self, room: RoomJid, change: RoomChange) -> BoxFuture<'_, Result<(), TelexError>> {
        {
            let mut s = self.state();
            let Some(r) = s.rooms.get_mut(&room) else {
                return ready(Err(TelexError::not_found(format!("no room {room}"))));
            };
            if let Err(e) = r.apply(change) {
                return ready(Err(e));
            }
        }
        self.room_changed(&room, false);
        ready(Ok(()))
    }

    fn destroy(&self, room: RoomJid) -> BoxFuture<'_, Result<(), TelexError>> {
        self.state().rooms.remove(&room);
        self.room_changed(&room, false);
        ready(Ok(()))
    }

    fn append(&self, room: RoomJid, entry: RoomEntry) -> BoxFuture<'_, Result<(u64, bool), TelexError>> {
        let answer = {
            let mut s = self.state();
            if let RoomEntry { kind: telex_types::room::EntryKind::Subject, body, .. } = &entry {
                if let Some(r) = s.rooms.get_mut(&room) {
                    r.subject = body.clone();
                }
            }
            let log = s.room_logs.entry(room.clone()).or_default();
            match log.iter().position(|e| e.server_id == entry.server_id) {
                Some(i) => (i as u64 + 1, true),
                None => {
                    log.push(entry);
                    (log.len() as u64, false)
                }
            }
        };
        self.room_changed(&room, true);
        ready(Ok(answer))
    }

    fn set_cursor(
        &self,
        room: RoomJid,
        user: UserJid,
        device: String,
        position: u64,
    ) -> BoxFuture<'_, Result<(), TelexError>> {
        let mut s = self.state();
        let c = s.room_cursors.entry((room, user, device)).or_default();
        *c = (*c).max(position);
        ready(Ok(()))
    }

    fn set_membership(&self, user: UserJid, room: RoomJid, member: bool) -> BoxFuture<'_, Result<(), TelexError>> {
        let mut s = self.state();
        let rooms = s.memberships.entry(user).or_default();
        if member {
            rooms.insert(room);
        } else {
            rooms.remove(&room);
        }
        ready(Ok(()))
    }

    fn record<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<Option<RoomRecord>, TelexError>> {
        ready(Ok(self.state().rooms.get(room).cloned()))
    }

    fn head<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<u64, TelexError>> {
        ready(Ok(self.state().room_logs.get(room).map_or(0, Vec::len) as u64))
    }

    fn range<'a>(
        &'a self,
        room: &'a RoomJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, RoomEntry)>, TelexError>> {
        let s = self.state();
        let Some(log) = s.room_logs.get(room) else { return ready(Ok(Vec::new())) };
        let page = (from.max(1)..=to.min(log.len() as u64))
            .take(limit)
            .filter_map(|p| log.get(p as usize - 1).map(|e| (p, e.clone())))
            .collect();
        ready(Ok(page))
    }

    fn position<'a>(&'a self, room: &'a RoomJid, server_id: &'a str) -> BoxFuture<'a, Result<Option<u64>, TelexError>> {
        let s = self.state();
        let found = s.room_logs.get(room).and_then(|l| l.iter().position(|e| e.server_id == server_id));
        ready(Ok(found.map(|i| i as u64 + 1)))
    }

    fn cursor<'a>(
        &'a self,
        room: &'a RoomJid,
        user: &'a UserJid,
        device: &'a str,
    ) -> BoxFuture<'a, Result<u64, TelexError>> {
        let key = (room.clone(), user.clone(), device.to_string());
        ready(Ok(self.state().room_cursors.get(&key).copied().unwrap_or(0)))
    }

    fn memberships<'a>(&'a self, user: &'a UserJid) -> BoxFuture<'a, Result<Vec<RoomJid>, TelexError>> {
        ready(Ok(self.state().memberships.get(user).map(|r| r.iter().cloned().collect()).unwrap_or_default()))
    }

    fn rooms<'a>(&'a self, tenant: &'a Domain) -> BoxFuture<'a, Result<Vec<RoomRecord>, TelexError>> {
        ready(Ok(self.state().rooms.values().filter(|r| r.room.tenant() == tenant).cloned().collect()))
    }
}

/// Every actor is here.
pub struct SingleNode;

impl Remote for SingleNode {
    fn home(&self, _user: &UserJid) -> Home {
        Home::Here
    }

    fn attach(&self, node: u64, _: &UserJid, _: &str, _: bool) -> BoxFuture<'static, Result<RemoteLink, TelexError>> {
        ready(Err(TelexError::internal(format!("a single node has no node {node} to attach to"))))
    }
}
