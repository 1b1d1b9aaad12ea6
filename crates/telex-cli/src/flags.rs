//! The session flags: who to act as. They are global, so they go before or after the
//! subcommand alike (`telex --user alice@localhost send ...` or `telex send ... --user ...`).

use clap::Args;
use telex_proto::v1 as pb;
use telex_proto::v1::client_client::ClientClient;
use tonic::transport::Channel;

use crate::output::status_line;

#[derive(Args, Debug, Default)]
pub struct SessionFlags {
    /// Your JID, e.g. alice@localhost.
    #[arg(long, global = true, env = "TELEX_USER")]
    pub user: Option<String>,
    /// The password (or set TELEX_PASSWORD): yours, or the one to give a user.
    #[arg(long, global = true, env = "TELEX_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Device (resource) name (default `cli`; for `login`, the server picks one).
    #[arg(long, global = true, env = "TELEX_DEVICE")]
    pub device: Option<String>,
    /// A session token from `telex login`, instead of --user/--password.
    #[arg(long, global = true, env = "TELEX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl SessionFlags {
    pub fn password(&self) -> Result<String, String> {
        self.password.clone().ok_or_else(|| "a password is required: pass --password or set TELEX_PASSWORD".into())
    }

    pub fn user(&self) -> Result<String, String> {
        self.user.clone().ok_or_else(|| "who are you? pass --user (or TELEX_USER) or --token".into())
    }

    pub fn token_flag(&self) -> Result<String, String> {
        self.token.clone().ok_or_else(|| "pass --token (or set TELEX_TOKEN) with a token from `telex login`".into())
    }

    /// A session token: the one given, or a fresh login with --user and --password.
    pub async fn token(&self, client: &mut ClientClient<Channel>) -> Result<String, String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        let device = self.device.clone().unwrap_or_else(|| "cli".into());
        let req = pb::LoginRequest { jid: self.user()?, password: self.password()?, device };
        Ok(client.login(req).await.map_err(status_line)?.into_inner().token)
    }
}
