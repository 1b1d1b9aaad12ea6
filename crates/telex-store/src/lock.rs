//! An exclusive lock on the data directory, so a second `telexd` refuses to start with a clear
//! message instead of RocksDB's.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::StoreError;

pub(crate) fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("telexd.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Dir { dir: dir.display().to_string(), source })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "unknown process".to_string(),
                pid => format!("pid {pid}"),
            };
            return Err(StoreError::Locked { dir: dir.display().to_string(), holder });
        }
        Err(TryLockError::Error(source)) => return Err(StoreError::Dir { dir: dir.display().to_string(), source }),
    }
    let pid = std::process::id().to_string();
    let write = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| file.write_all(pid.as_bytes()));
    write.map_err(|source| StoreError::Dir { dir: dir.display().to_string(), source })?;
    Ok(file)
}
