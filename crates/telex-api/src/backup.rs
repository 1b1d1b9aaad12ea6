//! Streaming a backup's files (a RocksDB checkpoint) to the admin client, in pieces.

use std::path::{Path, PathBuf};

use telex_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tonic::Status;

const PIECE: usize = 1 << 20;
/// The store's own lock file: not part of the data.
const SKIP: &[&str] = &["telexd.lock"];

/// Sends every file under `dir` (paths relative to it), in pieces of at most 1 MiB, then a
/// last chunk with the counts.
pub(crate) async fn stream_files(
    dir: &Path,
    tx: &mpsc::Sender<Result<pb::BackupChunk, Status>>,
) -> std::io::Result<()> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let mut entries = tokio::fs::read_dir(&d).await?;
        while let Some(e) = entries.next_entry().await? {
            let path = e.path();
            if e.file_type().await?.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().to_string();
            if SKIP.contains(&rel.as_str()) {
                continue;
            }
            let mut file = tokio::fs::File::open(&path).await?;
            files += 1;
            let mut offset = 0u64;
            loop {
                let mut data = vec![0u8; PIECE];
                let n = file.read(&mut data).await?;
                data.truncate(n);
                // An empty file is sent once, so it exists in the copy.
                if n == 0 && offset > 0 {
                    break;
                }
                let chunk = pb::BackupChunk { path: rel.clone(), offset, data, ..Default::default() };
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
                offset += n as u64;
                bytes += n as u64;
                if n == 0 {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Ok(pb::BackupChunk { done: true, files, bytes, ..Default::default() })).await;
    Ok(())
}
