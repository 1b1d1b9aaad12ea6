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
    /// Set when the server ended the stream with an error.
    pub ended: Option<tonic::Status>,
}

impl Device {
    pub async fn open(url: &str, token: &str) -> Result<Device, tonic::Status> {
        let (up, rx) = mpsc::channel(1024);
        let down = client(url).await.session(authed(ReceiverStream::new(rx), token)).await?.into_inner();
        Ok(Device { up, down, results: HashMap::new(), messages: VecDeque::new(), ended: None })
    }

    pub async fn send(&self, to: &str, client_id: &str, body: &str) {
        let send = pb::SendMessage { client_id: client_id.into(), to: to.into(), body: body.into() };
        self.up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) }).await.expect("session open");
    }

    pub async fn ack(&self, position: u64) {
        let ack = pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position })) };
        let _ = self.up.send(ack).await;
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
                    None => {}
                }
                true
            }
        }
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
