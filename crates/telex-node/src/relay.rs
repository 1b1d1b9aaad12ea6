//! Presence between nodes. Presence is soft state and never goes through Raft: a user's actor
//! hands each device's change for a contact to the relay, which sends it in batches to every
//! other member; each node hands it to the contact's actor there, if it has one. Best effort and
//! bounded: when the queue is full or a peer is down, updates are dropped and counted; the next
//! change (or a probe on login) corrects what a contact sees.

use std::sync::Arc;
use std::time::Duration;

use telex_actors::{Hub, PresenceChange, PresenceRelay};
use telex_proto::v1 as pb;
use telex_proto::v1::relay_client::RelayClient;
use telex_proto::v1::relay_server::Relay;
use telex_raft::Groups;
use telex_types::presence::{DevicePresence, Show};
use telex_types::UserJid;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

const QUEUE: usize = 16_384;
const MAX_BATCH: usize = 1024;

/// Starts the sender task; the returned closure is the hub's relay.
pub fn start(groups: Arc<Groups>) -> PresenceRelay {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(send_batches(groups, rx));
    Box::new(move |change: PresenceChange| {
        let PresenceChange { to, from, device, presence } = change;
        let item = pb::PresenceItem {
            to: to.to_string(),
            from: from.to_string(),
            from_device: device,
            available: presence.is_some(),
            show: presence.as_ref().map(|p| p.show.as_str().to_string()).unwrap_or_default(),
            status: presence.as_ref().map(|p| p.status.clone()).unwrap_or_default(),
            extras: presence.as_ref().map(|p| p.extras.clone()).unwrap_or_default(),
            priority: presence.map(|p| i32::from(p.priority)).unwrap_or(0),
        };
        if tx.try_send(item).is_err() {
            metrics::counter!("telex_presence_relay_dropped_total").increment(1);
        }
    })
}

async fn send_batches(groups: Arc<Groups>, mut rx: mpsc::Receiver<pb::PresenceItem>) {
    while let Some(first) = rx.recv().await {
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(i) => items.push(i),
                Err(_) => break,
            }
        }
        let peers: Vec<String> = groups.peers().into_iter().map(|(_, addr)| addr).collect();
        if peers.is_empty() {
            continue;
        }
        let batch = pb::PresenceBatch { items };
        for addr in peers {
            let Ok(channel) = groups.peer_channel(&addr) else { continue };
            let batch = batch.clone();
            tokio::spawn(async move {
                let mut client = RelayClient::new(channel);
                let call = client.presence(batch);
                if !matches!(tokio::time::timeout(Duration::from_secs(2), call).await, Ok(Ok(_))) {
                    metrics::counter!("telex_presence_relay_failed_batches_total").increment(1);
                }
            });
        }
    }
}

/// The receiving side, on the node-to-node listener.
pub struct RelayService {
    hub: Hub,
    groups: Arc<Groups>,
}

impl RelayService {
    pub fn new(hub: Hub, groups: Arc<Groups>) -> Self {
        RelayService { hub, groups }
    }
}

#[tonic::async_trait]
impl Relay for RelayService {
    async fn presence(&self, r: Request<pb::PresenceBatch>) -> Result<Response<pb::PresenceAck>, Status> {
        self.groups.admit(r.peer_certs(), None)?;
        for i in r.into_inner().items {
            let (Ok(to), Ok(from)) = (UserJid::parse(&i.to), UserJid::parse(&i.from)) else { continue };
            let presence = i.available.then(|| DevicePresence {
                show: Show::parse(&i.show).unwrap_or(Show::Available),
                status: i.status,
                priority: i.priority.clamp(-128, 127) as i8,
                extras: i.extras,
            });
            self.hub.presence_from_peer(PresenceChange { to, from, device: i.from_device, presence });
        }
        Ok(Response::new(pb::PresenceAck {}))
    }
}
