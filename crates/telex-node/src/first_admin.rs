//! The first start's super-admin, for a cluster given no admin token in its configuration.

/// On a cluster without admin identities or a configured admin token: creates the super-admin
/// `root` and writes its token to DATA_DIR/admin-token (readable by this user only), where
/// `telex` finds it when run beside the node.
pub async fn create(accounts: &telex_accounts::Accounts, data_dir: &std::path::Path) {
    let token = match accounts.first_admin().await {
        Ok(Some(token)) => token,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not create the first admin identity; will try at the next start");
            return;
        }
    };
    let path = data_dir.join("admin-token");
    let written = {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{token}\n").as_bytes()))
    };
    match written {
        Ok(()) => {
            tracing::warn!(path = %path.display(), "created the super-admin `root`; its admin token is in this file (keep it safe)")
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "created the super-admin `root` but could not write its token; remove it through a configured admin_token")
        }
    }
}
