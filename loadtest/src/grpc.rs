//! The native driver: Telex's gRPC client API (Login, then one bidirectional Session per
//! device), the way a Telex SDK client talks. Same actions and events as the XMPP driver.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::driver::{stamped, Action, Conn, Event, Login, QUEUE};

/// Messages written and not yet answered: message number → intended send time.
type InFlight = Arc<Mutex<HashMap<u64, u64>>>;

fn authed<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    Ok(req)
}

fn frame(f: pb::client_frame::Frame) -> pb::ClientFrame {
    pb::ClientFrame { frame: Some(f) }
}

/// Logs in, opens the device session, announces presence and asks for the scenario's
/// subscriptions; then starts the writer and reader tasks.
pub async fn connect(login: Login) -> anyhow::Result<Conn> {
    let endpoint = Endpoint::from_shared(format!("http://{}", login.server))?.local_address(login.source);
    let channel = endpoint.connect().await.with_context(|| format!("connecting to {}", login.server))?;
    let mut client = ClientClient::new(channel);
    let me = login.jid(login.user);
    let req =
        pb::LoginRequest { jid: me.clone(), password: login.password.clone(), device: format!("d{}", login.device) };
    let token = client.login(req).await.map_err(|s| anyhow::anyhow!("login: {}", s.message()))?.into_inner().token;
    let (up, up_rx) = mpsc::channel::<pb::ClientFrame>(QUEUE);
    let down = client
        .session(authed(ReceiverStream::new(up_rx), &token)?)
        .await
        .map_err(|s| anyhow::anyhow!("session: {}", s.message()))?
        .into_inner();
    up.send(frame(pb::client_frame::Frame::Presence(pb::SetPresence {
        show: "available".into(),
        ..Default::default()
    })))
    .await?;
    for c in &login.subscribe_to {
        let add = pb::RosterAdd { jid: login.jid(*c), ..Default::default() };
        let op = pb::RosterUpdate { op: Some(pb::roster_update::Op::Add(add)) };
        client.update_roster(authed(op, &token)?).await.map_err(|s| anyhow::anyhow!("roster: {}", s.message()))?;
    }
    let in_flight = InFlight::default();
    let (out, actions) = mpsc::channel::<Action>(QUEUE);
    // The reader acknowledges positions through a weak handle, so that dropping the
    // connection (the writer's strong one) ends the session.
    let weak_up = up.downgrade();
    let user = login.user;
    tokio::spawn(write_loop(up, actions, in_flight.clone(), login.clone()));
    tokio::spawn(read_loop(down, weak_up, client, token, in_flight, login));
    Ok(Conn { user, out })
}

async fn write_loop(
    up: mpsc::Sender<pb::ClientFrame>,
    mut actions: mpsc::Receiver<Action>,
    in_flight: InFlight,
    login: Login,
) {
    while let Some(a) = actions.recv().await {
        let f = match a {
            Action::Message { to, n, intended_us } => {
                in_flight.lock().expect("not poisoned").insert(n, intended_us);
                pb::client_frame::Frame::Send(pb::SendMessage {
                    client_id: login.message_id(n),
                    to: login.jid(to),
                    body: login.body(intended_us),
                    ..Default::default()
                })
            }
            Action::Presence { intended_us } => pb::client_frame::Frame::Presence(pb::SetPresence {
                show: "available".into(),
                status: format!("t{intended_us}"),
                ..Default::default()
            }),
        };
        if up.send(frame(f)).await.is_err() {
            return;
        }
    }
}

async fn read_loop(
    mut down: tonic::Streaming<pb::ServerFrame>,
    up: mpsc::WeakSender<pb::ClientFrame>,
    client: ClientClient<Channel>,
    token: String,
    in_flight: InFlight,
    login: Login,
) {
    use pb::server_frame::Frame;
    let me = login.jid(login.user);
    let asked: HashSet<String> = login.subscribe_to.iter().map(|c| login.jid(*c)).collect();
    let mut approved = HashSet::new();
    let (clock, events) = (&login.clock, &login.events);
    loop {
        let f = match down.message().await {
            Ok(Some(pb::ServerFrame { frame: Some(f) })) => f,
            Ok(Some(_)) => continue,
            Ok(None) => {
                let _ = events.send(login.closed());
                return;
            }
            Err(s) => {
                let sec = clock.second(clock.now_us());
                let _ = events.send(Event::Error { sec, kind: format!("session ended: {:?}", s.code()) });
                let _ = events.send(login.closed());
                return;
            }
        };
        let now = clock.now_us();
        let sec = clock.second(now);
        match f {
            Frame::Sent(r) => {
                let Some(n) = login.number_of(&r.client_id) else { continue };
                let intended = in_flight.lock().expect("not poisoned").remove(&n).unwrap_or(now);
                let _ = events.send(if r.error_code.is_empty() {
                    Event::Acked { sec, latency_us: now.saturating_sub(intended), n }
                } else {
                    Event::Refused { sec, n, kind: format!("message refused: {}", r.error_code) }
                });
            }
            Frame::Message(m) => {
                if m.from.split('/').next() != Some(me.as_str()) {
                    if let Some(sent) = stamped(&m.body) {
                        let _ = events.send(Event::Delivered { sec, latency_us: now.saturating_sub(sent) });
                    }
                }
                // Received up to here: the server need not send it again after a reconnect.
                if let Some(up) = up.upgrade() {
                    let _ = up.try_send(frame(pb::client_frame::Frame::Ack(pb::Ack { position: m.position })));
                }
            }
            Frame::Presence(p) => {
                if p.from.split('/').next() != Some(me.as_str()) {
                    if let Some(sent) = stamped(&p.status) {
                        let _ = events.send(Event::PresenceSeen { sec, latency_us: now.saturating_sub(sent) });
                    }
                }
            }
            Frame::SubscriptionRequest(r) => {
                let (mut client, token) = (client.clone(), token.clone());
                tokio::spawn(async move {
                    let op = pb::RosterUpdate { op: Some(pb::roster_update::Op::Approve(r.from)) };
                    if let Ok(req) = authed(op, &token) {
                        let _ = client.update_roster(req).await;
                    }
                });
            }
            Frame::Roster(push) => {
                let Some(item) = push.item else { continue };
                let sees = matches!(item.subscription.as_str(), "to" | "both");
                if sees && asked.contains(&item.jid) && approved.insert(item.jid) {
                    let _ = events.send(Event::Subscribed);
                }
            }
            // Room events: the chat scenarios use no rooms.
            Frame::Signal(_) | Frame::Blocked(_) | Frame::Room(_) => {}
        }
    }
}
