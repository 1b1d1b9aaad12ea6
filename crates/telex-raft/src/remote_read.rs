//! Reads of groups this node holds no replica of: sent to a replica (`Node.Read`), which
//! catches up with the group's leader and answers from its store.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::read_reply::Outcome;
use telex_proto::v1::ReadRequest;
use telex_types::wire::{decode, encode};
use telex_types::{ErrorCode, GroupId, TelexError};

use crate::reads::{self, Query};
use crate::Groups;

impl Groups {
    /// Runs `query` on `group`: here when this node holds a replica (after catching up, as
    /// `sync`), else on the group's leader or, failing that, its other replicas.
    pub async fn read<T: DeserializeOwned>(&self, group: GroupId, query: Query) -> Result<T, TelexError> {
        if self.serves_reads(group) {
            self.sync(group).await?;
            return decode(&reads::answer(self.store(), group, &query)?);
        }
        self.read_remote(group, &query).await
    }

    /// `query` answered by a replica of `group` on another node.
    pub async fn read_remote<T: DeserializeOwned>(&self, group: GroupId, query: &Query) -> Result<T, TelexError> {
        let deadline = Instant::now() + self.config.write_timeout;
        let payload = encode(query);
        let mut last = TelexError::unavailable(format!("group {group} has no replica this node can reach"));
        // A dead or cut-off replica must not hold the read for the whole write timeout.
        let per_try = self.config.write_timeout.min(Duration::from_secs(2));
        loop {
            // The leader answers without a read-index round trip; the placement record (a
            // scan of the meta group's state) is only read when it does not.
            let leader = self.leaders.get(group);
            let others = || self.replicas_of(group).into_iter().filter(move |n| Some(*n) != leader);
            let targets = leader.into_iter().chain(std::iter::once_with(others).flatten());
            for node in targets.filter(|n| *n != self.node_id()) {
                let Some(addr) = self.member_addr(group, node) else { continue };
                let channel = match self.peer_channel(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        last = TelexError::unavailable(e);
                        continue;
                    }
                };
                let mut client = NodeClient::new(channel).max_decoding_message_size(64 << 20);
                let call = client.read(ReadRequest { group, query: payload.clone() });
                match tokio::time::timeout(per_try, call).await {
                    Ok(Ok(reply)) => match reply.into_inner().outcome {
                        Some(Outcome::Answer(answer)) => return decode(&answer),
                        Some(Outcome::Error(e)) => {
                            let e = telex_proto::convert::telex_error(e);
                            // Not a replica after all (placement moved on): try the next one.
                            if !matches!(e.code, ErrorCode::FailedPrecondition | ErrorCode::Unavailable) {
                                return Err(e);
                            }
                            last = e;
                        }
                        None => last = TelexError::internal("an empty read reply"),
                    },
                    Ok(Err(s)) => last = TelexError::unavailable(format!("node {node}: {}", s.message())),
                    Err(_) => last = TelexError::unavailable(format!("node {node} did not answer a read in time")),
                }
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Groups {
    /// A read for code that cannot wait asynchronously: `local` on this node's replica when it
    /// holds one (the usual case: actors live on their shard's leader), else `query` on a
    /// replica elsewhere, blocking this thread meanwhile (`block_in_place`: the runtime moves
    /// its other tasks to another worker). Needs the multi-threaded runtime, as `telexd` runs.
    pub fn read_now<T: DeserializeOwned>(
        &self,
        group: GroupId,
        local: impl FnOnce(&telex_store::Store) -> Result<T, TelexError>,
        query: impl FnOnce() -> Query,
    ) -> Result<T, TelexError> {
        if self.serves_reads(group) || group == telex_types::META_GROUP {
            return local(self.store());
        }
        let query = query();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| TelexError::internal(format!("group {group} is held elsewhere and no runtime can ask")))?;
        tokio::task::block_in_place(|| handle.block_on(self.read_remote(group, &query)))
    }
}
