//! The room actors' `RoomStore` over this node's Raft groups: a room's record, log and cursors
//! are writes to the room's shard, a user's room list to the user's shard; reads come from the
//! local replica (after a read index) or from a replica elsewhere.

use std::sync::Arc;

use futures::future::BoxFuture;
use telex_actors::RoomStore;
use telex_raft::reads::Query;
use telex_raft::Groups;
use telex_types::room::{RoomChange, RoomEntry, RoomJid, RoomRecord};
use telex_types::{shard, Command, Domain, GroupId, Response, TelexError, UserJid};

pub struct RaftRooms {
    groups: Arc<Groups>,
}

impl RaftRooms {
    pub fn new(groups: Arc<Groups>) -> Self {
        RaftRooms { groups }
    }

    fn shard(&self, room: &RoomJid) -> GroupId {
        shard::shard_of_room(room, self.groups.shards())
    }

    async fn write(&self, group: GroupId, cmd: Command) -> Result<Response, TelexError> {
        Ok(self.groups.write(group, cmd).await?)
    }
}

impl RoomStore for RaftRooms {
    fn create(&self, record: RoomRecord) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let g = self.shard(&record.room);
            self.write(g, Command::CreateRoom(record)).await?.into_result().map(|_| ())
        })
    }

    fn change(&self, room: RoomJid, change: RoomChange) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let g = self.shard(&room);
            self.write(g, Command::ChangeRoom { room, change }).await?.into_result().map(|_| ())
        })
    }

    fn destroy(&self, room: RoomJid) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let g = self.shard(&room);
            self.write(g, Command::DestroyRoom { room }).await?.into_result().map(|_| ())
        })
    }

    fn append(&self, room: RoomJid, entry: RoomEntry) -> BoxFuture<'_, Result<(u64, bool), TelexError>> {
        Box::pin(async move {
            let g = self.shard(&room);
            match self.write(g, Command::AppendRoom { room, entry }).await? {
                Response::Appended { position, duplicate } => Ok((position, duplicate)),
                Response::Refused(e) => Err(e),
                other => Err(TelexError::internal(format!("unexpected answer to a room append: {other:?}"))),
            }
        })
    }

    fn set_cursor(
        &self,
        room: RoomJid,
        user: UserJid,
        device: String,
        position: u64,
    ) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let g = self.shard(&room);
            self.write(g, Command::SetRoomCursor { room, user, device, position }).await?.into_result().map(|_| ())
        })
    }

    fn set_membership(&self, user: UserJid, room: RoomJid, member: bool) -> BoxFuture<'_, Result<(), TelexError>> {
        Box::pin(async move {
            let g = self.groups.shard_of(&user);
            self.write(g, Command::SetRoomMembership { user, room, member }).await?.into_result().map(|_| ())
        })
    }

    fn record<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<Option<RoomRecord>, TelexError>> {
        Box::pin(self.groups.read(self.shard(room), Query::Room(room.clone())))
    }

    fn head<'a>(&'a self, room: &'a RoomJid) -> BoxFuture<'a, Result<u64, TelexError>> {
        Box::pin(self.groups.read(self.shard(room), Query::RoomHead(room.clone())))
    }

    fn range<'a>(
        &'a self,
        room: &'a RoomJid,
        from: u64,
        to: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(u64, RoomEntry)>, TelexError>> {
        Box::pin(async move {
            // A replica answers at most MAX_REMOTE_ROWS entries a time: page through.
            let g = self.shard(room);
            let mut out: Vec<(u64, RoomEntry)> = Vec::new();
            let mut start = from;
            while start <= to && out.len() < limit {
                let ask = (limit - out.len()).min(telex_raft::reads::MAX_REMOTE_ROWS);
                let query = Query::RoomRange { room: room.clone(), from: start, to, limit: ask as u32 };
                let page: Vec<(u64, RoomEntry)> = self.groups.read(g, query).await?;
                let (full, last) = (page.len() == ask, page.last().map(|(p, _)| *p));
                out.extend(page);
                match last {
                    Some(p) if full && p < u64::MAX => start = p + 1,
                    _ => break,
                }
            }
            Ok(out)
        })
    }

    fn position<'a>(&'a self, room: &'a RoomJid, server_id: &'a str) -> BoxFuture<'a, Result<Option<u64>, TelexError>> {
        let query = Query::RoomPosition { room: room.clone(), server_id: server_id.to_string() };
        Box::pin(self.groups.read(self.shard(room), query))
    }

    fn cursor<'a>(
        &'a self,
        room: &'a RoomJid,
        user: &'a UserJid,
        device: &'a str,
    ) -> BoxFuture<'a, Result<u64, TelexError>> {
        let query = Query::RoomCursor { room: room.clone(), user: user.clone(), device: device.to_string() };
        Box::pin(self.groups.read(self.shard(room), query))
    }

    fn memberships<'a>(&'a self, user: &'a UserJid) -> BoxFuture<'a, Result<Vec<RoomJid>, TelexError>> {
        Box::pin(self.groups.read(self.groups.shard_of(user), Query::Memberships(user.clone())))
    }

    fn rooms<'a>(&'a self, tenant: &'a Domain) -> BoxFuture<'a, Result<Vec<RoomRecord>, TelexError>> {
        Box::pin(async move {
            let reads = shard::shard_groups(self.groups.shards())
                .map(|g| self.groups.read::<Vec<RoomRecord>>(g, Query::Rooms(tenant.clone())));
            let mut all: Vec<RoomRecord> = futures::future::try_join_all(reads).await?.into_iter().flatten().collect();
            all.sort_by(|a, b| a.room.cmp(&b.room));
            Ok(all)
        })
    }
}
