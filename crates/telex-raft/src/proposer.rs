//! One proposer task per group. Commands that queue up while a proposal is in flight go out
//! together as one `Command::Batch` log entry, so under load a group pays openraft's per-entry
//! cost (append, replication, apply, reply) once per batch rather than once per command. With
//! no load a command goes out alone, at once.

use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use telex_types::{Command, GroupId, Response};
use tokio::sync::{mpsc, oneshot};

use crate::registry::WriteError;
use crate::types::Raft;

/// Most commands in one entry, and about the most bytes: a batch must stay well inside one
/// node-to-node message.
const MAX_BATCH: usize = 256;
const MAX_BATCH_BYTES: usize = 1 << 20;
/// Commands waiting for their group's proposer; senders wait (inside their write timeout) when
/// it is full.
pub(crate) const QUEUE: usize = 4096;

pub(crate) struct Proposal {
    pub cmd: Command,
    /// The response and the index of the log entry that carried it.
    pub reply: oneshot::Sender<Result<(Response, u64), WriteError>>,
}

pub(crate) fn spawn(group: GroupId, raft: Raft, timeout: Duration) -> mpsc::Sender<Proposal> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(group, raft, timeout, rx));
    tx
}

async fn run(group: GroupId, raft: Raft, timeout: Duration, mut rx: mpsc::Receiver<Proposal>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = weight(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += weight(&p.cmd);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("telex_raft_batch_commands").record(batch.len() as f64);
        propose(group, &raft, timeout, batch).await;
    }
}

async fn propose(group: GroupId, raft: &Raft, timeout: Duration, batch: Vec<Proposal>) {
    let (mut cmds, replies): (Vec<Command>, Vec<_>) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let cmd = if cmds.len() == 1 { cmds.remove(0) } else { Command::Batch(cmds) };
    let result = match tokio::time::timeout(timeout, raft.client_write(cmd)).await {
        Err(_) => Err(WriteError::Timeout { group, timeout }),
        Ok(Ok(resp)) => Ok((resp.data, resp.log_id.index)),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
            Err(WriteError::NotLeader { group, leader: f.leader_id })
        }
        Ok(Err(RaftError::Fatal(openraft::error::Fatal::Stopped))) => Err(WriteError::Stopped { group }),
        Ok(Err(e)) => Err(WriteError::Fatal { group, message: e.to_string() }),
    };
    match result {
        Ok((Response::Batch(responses), index)) if responses.len() == replies.len() => {
            for (reply, r) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok((r, index)));
            }
        }
        Ok((r, index)) if replies.len() == 1 => {
            let _ = replies.into_iter().next().map(|reply| reply.send(Ok((r, index))));
        }
        Ok((r, _)) => {
            let message = format!("a batch of {} commands was answered with {r:?}", replies.len());
            for reply in replies {
                let _ = reply.send(Err(WriteError::Fatal { group, message: message.clone() }));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Roughly how many bytes a command adds to an entry.
fn weight(cmd: &Command) -> usize {
    match cmd {
        Command::AppendArchive { message, .. } => 256 + message.body.len() + message.extras.len(),
        Command::AppendRoom { entry, .. } => 256 + entry.body.len() + entry.extras.len(),
        _ => 256,
    }
}
