//! Writes forwarded to other nodes' group leaders, batched per destination node: commands that
//! queue while a batch is in flight go out together in one `Node.Propose` call.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use telex_proto::v1::node_client::NodeClient;
use telex_proto::v1::propose_reply::Outcome;
use telex_proto::v1::{ProposeBatch, ProposeReply, ProposeRequest};
use telex_types::wire::{decode, encode};
use telex_types::{Command, GroupId, Response, TelexError};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::network::NetworkFactory;
use crate::registry::WriteError;
use crate::types::NodeId;

const QUEUE: usize = 8192;
const MAX_BATCH: usize = 256;
/// Batches in flight to one node at once.
const IN_FLIGHT: usize = 4;

type Reply = oneshot::Sender<Result<(Response, u64), WriteError>>;

struct Forward {
    group: GroupId,
    leader: NodeId,
    cmd: Command,
    reply: Reply,
}

#[derive(Clone, Default)]
pub(crate) struct Forwarder {
    queues: Arc<DashMap<String, mpsc::Sender<Forward>>>,
}

impl Forwarder {
    /// Sends `cmd` to `group`'s leader `leader` at `addr`; its response and log index.
    pub async fn forward(
        &self,
        network: &NetworkFactory,
        addr: &str,
        group: GroupId,
        leader: NodeId,
        cmd: Command,
        timeout: Duration,
    ) -> Result<(Response, u64), WriteError> {
        let fail = |message: String| WriteError::Forward {
            group,
            leader,
            message: format!("forwarding to {addr}: {message}"),
        };
        let queue = match self.queues.get(addr) {
            Some(q) => q.clone(),
            None => {
                let channel = network.channel(addr).map_err(fail)?;
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(run(NodeClient::new(channel).max_decoding_message_size(64 << 20), rx, timeout));
                self.queues.entry(addr.to_string()).or_insert(tx).clone()
            }
        };
        let (reply, answer) = oneshot::channel();
        queue.send(Forward { group, leader, cmd, reply }).await.map_err(|_| fail("forwarder stopped".into()))?;
        answer.await.map_err(|_| fail("forwarder stopped".into()))?
    }
}

async fn run(client: NodeClient<tonic::transport::Channel>, mut rx: mpsc::Receiver<Forward>, timeout: Duration) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        metrics::histogram!("telex_raft_forward_batch_commands").record(batch.len() as f64);
        let mut client = client.clone();
        tokio::spawn(async move {
            let requests = batch.iter().map(|f| ProposeRequest { group: f.group, command: encode(&f.cmd) }).collect();
            let result = tokio::time::timeout(timeout, client.propose(ProposeBatch { requests })).await;
            let replies = match result {
                Ok(Ok(r)) => r.into_inner().replies,
                Ok(Err(status)) => return fail_all(batch, status.message()),
                Err(_) => {
                    return fail_all(
                        batch,
                        &format!("no answer within {timeout:?}; the writes may or may not have happened"),
                    )
                }
            };
            if replies.len() != batch.len() {
                return fail_all(batch, "the leader answered a different number of writes");
            }
            for (f, r) in batch.into_iter().zip(replies) {
                let outcome = proposed(r).map_err(|e| WriteError::Forward {
                    group: f.group,
                    leader: f.leader,
                    message: e.message,
                });
                let _ = f.reply.send(outcome);
            }
            drop(slot);
        });
    }
}

/// What the leader answered for one forwarded write.
fn proposed(r: ProposeReply) -> Result<(Response, u64), TelexError> {
    match r.outcome {
        Some(Outcome::Done(p)) => Ok((decode::<Response>(&p.response)?, p.index)),
        Some(Outcome::Error(e)) => Err(telex_proto::convert::telex_error(e)),
        None => Err(TelexError::internal("the leader answered a write with nothing")),
    }
}

fn fail_all(batch: Vec<Forward>, message: &str) {
    for f in batch {
        let e = WriteError::Forward { group: f.group, leader: f.leader, message: message.to_string() };
        let _ = f.reply.send(Err(e));
    }
}
