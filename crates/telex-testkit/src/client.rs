//! A small gRPC client for tests: log in, open a device session, send, receive, acknowledge.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub async fn client(url: &str) -> ClientClient<Channel> {
    ClientClient::connect(url.to_string()).await.expect("connect to client API")
}

pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

pub async fn login(url: &str, jid: &str, password: &str, device: &str) -> String {
    let req = pb::LoginRequest { jid: jid.into(), password: password.into(), device: device.into() };
    client(url).await.login(req).await.expect("login").into_inner().token
}

/// One device's open session.
pub struct Device {
    up: mpsc::Sender<pb::ClientFrame>,
    down: tonic::Streaming<pb::ServerFrame>,
    results: HashMap<String, pb::SendResult>,
    messages: VecDeque<pb::Message>,
    /// Presence, roster pushes and subscription requests, in arrival order.
    events: VecDeque<pb::server_frame::Frame>,
    /// Set when the server ended the stream with an error.
    pub ended: Option<tonic::Status>,
    /// The user this device belongs to.
    pub me: String,
}

impl Device {
    pub async fn open(url: &str, token: &str) -> Result<Device, tonic::Status> {
        let (up, rx) = mpsc::channel(1024);
        let mut c =
            ClientClient::connect(url.to_string()).await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let me = c.who_am_i(authed(pb::WhoAmIRequest {}, token)).await?.into_inner().jid;
        let down = c.session(authed(ReceiverStream::new(rx), token)).await?.into_inner();
        Ok(Device {
            me,
            up,
            down,
            results: HashMap::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            ended: None,
        })
    }

    pub async fn send(&self, to: &str, client_id: &str, body: &str) {
        let send =
            pb::SendMessage { client_id: client_id.into(), to: to.into(), body: body.into(), ..Default::default() };
        self.up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) }).await.expect("session open");
    }

    /// Like `send`, but false instead of a panic when the session is gone.
    pub async fn try_send(&self, to: &str, client_id: &str, body: &str) -> bool {
        let send =
            pb::SendMessage { client_id: client_id.into(), to: to.into(), body: body.into(), ..Default::default() };
        self.up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) }).await.is_ok()
    }

    /// The result of the send with `client_id`, or `None` if the session ends or `wait` passes.
    pub async fn try_result(&mut self, client_id: &str, wait: Duration) -> Option<pb::SendResult> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(r) = self.results.remove(client_id) {
                return Some(r);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.pump(left).await {
                return None;
            }
        }
    }

    pub async fn ack(&self, position: u64) {
        let ack = pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position })) };
        let _ = self.up.send(ack).await;
    }

    pub async fn presence(&self, show: &str, status: &str, priority: i32) {
        let p = pb::SetPresence { show: show.into(), status: status.into(), priority, ..Default::default() };
        self.up
            .send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(p)) })
            .await
            .expect("session open");
    }

    /// The next presence, roster or subscription event, if one arrives within `wait`.
    pub async fn event(&mut self, wait: Duration) -> Option<pb::server_frame::Frame> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if !self.pump(wait).await {
                return None;
            }
        }
    }

    /// Waits for a presence update from `from`, skipping other events.
    pub async fn presence_from(&mut self, from: &str, wait: Duration) -> Option<pb::PresenceUpdate> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.event(left).await? {
                pb::server_frame::Frame::Presence(p) if p.from == from => return Some(p),
                _ => continue,
            }
        }
    }

    /// Every presence update from contacts (not the user's own devices, which the server
    /// reflects too) that arrives until `quiet` passes without an event.
    pub async fn presences(&mut self, quiet: Duration) -> Vec<pb::PresenceUpdate> {
        let mut out = Vec::new();
        while let Some(e) = self.event(quiet).await {
            if let pb::server_frame::Frame::Presence(p) = e {
                if p.from != self.me {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Reads one frame into the buffers; false when the stream ended or `wait` passed.
    async fn pump(&mut self, wait: Duration) -> bool {
        if self.ended.is_some() {
            return false;
        }
        match tokio::time::timeout(wait, self.down.message()).await {
            Err(_) => false,
            Ok(Err(status)) => {
                self.ended = Some(status);
                false
            }
            Ok(Ok(None)) => {
                self.ended = Some(tonic::Status::cancelled("stream ended"));
                false
            }
            Ok(Ok(Some(f))) => {
                match f.frame {
                    Some(pb::server_frame::Frame::Sent(r)) => {
                        self.results.insert(r.client_id.clone(), r);
                    }
                    Some(pb::server_frame::Frame::Message(m)) => self.messages.push_back(m),
                    Some(other) => self.events.push_back(other),
                    None => {}
                }
                true
            }
        }
    }

    /// Waits until the session ends (closed by the server, or the connection broke); why.
    pub async fn ended(&mut self) -> tonic::Status {
        while self.ended.is_none() {
            self.pump(Duration::from_secs(60)).await;
        }
        self.ended.clone().unwrap()
    }

    /// The result of the send with `client_id`.
    pub async fn result(&mut self, client_id: &str) -> pb::SendResult {
        loop {
            if let Some(r) = self.results.remove(client_id) {
                return r;
            }
            assert!(self.pump(Duration::from_secs(20)).await, "no result for {client_id}: {:?}", self.ended);
        }
    }

    /// The next archive message, if one arrives within `wait`.
    pub async fn message(&mut self, wait: Duration) -> Option<pb::Message> {
        loop {
            if let Some(m) = self.messages.pop_front() {
                return Some(m);
            }
            if !self.pump(wait).await {
                return None;
            }
        }
    }

    /// Every message arriving until `quiet` passes without one; each is acknowledged.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<pb::Message> {
        let mut out = Vec::new();
        while let Some(m) = self.message(quiet).await {
            self.ack(m.position).await;
            out.push(m);
        }
        out
    }
}
