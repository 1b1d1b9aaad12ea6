//! `telexd --restore-from DIR`: a new cluster from a backup (`telex backup create DIR`). The
//! backup's store is copied aside, every group becomes a group of this node alone
//! (`telex_raft::backup::restore_single_node`), the state is checked against the backup's
//! fingerprints, and only then is it moved into the empty data directory, after a marker naming
//! the backup: a crash before the move leaves no store (the next start restores again), and
//! starting again with the same flag after it does nothing. Other nodes then join this one.

use std::path::Path;

use telex_raft::backup::Manifest;
use telex_store::{Store, StoreOptions};

const MARKER: &str = "restored-from.json";

/// Restores `backup` into `data_dir`; the manifest, or `None` when this very backup was
/// restored here already.
pub fn restore(
    backup: &Path,
    data_dir: &Path,
    shards: u32,
    node_id: u64,
    addr: &str,
) -> Result<Option<Manifest>, String> {
    let text = std::fs::read_to_string(backup.join("manifest.json"))
        .map_err(|e| format!("--restore-from {}: no manifest.json: {e}", backup.display()))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| format!("manifest.json: {e}"))?;
    if manifest.format != telex_raft::backup::MANIFEST_FORMAT {
        return Err(format!("manifest.json: backup format {} is not one this version reads", manifest.format));
    }
    if manifest.shards != shards {
        return Err(format!(
            "the backup has {} shards: start the restored node with --shards {}",
            manifest.shards, manifest.shards
        ));
    }
    if manifest.groups.len() != shards as usize + 1 {
        return Err(format!("the backup holds {} groups, not {}: it is incomplete", manifest.groups.len(), shards + 1));
    }
    if data_dir.join("db").exists() {
        let done = std::fs::read_to_string(data_dir.join(MARKER)).ok();
        if done.as_deref() == Some(text.as_str()) {
            return Ok(None);
        }
        return Err(format!(
            "--restore-from needs an empty data directory; {} already holds a store",
            data_dir.display()
        ));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let aside = data_dir.join("restoring");
    let _ = std::fs::remove_dir_all(&aside);
    copy_dir(&backup.join("db"), &aside.join("db")).map_err(|e| format!("copying the backup: {e}"))?;
    {
        let store = Store::open(&aside, &StoreOptions::default()).map_err(|e| format!("opening the backup: {e}"))?;
        telex_raft::backup::restore_single_node(&store, shards + 1, node_id, addr)?;
        telex_raft::backup::check_against(&store, &manifest)?;
    }
    // The marker first: a crash before the store is in place just restores again; after, the
    // marker says this store is that backup's.
    std::fs::write(data_dir.join(MARKER), &text).map_err(|e| format!("writing {MARKER}: {e}"))?;
    std::fs::File::open(data_dir.join(MARKER)).and_then(|f| f.sync_all()).map_err(|e| format!("{MARKER}: {e}"))?;
    std::fs::rename(aside.join("db"), data_dir.join("db")).map_err(|e| format!("moving the restored store: {e}"))?;
    std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    let _ = std::fs::remove_dir_all(&aside);
    Ok(Some(manifest))
}

/// Removes what a backup interrupted by a crash left in the data directory (its hard links
/// would keep old files on disk).
pub fn remove_stale_backups(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".backup-tmp-") {
            tracing::info!(dir = %e.path().display(), "removing an interrupted backup");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}
