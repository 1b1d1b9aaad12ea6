//! What each command does to a group's state: pure logic over a transactional view, so it is
//! unit-tested without RocksDB or openraft.

use std::collections::BTreeMap;

use telex_types::records::{AccountRecord, TenantRecord};
use telex_types::room::{EntryKind, RoomEntry, RoomJid, RoomRecord};
use telex_types::wire::{decode, encode};
use telex_types::{Command, ErrorCode, Response, TelexError};

use telex_store::KeyValue;

use crate::schema;

/// Read access to the committed state a batch of commands starts from.
pub trait BaseRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, String>;
}

/// Pending writes over a base: reads see earlier writes of the same batch.
pub struct Txn<'a> {
    base: &'a dyn BaseRead,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> Txn<'a> {
    pub fn new(base: &'a dyn BaseRead) -> Self {
        Txn { base, pending: BTreeMap::new() }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, String> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            self.base.scan_prefix(prefix)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let end = schema::prefix_end(prefix);
        for (k, v) in self.pending.range(prefix.to_vec()..end) {
            merged.insert(k.clone(), v.clone());
        }
        Ok(merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// The writes to make, in key order: `None` deletes.
    pub fn into_writes(self) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        self.pending
    }
}

/// Applies one command. `Err` means the state could not be read (a storage failure); a refused
/// command is `Ok(Response::Refused(..))`.
pub fn apply(cmd: Command, txn: &mut Txn<'_>) -> Result<Response, String> {
    let refused = |code, msg: String| Ok(Response::Refused(TelexError::new(code, msg)));
    match cmd {
        Command::CreateTenant { domain, at } => {
            let key = schema::tenant(&domain);
            if txn.get(&key)?.is_some() {
                return refused(ErrorCode::AlreadyExists, format!("tenant {domain} already exists"));
            }
            txn.put(key, encode(&TenantRecord { domain, created_at: at }));
            Ok(Response::Done)
        }
        Command::CreateAccount { jid, credentials, at } => {
            let key = schema::account(&jid);
            if txn.get(&key)?.is_some() {
                return refused(ErrorCode::AlreadyExists, format!("user {jid} already exists"));
            }
            let rec = AccountRecord { jid, credentials, disabled: false, created_at: at, password_changed_at: at };
            txn.put(key, encode(&rec));
            Ok(Response::Done)
        }
        Command::RemoveAccount { jid } => {
            let key = schema::account(&jid);
            if txn.get(&key)?.is_none() {
                return refused(ErrorCode::NotFound, format!("no such user {jid}"));
            }
            txn.delete(key);
            revoke_all(txn, &jid)?;
            Ok(Response::Done)
        }
        Command::SetDisabled { jid, disabled } => {
            let Some(mut rec) = account(txn, &jid)? else {
                return refused(ErrorCode::NotFound, format!("no such user {jid}"));
            };
            rec.disabled = disabled;
            txn.put(schema::account(&jid), encode(&rec));
            if disabled {
                revoke_all(txn, &jid)?;
            }
            Ok(Response::Done)
        }
        Command::SetCredentials { jid, credentials, at } => {
            let Some(mut rec) = account(txn, &jid)? else {
                return refused(ErrorCode::NotFound, format!("no such user {jid}"));
            };
            rec.credentials = credentials;
            rec.password_changed_at = at;
            txn.put(schema::account(&jid), encode(&rec));
            // A new password ends every session opened with the old one.
            revoke_all(txn, &jid)?;
            Ok(Response::Done)
        }
        Command::IssueToken { jid, token } => {
            match account(txn, &jid)? {
                Some(rec) if !rec.disabled => {}
                // Removed or disabled between the password check and now.
                _ => return Ok(Response::Refused(TelexError::bad_credentials())),
            }
            txn.put(schema::token(&jid, &token.id), encode(&token));
            Ok(Response::Done)
        }
        Command::RevokeToken { jid, token_id } => {
            let key = schema::token(&jid, &token_id);
            let existed = txn.get(&key)?.is_some();
            txn.delete(key);
            Ok(Response::Changed(existed as u64))
        }
        Command::RevokeAllTokens { jid } => Ok(Response::Changed(revoke_all(txn, &jid)?)),
        Command::AppendArchive { owner, message } => append(txn, &owner, &message),
        Command::RosterPut { owner, contact, item } => {
            txn.put(schema::roster_item(&owner, &contact), encode(&(contact, item)));
            Ok(Response::Done)
        }
        Command::RosterDelete { owner, contact } => {
            let key = schema::roster_item(&owner, &contact);
            let existed = txn.get(&key)?.is_some();
            txn.delete(key);
            Ok(Response::Changed(u64::from(existed)))
        }
        Command::SetBlocked { owner, jid, blocked } => {
            let key = schema::blocked(&owner, &jid);
            let was = txn.get(&key)?.is_some();
            if blocked {
                txn.put(key, encode(&jid));
            } else {
                txn.delete(key);
            }
            Ok(Response::Changed(u64::from(was != blocked)))
        }
        Command::SetVCard { owner, vcard } => {
            let key = schema::vcard(&owner);
            if vcard.is_empty() {
                txn.delete(key);
            } else {
                txn.put(key, encode(&vcard));
            }
            Ok(Response::Done)
        }
        Command::SetCursor { owner, device, position } => advance(txn, schema::cursor(&owner, &device), position),
        Command::SetTenantLimits { domain, limits } => {
            if txn.get(&schema::tenant(&domain))?.is_none() {
                return refused(ErrorCode::NotFound, format!("no such tenant {domain}"));
            }
            // Checked here too: a command may come from a peer, not only the admin API.
            if let Err(e) = limits.validate() {
                return Ok(Response::Refused(e));
            }
            txn.put(schema::tenant_limits(&domain), encode(&limits));
            Ok(Response::Done)
        }
        Command::Batch(cmds) => cmds.into_iter().map(|c| apply(c, txn)).collect::<Result<_, _>>().map(Response::Batch),
        Command::SetPlacement { group, nodes } => {
            txn.put(schema::placement(group), encode(&nodes));
            Ok(Response::Done)
        }
        Command::SetNodeInfo(record) => {
            txn.put(schema::node(record.node), encode(&record));
            Ok(Response::Done)
        }
        Command::ForgetNode { node } => {
            txn.delete(schema::node(node));
            Ok(Response::Done)
        }
        Command::CreateRoom(mut record) => {
            let key = schema::room(&record.room);
            if txn.get(&key)?.is_some() {
                return refused(ErrorCode::AlreadyExists, format!("room {} already exists", record.room));
            }
            if let Err(e) = record.config.validate() {
                return Ok(Response::Refused(e));
            }
            record.log_start = match txn.get(&schema::room_head(&record.room))? {
                Some(v) => decode_u64(&v)? + 1,
                None => 1,
            };
            txn.put(key, encode(&record));
            Ok(Response::Done)
        }
        Command::ChangeRoom { room, change } => {
            let Some(mut record) = room_record(txn, &room)? else {
                return refused(ErrorCode::NotFound, format!("no such room {room}"));
            };
            // Checked here too (not only by the caller): two owners stepping down at once must
            // not both win.
            if let Err(e) = record.apply(change) {
                return Ok(Response::Refused(e));
            }
            txn.put(schema::room(&room), encode(&record));
            Ok(Response::Done)
        }
        Command::DestroyRoom { room } => {
            if txn.get(&schema::room(&room))?.is_none() {
                return refused(ErrorCode::NotFound, format!("no such room {room}"));
            }
            // The record only: the log's head stays, so a room created again under this name
            // starts after the old log, which is no longer shown (and is left for a sweep to
            // delete in bounded steps, not in one apply).
            txn.delete(schema::room(&room));
            Ok(Response::Done)
        }
        Command::AppendRoom { room, entry } => append_room(txn, &room, &entry),
        Command::SetRoomCursor { room, user, device, position } => {
            advance(txn, schema::room_cursor(&room, &user, &device), position)
        }
        Command::SetRoomMembership { user, room, member } => set_flag(txn, schema::membership(&user, &room), member),
        Command::SetUserAttributes { user, attributes } => {
            let key = schema::user_attributes(&user);
            match attributes {
                Some(a) => {
                    if let Err(e) = a.validate() {
                        return Ok(Response::Refused(e));
                    }
                    txn.put(key, encode(&a));
                }
                None => txn.delete(key),
            }
            Ok(Response::Done)
        }
        Command::PutGroup(record) => {
            if let Err(e) = record.validate() {
                return Ok(Response::Refused(e));
            }
            txn.put(schema::group(&record.tenant, &record.name), encode(&record));
            Ok(Response::Done)
        }
        Command::RemoveGroup { tenant, name } => {
            let key = schema::group(&tenant, &name);
            if txn.get(&key)?.is_none() {
                return refused(ErrorCode::NotFound, format!("no group {name} in {tenant}"));
            }
            txn.delete(key);
            for (k, _) in txn.scan_prefix(&schema::group_members(&tenant, &name))? {
                txn.delete(k);
            }
            Ok(Response::Done)
        }
        Command::SetGroupMember { tenant, group, user, member } => {
            if txn.get(&schema::group(&tenant, &group))?.is_none() {
                return refused(ErrorCode::NotFound, format!("no group {group} in {tenant}"));
            }
            set_flag(txn, schema::group_member(&tenant, &group, &user), member)
        }
        Command::SetPolicy { tenant, mut policy } => {
            let version = next(txn, schema::policy_head(&tenant))?;
            policy.version = version;
            txn.put(schema::policy_version(&tenant, version), encode(&policy));
            Ok(Response::Changed(version))
        }
        Command::AppendAudit { tenant, mut entry } => {
            let seq = next(txn, schema::audit_head(tenant.as_ref()))?;
            entry.seq = seq;
            txn.put(schema::audit_entry(tenant.as_ref(), seq), encode(&entry));
            Ok(Response::Changed(seq))
        }
        Command::PutAdmin { record, only_first } => {
            if let Err(e) = record.validate() {
                return Ok(Response::Refused(e));
            }
            if only_first && !txn.scan_prefix(schema::ADMINS)?.is_empty() {
                return refused(ErrorCode::AlreadyExists, "admin identities exist already".to_string());
            }
            txn.put(schema::admin(&record.name), encode(&record));
            Ok(Response::Done)
        }
        Command::RemoveAdmin { name } => {
            let key = schema::admin(&name);
            if txn.get(&key)?.is_none() {
                return refused(ErrorCode::NotFound, format!("no admin {name}"));
            }
            txn.delete(key);
            Ok(Response::Done)
        }
    }
}

/// Sets or clears a key whose presence is the value; whether it changed.
fn set_flag(txn: &mut Txn<'_>, key: Vec<u8>, on: bool) -> Result<Response, String> {
    let was = txn.get(&key)?.is_some();
    if on {
        txn.put(key, Vec::new());
    } else {
        txn.delete(key);
    }
    Ok(Response::Changed(u64::from(was != on)))
}

/// Counts the counter at `key` up by one; the new value.
fn next(txn: &mut Txn<'_>, key: Vec<u8>) -> Result<u64, String> {
    let n = match txn.get(&key)? {
        Some(v) => decode_u64(&v)? + 1,
        None => 1,
    };
    txn.put(key, n.to_be_bytes().to_vec());
    Ok(n)
}

/// Moves a delivery cursor forward to `position` (never back); whether it moved.
fn advance(txn: &mut Txn<'_>, key: Vec<u8>, position: u64) -> Result<Response, String> {
    let old = match txn.get(&key)? {
        Some(v) => decode_u64(&v)?,
        None => 0,
    };
    if position > old {
        txn.put(key, position.to_be_bytes().to_vec());
    }
    Ok(Response::Changed(u64::from(position > old)))
}

fn room_record(txn: &Txn<'_>, room: &RoomJid) -> Result<Option<RoomRecord>, String> {
    match txn.get(&schema::room(room))? {
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.message),
        None => Ok(None),
    }
}

/// Appends `entry` to `room`'s log unless it is already there (a retry, found by its server
/// id); either way answers with its position. A subject entry becomes the room's subject.
fn append_room(txn: &mut Txn<'_>, room: &RoomJid, entry: &RoomEntry) -> Result<Response, String> {
    let Some(mut record) = room_record(txn, room)? else {
        return Ok(Response::Refused(TelexError::not_found(format!("no such room {room}"))));
    };
    let id_key = schema::room_id(room, &entry.server_id);
    let mut index_id = true;
    if let Some(pos) = txn.get(&id_key)? {
        let position = decode_u64(&pos)?;
        let stored: Option<RoomEntry> = match txn.get(&schema::room_entry(room, position))? {
            Some(bytes) => Some(decode(&bytes).map_err(|e| e.message)?),
            None => None,
        };
        let retry = stored.is_some_and(|s| s.from == entry.from && s.client_id == entry.client_id);
        if retry && position >= record.log_start {
            return Ok(Response::Appended { position, duplicate: true });
        }
        // A hash clash, or an entry of a destroyed room of the same name: keep the index
        // pointing at the older entry only for a clash.
        index_id = position < record.log_start;
    }
    let head_key = schema::room_head(room);
    let position = match txn.get(&head_key)? {
        Some(v) => decode_u64(&v)? + 1,
        None => 1,
    };
    txn.put(schema::room_entry(room, position), encode(entry));
    txn.put(head_key, position.to_be_bytes().to_vec());
    if index_id {
        txn.put(id_key, position.to_be_bytes().to_vec());
    }
    if entry.kind == EntryKind::Subject {
        record.subject = entry.body.clone();
        txn.put(schema::room(room), encode(&record));
    }
    Ok(Response::Appended { position, duplicate: false })
}

/// Appends `message` to `owner`'s archive (and the peer index) unless it is already there (a
/// retry: found by its server id, derived from the sender and the client's id); either way
/// answers with its position. Two reads and four writes: the id index, the head (position and
/// peer-index start in one value), the entry and its peer-index key; a retry reads its entry.
fn append(
    txn: &mut Txn<'_>,
    owner: &telex_types::UserJid,
    message: &telex_types::records::ArchivedMessage,
) -> Result<Response, String> {
    let id_key = schema::archive_id(owner, &message.server_id);
    let mut index_id = true;
    if let Some(pos) = txn.get(&id_key)? {
        let position = decode_u64(&pos)?;
        // The id is a hash: a retry only if the entry there is the same (sender, client id).
        // Another message that hashes alike is stored without an id index key of its own.
        if same_message(txn, owner, position, message)? {
            return Ok(Response::Appended { position, duplicate: true });
        }
        index_id = false;
    }
    let head_key = schema::archive_head(owner);
    let (position, peer_start) = match txn.get(&head_key)? {
        None => (1, 1),
        Some(v) => {
            let head = schema::Head::decode(&v).ok_or_else(|| format!("corrupt archive head of {} bytes", v.len()))?;
            let position = head.position + 1;
            let start = match head.peer_start {
                Some(start) => start,
                // An archive begun before the peer index: where it started, or here.
                None => match txn.get(&schema::archive_peer_start(owner))? {
                    Some(v) => decode_u64(&v)?,
                    None => position,
                },
            };
            (position, start)
        }
    };
    txn.put(schema::archive_entry(owner, position), encode(message));
    let peer = if &message.to == owner { &message.from } else { &message.to };
    txn.put(schema::archive_peer(owner, peer, position), Vec::new());
    txn.put(head_key, schema::Head::encode(position, peer_start));
    if index_id {
        txn.put(id_key, position.to_be_bytes().to_vec());
    }
    Ok(Response::Appended { position, duplicate: false })
}

/// Whether the entry at `position` of `owner`'s archive is `message` sent again.
fn same_message(
    txn: &Txn<'_>,
    owner: &telex_types::UserJid,
    position: u64,
    message: &telex_types::records::ArchivedMessage,
) -> Result<bool, String> {
    let Some(bytes) = txn.get(&schema::archive_entry(owner, position))? else { return Ok(false) };
    let stored: telex_types::records::ArchivedMessage = decode(&bytes).map_err(|e| e.message)?;
    Ok(stored.from == message.from && stored.client_id == message.client_id)
}

fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| format!("corrupt counter of {} bytes", bytes.len()))?;
    Ok(u64::from_be_bytes(arr))
}

fn account(txn: &Txn<'_>, jid: &telex_types::UserJid) -> Result<Option<AccountRecord>, String> {
    match txn.get(&schema::account(jid))? {
        Some(bytes) => decode(&bytes).map(Some).map_err(|e| e.message),
        None => Ok(None),
    }
}

fn revoke_all(txn: &mut Txn<'_>, jid: &telex_types::UserJid) -> Result<u64, String> {
    let tokens = txn.scan_prefix(&schema::tokens_of(jid))?;
    let n = tokens.len() as u64;
    for (k, _) in tokens {
        txn.delete(k);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telex_types::records::{Credentials, ScramKeys, TokenRecord};
    use telex_types::{Domain, UserJid};

    #[derive(Default)]
    struct Mem(BTreeMap<Vec<u8>, Vec<u8>>);

    impl BaseRead for Mem {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, String> {
            Ok(self.0.range(prefix.to_vec()..schema::prefix_end(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect())
        }
    }

    impl Mem {
        fn run(&mut self, cmd: Command) -> Response {
            let mut txn = Txn::new(self);
            let r = apply(cmd, &mut txn).unwrap();
            for (k, v) in txn.into_writes() {
                match v {
                    Some(v) => self.0.insert(k, v),
                    None => self.0.remove(&k),
                };
            }
            r
        }
    }

    fn creds() -> Credentials {
        let k = ScramKeys { salt: vec![1], iterations: 4096, stored_key: vec![2], server_key: vec![3] };
        Credentials { sha256: k.clone(), sha1: k }
    }

    fn token(id: &str) -> TokenRecord {
        TokenRecord { id: id.into(), secret_hash: [0; 32], device: "d".into(), issued_at: 1, expires_at: 2 }
    }

    fn code(r: Response) -> Option<ErrorCode> {
        match r {
            Response::Refused(e) => Some(e.code),
            _ => None,
        }
    }

    #[test]
    fn tenants_are_created_once() {
        let mut m = Mem::default();
        let d = Domain::parse("acme.example").unwrap();
        assert_eq!(m.run(Command::CreateTenant { domain: d.clone(), at: 1 }), Response::Done);
        assert_eq!(code(m.run(Command::CreateTenant { domain: d, at: 2 })), Some(ErrorCode::AlreadyExists));
    }

    #[test]
    fn account_lifecycle_revokes_tokens() {
        let mut m = Mem::default();
        let alice = UserJid::parse("alice@acme.example").unwrap();
        let bob = UserJid::parse("bob@acme.example").unwrap();
        assert_eq!(m.run(Command::CreateAccount { jid: alice.clone(), credentials: creds(), at: 1 }), Response::Done);
        assert_eq!(
            code(m.run(Command::CreateAccount { jid: alice.clone(), credentials: creds(), at: 1 })),
            Some(ErrorCode::AlreadyExists)
        );
        assert_eq!(
            code(m.run(Command::IssueToken { jid: bob.clone(), token: token("b") })),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(m.run(Command::IssueToken { jid: alice.clone(), token: token("a1") }), Response::Done);
        assert_eq!(m.run(Command::IssueToken { jid: alice.clone(), token: token("a2") }), Response::Done);
        assert_eq!(m.run(Command::RevokeToken { jid: alice.clone(), token_id: "a1".into() }), Response::Changed(1));
        assert_eq!(m.run(Command::RevokeToken { jid: alice.clone(), token_id: "a1".into() }), Response::Changed(0));
        // Disabling revokes the remaining token and blocks new ones.
        assert_eq!(m.run(Command::SetDisabled { jid: alice.clone(), disabled: true }), Response::Done);
        assert!(m.0.keys().all(|k| !k.starts_with(b"k/")));
        assert_eq!(
            code(m.run(Command::IssueToken { jid: alice.clone(), token: token("a3") })),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(m.run(Command::SetDisabled { jid: alice.clone(), disabled: false }), Response::Done);
        assert_eq!(m.run(Command::IssueToken { jid: alice.clone(), token: token("a4") }), Response::Done);
        assert_eq!(m.run(Command::RevokeAllTokens { jid: alice.clone() }), Response::Changed(1));
        assert_eq!(m.run(Command::RemoveAccount { jid: alice.clone() }), Response::Done);
        assert_eq!(code(m.run(Command::RemoveAccount { jid: alice })), Some(ErrorCode::NotFound));
        assert_eq!(code(m.run(Command::SetDisabled { jid: bob, disabled: true })), Some(ErrorCode::NotFound));
    }

    fn msg(from: &UserJid, to: &UserJid, client_id: &str) -> telex_types::records::ArchivedMessage {
        telex_types::records::ArchivedMessage {
            server_id: telex_types::records::server_id(from, client_id),
            from: from.clone(),
            to: to.clone(),
            from_device: "laptop".into(),
            client_id: client_id.into(),
            body: "hi".into(),
            sent_at: 1,
            extras: String::new(),
            to_device: String::new(),
        }
    }

    #[test]
    fn extension_elements_live_in_the_entry_and_the_peer_index_lists_it() {
        let mut m = Mem::default();
        let (alice, bob) = (UserJid::parse("alice@x").unwrap(), UserJid::parse("bob@x").unwrap());
        let with_extras = telex_types::records::ArchivedMessage {
            extras: "<request xmlns='urn:xmpp:receipts'/>".into(),
            ..msg(&alice, &bob, "c1")
        };
        let cmd = Command::AppendArchive { owner: bob.clone(), message: with_extras.clone() };
        assert_eq!(m.run(cmd.clone()), Response::Appended { position: 1, duplicate: false });
        assert_eq!(m.0.get(&schema::archive_entry(&bob, 1)), Some(&encode(&with_extras)));
        assert_eq!(m.0.get(&schema::archive_extras(&bob, 1)), None, "no key of their own any more");
        // Bob's archive lists the entry under its other party, alice; the index starts at 1.
        assert!(m.0.contains_key(&schema::archive_peer(&bob, &alice, 1)));
        assert_eq!(m.0.get(&schema::archive_head(&bob)), Some(&schema::Head::encode(1, 1)));
        // A retry finds the first copy and stores nothing twice.
        assert_eq!(m.run(cmd), Response::Appended { position: 1, duplicate: true });
        // A message to oneself is listed under oneself.
        let own = Command::AppendArchive { owner: bob.clone(), message: msg(&bob, &bob, "c2") };
        assert_eq!(m.run(own), Response::Appended { position: 2, duplicate: false });
        assert!(m.0.contains_key(&schema::archive_peer(&bob, &bob, 2)));
    }

    #[test]
    fn archives_begun_before_the_peer_index_keep_their_start() {
        let (alice, bob) = (UserJid::parse("alice@x").unwrap(), UserJid::parse("bob@x").unwrap());
        let append =
            |m: &mut Mem, c: &str| m.run(Command::AppendArchive { owner: bob.clone(), message: msg(&alice, &bob, c) });
        // An 8-byte head and no index start: the index begins with the next entry.
        let mut m = Mem::default();
        m.0.insert(schema::archive_head(&bob), 7u64.to_be_bytes().to_vec());
        assert_eq!(append(&mut m, "c1"), Response::Appended { position: 8, duplicate: false });
        assert_eq!(m.0.get(&schema::archive_head(&bob)), Some(&schema::Head::encode(8, 8)));
        // An 8-byte head with an index start: the start is carried into the head.
        let mut m = Mem::default();
        m.0.insert(schema::archive_head(&bob), 7u64.to_be_bytes().to_vec());
        m.0.insert(schema::archive_peer_start(&bob), 5u64.to_be_bytes().to_vec());
        assert_eq!(append(&mut m, "c1"), Response::Appended { position: 8, duplicate: false });
        assert_eq!(m.0.get(&schema::archive_head(&bob)), Some(&schema::Head::encode(8, 5)));
        assert_eq!(append(&mut m, "c2"), Response::Appended { position: 9, duplicate: false });
        assert_eq!(m.0.get(&schema::archive_head(&bob)), Some(&schema::Head::encode(9, 5)));
        // A head of another length is corruption, not a guess.
        m.0.insert(schema::archive_head(&bob), vec![1, 2, 3]);
        let mut txn = Txn::new(&m);
        let cmd = Command::AppendArchive { owner: bob.clone(), message: msg(&alice, &bob, "c3") };
        assert!(apply(cmd, &mut txn).unwrap_err().contains("corrupt archive head"));
    }

    #[test]
    fn a_different_message_with_the_same_server_id_is_stored_too() {
        let mut m = Mem::default();
        let (alice, bob, carol) =
            (UserJid::parse("alice@x").unwrap(), UserJid::parse("bob@x").unwrap(), UserJid::parse("carol@x").unwrap());
        let first = msg(&alice, &bob, "c1");
        let clash =
            telex_types::records::ArchivedMessage { server_id: first.server_id.clone(), ..msg(&carol, &bob, "c9") };
        let append = |m: &mut Mem, message| m.run(Command::AppendArchive { owner: bob.clone(), message });
        assert_eq!(append(&mut m, first.clone()), Response::Appended { position: 1, duplicate: false });
        assert_eq!(append(&mut m, clash), Response::Appended { position: 2, duplicate: false }, "not a retry");
        // The id still finds the first message, and its retry is still a duplicate.
        assert_eq!(m.0.get(&schema::archive_id(&bob, &first.server_id)), Some(&1u64.to_be_bytes().to_vec()));
        assert_eq!(append(&mut m, first), Response::Appended { position: 1, duplicate: true });
    }

    #[test]
    fn archive_appends_in_order_and_retries_find_the_first_copy() {
        let mut m = Mem::default();
        let alice = UserJid::parse("alice@x.example").unwrap();
        let bob = UserJid::parse("bob@x.example").unwrap();
        let append =
            |m: &mut Mem, c: &str| m.run(Command::AppendArchive { owner: bob.clone(), message: msg(&alice, &bob, c) });
        assert_eq!(append(&mut m, "c1"), Response::Appended { position: 1, duplicate: false });
        assert_eq!(append(&mut m, "c2"), Response::Appended { position: 2, duplicate: false });
        assert_eq!(append(&mut m, "c1"), Response::Appended { position: 1, duplicate: true });
        // The same client id from another sender is another message.
        let carol = UserJid::parse("carol@x.example").unwrap();
        let r = m.run(Command::AppendArchive { owner: bob.clone(), message: msg(&carol, &bob, "c1") });
        assert_eq!(r, Response::Appended { position: 3, duplicate: false });
        // Archives are per owner.
        let r = m.run(Command::AppendArchive { owner: alice.clone(), message: msg(&alice, &bob, "c1") });
        assert_eq!(r, Response::Appended { position: 1, duplicate: false });
        let stored: Vec<_> = m.0.keys().filter(|k| k.starts_with(&schema::archive_of(&bob))).collect();
        assert_eq!(stored.len(), 3, "no second copy of a retried message");
    }

    #[test]
    fn cursors_never_move_backwards() {
        let mut m = Mem::default();
        let bob = UserJid::parse("bob@x.example").unwrap();
        let set =
            |m: &mut Mem, p| m.run(Command::SetCursor { owner: bob.clone(), device: "phone".into(), position: p });
        assert_eq!(set(&mut m, 5), Response::Changed(1));
        assert_eq!(set(&mut m, 3), Response::Changed(0));
        assert_eq!(m.0.get(&schema::cursor(&bob, "phone")).unwrap(), &5u64.to_be_bytes().to_vec());
    }

    #[test]
    fn batched_commands_answer_in_order_and_see_each_other() {
        let mut m = Mem::default();
        let alice = UserJid::parse("alice@x.example").unwrap();
        let bob = UserJid::parse("bob@x.example").unwrap();
        let append = |c: &str| Command::AppendArchive { owner: bob.clone(), message: msg(&alice, &bob, c) };
        let r = m.run(Command::Batch(vec![
            append("c1"),
            append("c2"),
            append("c1"),
            Command::RemoveAccount { jid: alice.clone() },
        ]));
        let Response::Batch(rs) = r else { panic!("not a batch response: {r:?}") };
        assert_eq!(rs[0], Response::Appended { position: 1, duplicate: false });
        assert_eq!(rs[1], Response::Appended { position: 2, duplicate: false });
        assert_eq!(rs[2], Response::Appended { position: 1, duplicate: true });
        assert_eq!(code(rs[3].clone()), Some(ErrorCode::NotFound), "a refusal inside a batch stays its own");
    }

    #[test]
    fn a_batch_sees_its_own_writes() {
        let m = Mem::default();
        let alice = UserJid::parse("alice@x.example").unwrap();
        let mut txn = Txn::new(&m);
        apply(Command::CreateAccount { jid: alice.clone(), credentials: creds(), at: 1 }, &mut txn).unwrap();
        apply(Command::IssueToken { jid: alice.clone(), token: token("t") }, &mut txn).unwrap();
        let r = apply(Command::RemoveAccount { jid: alice }, &mut txn).unwrap();
        assert_eq!(r, Response::Done);
        assert!(txn.into_writes().values().all(|v| v.is_none()), "account and token both deleted");
    }

    #[test]
    fn a_room_log_appends_once_per_message_and_goes_with_the_room() {
        use telex_types::room::{Affiliation, EntryKind, RoomChange, RoomConfig, RoomEntry, RoomJid, RoomRecord};
        let mut m = Mem::default();
        let ann = UserJid::parse("ann@x.example").unwrap();
        let room = RoomJid::parse("team@conference.x.example").unwrap();
        let record = RoomRecord {
            room: room.clone(),
            config: RoomConfig::default(),
            affiliations: [(ann.clone(), Affiliation::Owner)].into_iter().collect(),
            subject: String::new(),
            created_by: ann.clone(),
            created_at: 1,
            log_start: 0,
            roles: Default::default(),
        };
        let entry = |client_id: &str, kind| RoomEntry {
            server_id: format!("s-{client_id}"),
            kind,
            from: ann.clone(),
            from_device: "pc".into(),
            nick: "Ann".into(),
            client_id: client_id.into(),
            body: format!("body {client_id}"),
            extras: String::new(),
            sent_at: 2,
        };
        let say = |c: &str, kind| Command::AppendRoom { room: room.clone(), entry: entry(c, kind) };
        assert_eq!(code(m.run(say("c0", EntryKind::Message))), Some(ErrorCode::NotFound), "no room yet");
        assert_eq!(m.run(Command::CreateRoom(record.clone())), Response::Done);
        assert_eq!(code(m.run(Command::CreateRoom(record.clone()))), Some(ErrorCode::AlreadyExists));
        assert_eq!(m.run(say("c1", EntryKind::Message)), Response::Appended { position: 1, duplicate: false });
        assert_eq!(m.run(say("c2", EntryKind::Subject)), Response::Appended { position: 2, duplicate: false });
        assert_eq!(m.run(say("c1", EntryKind::Message)), Response::Appended { position: 1, duplicate: true });
        let stored: RoomRecord = decode(&m.0[&schema::room(&room)]).unwrap();
        assert_eq!(stored.subject, "body c2", "a subject entry sets the subject");
        let bob = UserJid::parse("bob@x.example").unwrap();
        let change = RoomChange::Affiliation { user: bob.clone(), affiliation: Some(Affiliation::Member) };
        assert_eq!(m.run(Command::ChangeRoom { room: room.clone(), change }), Response::Done);
        let cursor =
            |p| Command::SetRoomCursor { room: room.clone(), user: bob.clone(), device: "pc".into(), position: p };
        assert_eq!(m.run(cursor(2)), Response::Changed(1));
        assert_eq!(m.run(cursor(1)), Response::Changed(0), "cursors never move back");
        let member = |on| Command::SetRoomMembership { user: bob.clone(), room: room.clone(), member: on };
        assert_eq!(m.run(member(true)), Response::Changed(1));
        assert_eq!(m.run(member(true)), Response::Changed(0));
        let last_owner = RoomChange::Affiliation { user: ann.clone(), affiliation: None };
        assert_eq!(
            code(m.run(Command::ChangeRoom { room: room.clone(), change: last_owner })),
            Some(ErrorCode::FailedPrecondition)
        );
        assert_eq!(m.run(Command::DestroyRoom { room: room.clone() }), Response::Done);
        assert!(!m.0.contains_key(&schema::room(&room)));
        assert_eq!(code(m.run(Command::DestroyRoom { room: room.clone() })), Some(ErrorCode::NotFound));
        // Created again, the room's log starts after the old one; an old client id is new here.
        assert_eq!(m.run(Command::CreateRoom(record)), Response::Done);
        let again: RoomRecord = decode(&m.0[&schema::room(&room)]).unwrap();
        assert_eq!(again.log_start, 3);
        assert_eq!(m.run(say("c1", EntryKind::Message)), Response::Appended { position: 3, duplicate: false });
        assert_eq!(m.run(say("c1", EntryKind::Message)), Response::Appended { position: 3, duplicate: true });
    }

    #[test]
    fn directory_policies_and_the_audit_trail_number_themselves() {
        use telex_types::directory::{AuditEntry, GroupName, GroupRecord, PolicyVersion, Source};
        let mut m = Mem(BTreeMap::new());
        let d = Domain::parse("x.example").unwrap();
        let sales = GroupName::parse("sales").unwrap();
        let bob = UserJid::parse("bob@x.example").unwrap();
        let member =
            |on| Command::SetGroupMember { tenant: d.clone(), group: sales.clone(), user: bob.clone(), member: on };
        assert_eq!(code(m.run(member(true))), Some(ErrorCode::NotFound), "no such group yet");
        let group = GroupRecord {
            tenant: d.clone(),
            name: sales.clone(),
            display_name: "Sales".into(),
            description: String::new(),
            subgroups: Default::default(),
            shown_to: Default::default(),
            source: Source::Local,
        };
        assert_eq!(m.run(Command::PutGroup(group)), Response::Done);
        assert_eq!(m.run(member(true)), Response::Changed(1));
        assert_eq!(m.run(member(true)), Response::Changed(0));
        assert_eq!(m.run(Command::RemoveGroup { tenant: d.clone(), name: sales.clone() }), Response::Done);
        assert!(!m.0.keys().any(|k| k.starts_with(&schema::group_members(&d, &sales))), "memberships go with it");
        let policy = |text: &str| Command::SetPolicy {
            tenant: d.clone(),
            policy: PolicyVersion { version: 0, text: text.into(), by: "root".into(), at: 1, comment: String::new() },
        };
        assert_eq!(m.run(policy("a")), Response::Changed(1));
        assert_eq!(m.run(policy("b")), Response::Changed(2));
        let stored: PolicyVersion = decode(&m.0[&schema::policy_version(&d, 2)]).unwrap();
        assert_eq!((stored.version, stored.text.as_str()), (2, "b"));
        let audit = |t: Option<Domain>| Command::AppendAudit {
            tenant: t,
            entry: AuditEntry {
                seq: 0,
                at: 1,
                actor: "root".into(),
                action: "a".into(),
                target: String::new(),
                before: String::new(),
                after: String::new(),
            },
        };
        assert_eq!(m.run(audit(Some(d.clone()))), Response::Changed(1));
        assert_eq!(m.run(audit(None)), Response::Changed(1), "the cluster's trail counts apart");
        assert_eq!(m.run(audit(Some(d.clone()))), Response::Changed(2));
    }
}
