//! `telex selftest`: an end-to-end check of a running cluster (the Helm chart's test pod runs
//! it). Two throwaway users are created through the admin API; one logs in and sends the other
//! a message through the client API; the check passes once the message has arrived and is in
//! the sender's archive. Both users are removed afterwards, whatever the outcome.

use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::output::{connect, emit, status_line};
use crate::session::authed;
use crate::{Cli, CliResult};

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Tenant to create the throwaway users in; created when missing.
    #[arg(long, default_value = "selftest.invalid")]
    tenant: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

#[derive(Serialize)]
struct Step {
    step: &'static str,
    ms: u64,
}

pub async fn selftest(cli: &Cli, args: &SelftestArgs) -> CliResult {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let stamp = format!("{nanos:x}");
    let (sender, recipient) =
        (format!("selftest-{stamp}-a@{}", args.tenant), format!("selftest-{stamp}-b@{}", args.tenant));
    let password = format!("pw-{stamp}-{}", std::process::id());
    let mut admin = crate::admin::client(cli).await?;
    let run = tokio::time::timeout(
        Duration::from_secs(args.timeout),
        check(cli, &mut admin, &args.tenant, &sender, &recipient, &password),
    );
    let result = run.await.unwrap_or_else(|_| Err(format!("no result within {} s", args.timeout)));
    for jid in [&sender, &recipient] {
        let _ = admin.remove_user(pb::UserRef { jid: jid.clone() }).await;
    }
    let steps = result?;
    emit(cli.json, &steps, || {
        let line = steps.iter().map(|s| format!("{} {} ms", s.step, s.ms)).collect::<Vec<_>>().join(", ");
        format!("selftest passed: {line}")
    });
    Ok(())
}

async fn check(
    cli: &Cli,
    admin: &mut pb::admin_client::AdminClient<crate::output::AdminChannel>,
    tenant: &str,
    sender: &str,
    recipient: &str,
    password: &str,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut timed = |step, since: Instant| steps.push(Step { step, ms: since.elapsed().as_millis() as u64 });

    let t = Instant::now();
    match admin.add_tenant(pb::AddTenantRequest { domain: tenant.to_string() }).await {
        Ok(_) => {}
        Err(s) if s.code() == tonic::Code::AlreadyExists => {}
        Err(s) => return Err(format!("adding tenant {tenant}: {}", status_line(s))),
    }
    for jid in [sender, recipient] {
        let req = pb::AddUserRequest { jid: jid.to_string(), password: password.to_string() };
        admin.add_user(req).await.map_err(|s| format!("adding user {jid}: {}", status_line(s)))?;
    }
    timed("users added", t);

    let t = Instant::now();
    let mut client = ClientClient::new(connect(&cli.server).await?);
    let login = |jid: &str| pb::LoginRequest {
        jid: jid.to_string(),
        password: password.to_string(),
        device: "selftest".into(),
    };
    let a = client.login(login(sender)).await.map_err(|s| format!("login: {}", status_line(s)))?.into_inner();
    let b = client.login(login(recipient)).await.map_err(|s| format!("login: {}", status_line(s)))?.into_inner();
    timed("logged in", t);

    let t = Instant::now();
    let (b_up, mut b_down) = open(&mut client, &b.token, "recipient").await?;
    let (a_up, mut a_down) = open(&mut client, &a.token, "sender").await?;
    let body = format!("selftest {}", a.expires_at_ms);
    let send = pb::SendMessage {
        client_id: "selftest-1".into(),
        to: recipient.to_string(),
        body: body.clone(),
        ..Default::default()
    };
    a_up.send(pb::ClientFrame { frame: Some(pb::client_frame::Frame::Send(send)) })
        .await
        .map_err(|_| "the sender's session closed")?;
    let server_id = loop {
        let frame = a_down.message().await.map_err(status_line)?.ok_or("the sender's session ended")?;
        if let Some(pb::server_frame::Frame::Sent(r)) = frame.frame {
            if !r.error_code.is_empty() {
                return Err(format!("send refused: {}: {}", r.error_code, r.error));
            }
            break r.server_id;
        }
    };
    timed("sent (durable)", t);

    let t = Instant::now();
    loop {
        let frame = b_down.message().await.map_err(status_line)?.ok_or("the recipient's session ended")?;
        if let Some(pb::server_frame::Frame::Message(m)) = frame.frame {
            if m.server_id == server_id && m.body == body {
                let ack =
                    pb::ClientFrame { frame: Some(pb::client_frame::Frame::Ack(pb::Ack { position: m.position })) };
                let _ = b_up.send(ack).await;
                break;
            }
        }
    }
    timed("delivered", t);

    let t = Instant::now();
    let req = pb::HistoryRequest { with: recipient.to_string(), limit: 10, ..Default::default() };
    let page = client.history(authed(req, &a.token)?).await.map_err(status_line)?.into_inner();
    if !page.messages.iter().any(|m| m.server_id == server_id) {
        return Err(format!("message {server_id} is missing from the sender's archive"));
    }
    timed("in the archive", t);
    Ok(steps)
}

type Up = mpsc::Sender<pb::ClientFrame>;
type Down = tonic::Streaming<pb::ServerFrame>;

/// A device session stream for `token`: frames up, frames down.
async fn open(
    client: &mut ClientClient<tonic::transport::Channel>,
    token: &str,
    who: &str,
) -> Result<(Up, Down), String> {
    let (up, rx) = mpsc::channel(8);
    let down = client
        .session(authed(ReceiverStream::new(rx), token)?)
        .await
        .map_err(|s| format!("{who} session: {}", status_line(s)))?
        .into_inner();
    Ok((up, down))
}
