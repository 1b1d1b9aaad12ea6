//! `telex send`, `telex listen`, `telex history`, `telex chat`: messaging as a user.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::output::{connect, emit, status_line, when};
use crate::session::authed;
use crate::{Cli, CliResult};

#[derive(Args, Debug)]
pub struct SendArgs {
    /// Recipient JID.
    to: String,
    /// Message text.
    text: String,
    /// Client message id; reuse it to retry safely (default: a fresh one).
    #[arg(long)]
    client_id: Option<String>,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Only messages exchanged with this JID.
    #[arg(long)]
    with: Option<String>,
    /// Only messages after this one: a server id, or an archive position.
    #[arg(long, value_name = "ID")]
    after: Option<Anchor>,
    /// Only messages before this one (alone: the newest page).
    #[arg(long, value_name = "ID")]
    before: Option<Anchor>,
    /// Only messages sent at or after TIME: RFC 3339 (2026-11-25T09:00:00Z) or an age (2h, 30m).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<u64>,
    /// Only messages sent before TIME.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<u64>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

/// A message named by its server id (32 hex digits) or its archive position.
#[derive(Clone, Debug)]
enum Anchor {
    Id(String),
    Position(u64),
}

impl std::str::FromStr for Anchor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Anchor::Id(s.to_ascii_lowercase()));
        }
        s.parse()
            .map(Anchor::Position)
            .map_err(|_| format!("{s:?} is neither a server id (32 hex digits) nor a position"))
    }
}

/// Unix milliseconds of an RFC 3339 time or of `now - age`.
fn parse_time(s: &str) -> Result<u64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let age = humantime::parse_duration(s)
                .map_err(|_| format!("{s:?} is neither an RFC 3339 time nor an age like 2h"))?;
            std::time::SystemTime::now() - age
        }
    };
    at.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).map_err(|_| format!("{s} is before 1970"))
}

#[derive(Serialize)]
pub struct MessageOut {
    id: String,
    position: u64,
    from: String,
    from_device: String,
    to: String,
    body: String,
    sent_at_ms: u64,
}

impl From<pb::Message> for MessageOut {
    fn from(m: pb::Message) -> Self {
        MessageOut {
            id: m.server_id,
            position: m.position,
            from: m.from,
            from_device: m.from_device,
            to: m.to,
            body: m.body,
            sent_at_ms: m.sent_at_ms,
        }
    }
}

fn message_line(m: &MessageOut) -> String {
    format!("[{}] #{} {} -> {}: {}", when(m.sent_at_ms), m.position, m.from, m.to, m.body)
}

/// An open session stream: frames to send, and frames received.
pub struct Session {
    pub up: mpsc::Sender<pb::ClientFrame>,
    pub down: tonic::Streaming<pb::ServerFrame>,
    /// This device's user and name.
    pub me: (String, String),
}

impl Session {
    /// Whether a presence update is this very device's own, reflected back by the server.
    pub fn is_own(&self, p: &pb::PresenceUpdate) -> bool {
        p.from == self.me.0 && p.from_device == self.me.1
    }
}

/// `user/device`, or `user` when the device is not known.
pub fn full_jid(user: &str, device: &str) -> String {
    if device.is_empty() {
        user.to_string()
    } else {
        format!("{user}/{device}")
    }
}

pub async fn open(cli: &Cli) -> Result<Session, String> {
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let token = cli.session.token(&mut client).await?;
    let me = client.who_am_i(authed(pb::WhoAmIRequest {}, &token)?).await.map_err(status_line)?.into_inner();
    let (up, rx) = mpsc::channel(64);
    let down = client.session(authed(ReceiverStream::new(rx), &token)?).await.map_err(status_line)?.into_inner();
    Ok(Session { up, down, me: (me.jid, me.device) })
}

pub fn fresh_client_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("cli-{}-{nanos}", std::process::id())
}

pub async fn send(cli: &Cli, args: &SendArgs) -> CliResult {
    let mut s = open(cli).await?;
    let client_id = args.client_id.clone().unwrap_or_else(fresh_client_id);
    let send = pb::SendMessage {
        client_id: client_id.clone(),
        to: args.to.clone(),
        body: args.text.clone(),
        ..Default::default()
    };
    s.up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) })
        .await
        .map_err(|_| "the session closed before the message was sent")?;
    loop {
        let frame =
            s.down.message().await.map_err(status_line)?.ok_or(
                "the server closed the session; the send may or may not have happened: retry with --client-id",
            )?;
        let Some(pb::server_frame::Frame::Sent(r)) = frame.frame else { continue };
        if r.client_id != client_id {
            continue;
        }
        if !r.error_code.is_empty() {
            let code = r.error_code.replace('_', " ");
            let retry = if r.retryable { " (retryable)" } else { "" };
            return Err(format!("{code}: {}{retry}", r.error));
        }
        #[derive(Serialize)]
        struct SentOut {
            id: String,
            position: u64,
            recipient_position: u64,
            client_id: String,
        }
        let out =
            SentOut { id: r.server_id, position: r.position, recipient_position: r.recipient_position, client_id };
        emit(cli.json, &out, || format!("sent {} at position {}", out.id, out.position));
        return Ok(());
    }
}

pub async fn listen(cli: &Cli, args: &ListenArgs) -> CliResult {
    let mut s = open(cli).await?;
    let deadline = args.timeout.map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut seen = 0u64;
    while args.count.is_none_or(|c| seen < c) {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), s.down.message()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => s.down.message().await,
        };
        let Some(frame) = next.map_err(status_line)? else { break };
        let Some(pb::server_frame::Frame::Message(m)) = frame.frame else { continue };
        let position = m.position;
        let out = MessageOut::from(m);
        emit(cli.json, &out, || message_line(&out));
        seen += 1;
        // Printed: acknowledge so it is not delivered to this device again.
        let ack = pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position })) };
        s.up.send(ack).await.map_err(|_| "the session closed")?;
    }
    // Give the last ack a moment to reach the server before the stream is dropped.
    drop(s.up);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

pub async fn history(cli: &Cli, args: &HistoryArgs) -> CliResult {
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let token = cli.session.token(&mut client).await?;
    let mut req = pb::HistoryRequest {
        with: args.with.clone().unwrap_or_default(),
        start_ms: args.since.unwrap_or(0),
        end_ms: args.until.unwrap_or(0),
        limit: args.limit,
        ..Default::default()
    };
    match args.after.clone() {
        Some(Anchor::Id(id)) => req.after_id = id,
        Some(Anchor::Position(p)) => req.after = p,
        None => {}
    }
    match args.before.clone() {
        Some(Anchor::Id(id)) => req.before_id = id,
        Some(Anchor::Position(p)) => req.before = p,
        None => {}
    }
    let page = client.history(authed(req, &token)?).await.map_err(status_line)?.into_inner();
    let out: Vec<MessageOut> = page.messages.into_iter().map(MessageOut::from).collect();
    if cli.json {
        for m in &out {
            emit(true, m, String::new);
        }
    } else {
        emit(false, &out, || out.iter().map(message_line).collect::<Vec<_>>().join("\n"));
    }
    Ok(())
}

const CHAT_HELP: &str = "type `jid: text` to send, `/presence SHOW [status]` to set presence, `/quit` to leave";

/// Interactive chat: lines from stdin are sent, messages and presence are printed as they come.
pub async fn chat(cli: &Cli) -> CliResult {
    use tokio::io::AsyncBufReadExt;
    let mut s = open(cli).await?;
    let up = s.up.clone();
    let available = pb::SetPresence { show: "available".into(), ..Default::default() };
    up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Presence(available)) })
        .await
        .map_err(|_| "the session closed")?;
    eprintln!("{CHAT_HELP}");
    let (lines_tx, mut lines) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
    });
    let mut n = 0u64;
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if line == "/quit" {
                    break;
                }
                let frame = if let Some(rest) = line.strip_prefix("/presence ") {
                    let (show, status) = rest.split_once(' ').unwrap_or((rest, ""));
                    pb::client_frame::Frame::Presence(pb::SetPresence { show: show.into(), status: status.into(), ..Default::default() })
                } else if let Some((to, text)) = line.split_once(':') {
                    n += 1;
                    pb::client_frame::Frame::Send(pb::SendMessage {
                        client_id: format!("{}-{n}", fresh_client_id()),
                        to: to.trim().into(),
                        body: text.trim().into(),
                        ..Default::default()
                    })
                } else {
                    eprintln!("? {CHAT_HELP}");
                    continue;
                };
                up.send(pb::ClientFrame { frame: Some(frame) }).await.map_err(|_| "the session closed")?;
            }
            frame = s.down.message() => {
                let Some(frame) = frame.map_err(status_line)? else { break };
                match frame.frame {
                    Some(pb::server_frame::Frame::Message(m)) => {
                        let position = m.position;
                        println!("{}", message_line(&MessageOut::from(m)));
                        let ack = pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position })) };
                        up.send(ack).await.map_err(|_| "the session closed")?;
                    }
                    Some(pb::server_frame::Frame::Sent(r)) if !r.error_code.is_empty() => {
                        println!("! not sent: {}: {}", r.error_code.replace('_', " "), r.error);
                    }
                    Some(pb::server_frame::Frame::Presence(p)) if s.is_own(&p) => {}
                    Some(pb::server_frame::Frame::Presence(p)) if p.status.is_empty() => {
                        println!("* {} is {}", full_jid(&p.from, &p.from_device), p.show)
                    }
                    Some(pb::server_frame::Frame::Presence(p)) => {
                        println!("* {} is {}: {}", full_jid(&p.from, &p.from_device), p.show, p.status)
                    }
                    Some(pb::server_frame::Frame::SubscriptionRequest(r)) => {
                        println!("* {} wants to see your presence (telex roster approve|deny {})", r.from, r.from);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
