//! `telex login`, `telex whoami`, `telex logout`: the client API's session calls.

use serde::Serialize;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tonic::metadata::MetadataValue;

use crate::output::{connect, emit, status_line, when};
use crate::{Cli, CliResult};

#[derive(Serialize)]
struct SessionOut {
    jid: String,
    device: String,
    expires_at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

pub async fn login(cli: &Cli) -> CliResult {
    let mut c = ClientClient::new(connect(&cli.server).await?);
    let f = &cli.session;
    let req =
        pb::LoginRequest { jid: f.user()?, password: f.password()?, device: f.device.clone().unwrap_or_default() };
    let r = c.login(req).await.map_err(status_line)?.into_inner();
    let out = SessionOut { jid: r.jid, device: r.device, expires_at_ms: r.expires_at_ms, token: Some(r.token) };
    // The token alone on stdout, so `TELEX_TOKEN=$(telex login …)` works.
    emit(cli.json, &out, || out.token.clone().unwrap_or_default());
    Ok(())
}

pub fn authed<T>(msg: T, token: &str) -> Result<tonic::Request<T>, String> {
    let mut req = tonic::Request::new(msg);
    let value =
        MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| "the token contains invalid characters")?;
    req.metadata_mut().insert("authorization", value);
    Ok(req)
}

pub async fn whoami(cli: &Cli) -> CliResult {
    let mut c = ClientClient::new(connect(&cli.server).await?);
    let r =
        c.who_am_i(authed(pb::WhoAmIRequest {}, &cli.session.token_flag()?)?).await.map_err(status_line)?.into_inner();
    let out = SessionOut { jid: r.jid, device: r.device, expires_at_ms: r.expires_at_ms, token: None };
    emit(cli.json, &out, || format!("{}/{} (session expires {})", out.jid, out.device, when(out.expires_at_ms)));
    Ok(())
}

pub async fn logout(cli: &Cli) -> CliResult {
    let mut c = ClientClient::new(connect(&cli.server).await?);
    c.logout(authed(pb::LogoutRequest {}, &cli.session.token_flag()?)?).await.map_err(status_line)?;
    emit(cli.json, &serde_json::json!({ "logged_out": true }), || "logged out".into());
    Ok(())
}
