//! `telex backup create DIR`: a consistent copy of the node's replicas, written to DIR on this
//! machine (`manifest.json` and `db/`, a RocksDB checkpoint). Restore it into a new cluster
//! with `telexd --restore-from DIR`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use telex_proto::v1 as pb;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::admin::client;
use crate::output::{emit, status_line};
use crate::{Cli, CliResult};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Copy every group's state, as the node's replicas hold it once caught up with their
    /// leaders, into DIR (which must not exist or be empty).
    Create { dir: PathBuf },
}

pub async fn backup(cli: &Cli, cmd: &BackupCmd) -> CliResult {
    let BackupCmd::Create { dir } = cmd;
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} is not empty: a backup goes into a new directory", dir.display()));
    }
    let mut c = client(cli).await?;
    let mut stream = c.backup(pb::BackupRequest {}).await.map_err(status_line)?.into_inner();
    let mut manifest = String::new();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut open: Option<(String, tokio::fs::File)> = None;
    let mut sent = None;
    while let Some(chunk) = stream.message().await.map_err(status_line)? {
        if chunk.done {
            sent = Some((chunk.files, chunk.bytes));
            break;
        }
        if !chunk.manifest.is_empty() {
            manifest = chunk.manifest;
            continue;
        }
        let path = safe_path(dir, &chunk.path)?;
        if open.as_ref().is_none_or(|(p, _)| *p != chunk.path) {
            if let Some((_, f)) = open.take() {
                f.sync_all().await.map_err(|e| e.to_string())?;
            }
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let f = tokio::fs::OpenOptions::new()
                .create(true)
                .truncate(chunk.offset == 0)
                .write(true)
                .open(&path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            open = Some((chunk.path.clone(), f));
            files += 1;
        }
        if let Some((_, f)) = open.as_mut() {
            f.seek(std::io::SeekFrom::Start(chunk.offset)).await.map_err(|e| e.to_string())?;
            f.write_all(&chunk.data).await.map_err(|e| format!("{}: {e}", path.display()))?;
            bytes += chunk.data.len() as u64;
        }
    }
    if let Some((_, f)) = open.take() {
        f.sync_all().await.map_err(|e| e.to_string())?;
    }
    if manifest.is_empty() || sent != Some((files, bytes)) {
        return Err(format!(
            "the backup in {} is incomplete (the node sent {sent:?} files and bytes, {files} and {bytes} arrived): remove it and retry",
            dir.display()
        ));
    }
    tokio::fs::write(dir.join("manifest.json"), &manifest).await.map_err(|e| e.to_string())?;
    let parsed: serde_json::Value = serde_json::from_str(&manifest).map_err(|e| format!("manifest: {e}"))?;
    let groups = parsed["groups"].as_array().map_or(0, Vec::len);
    let out = serde_json::json!({ "dir": dir.display().to_string(), "groups": groups, "files": files, "bytes": bytes, "manifest": parsed });
    emit(cli.json, &out, || {
        format!("backup of {groups} groups written to {} ({files} files, {bytes} bytes)", dir.display())
    });
    Ok(())
}

/// `rel` under `dir`, refusing paths that would leave it.
fn safe_path(dir: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("the node sent an unsafe path {rel:?}"));
    }
    Ok(dir.join(p))
}
