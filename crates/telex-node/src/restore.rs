//! `telexd --restore-from DIR`: a new cluster from a backup (`telex backup create DIR`). The
//! backup's store is copied into the empty data directory, every group becomes a group of this
//! node alone (`telex_raft::backup::restore_single_node`), and the restored state is checked
//! against the backup's fingerprints before the node starts. Other nodes then join it.

use std::path::Path;

use telex_raft::backup::Manifest;
use telex_store::Store;

/// Copies the backup's files into `data_dir` (which must hold no store yet); its manifest.
pub fn copy_in(backup: &Path, data_dir: &Path, shards: u32) -> Result<Manifest, String> {
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
    if data_dir.join("db").exists() {
        return Err(format!(
            "--restore-from needs an empty data directory; {} already holds a store",
            data_dir.display()
        ));
    }
    copy_dir(&backup.join("db"), &data_dir.join("db")).map_err(|e| format!("copying the backup: {e}"))?;
    Ok(manifest)
}

/// Makes the copied store a cluster of this node alone, and checks it against the manifest.
pub fn take_over(store: &Store, manifest: &Manifest, node_id: u64, advertised: &str) -> Result<usize, String> {
    let groups = manifest.shards + 1;
    let n = telex_raft::backup::restore_single_node(store, groups, node_id, advertised)?;
    telex_raft::backup::check_against(store, manifest)?;
    Ok(n)
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
