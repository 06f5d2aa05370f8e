//! `torrentdrive backup DEST`: a consistent copy of a data dir, made while the daemon runs.
//!
//! The metadata is copied from one read transaction (writers go on), then every blob that
//! copy references; blobs are immutable, so a copied one never changes. While it runs,
//! blobs that stop being referenced are kept on disk. Run it again into the same folder and
//! only new blobs are copied, and blobs no longer referenced are removed from it. The
//! database file is put in place last: a backup folder never references a missing blob.
//! Torrent data is not copied (it can be downloaded again); the engine's state is.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::drive::Storage;
use crate::service::DB_NAME;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is inside the data dir: back up elsewhere")]
    Inside(PathBuf),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a backup did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupReport {
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_kept: u64,
    pub blobs_removed: u64,
}

/// Keeps unreferenced blobs while it lives.
struct Hold<'a>(&'a Storage);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.release_blobs();
    }
}

fn blob_path(root: &Path, id: u128) -> PathBuf {
    let hex = format!("{id:032x}");
    root.join("blobs").join(&hex[..2]).join(hex)
}

/// Copies `from` to `to` through a temp file, durably.
fn copy_file(from: &Path, to: &Path) -> Result<u64, BackupError> {
    let parent = to.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_at(parent))?;
    let tmp = to.with_extension("part");
    let bytes = fs::copy(from, &tmp).map_err(io_at(from))?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io_at(&tmp))?;
    fs::rename(&tmp, to).map_err(io_at(to))?;
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}

/// Copies the files under `from` into `to` (the engine's state: small files).
fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_at(from)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_at(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io_at(&src))?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            match copy_file(&src, &dst) {
                // Rewritten or removed while we copy: the engine rebuilds what's missing.
                Err(BackupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                }
                other => {
                    other?;
                }
            }
        }
    }
    Ok(())
}

/// Backs up the data dir `data` into `dest` (created if needed).
pub fn backup(
    storage: &Arc<Storage>,
    data: &Path,
    dest: &Path,
) -> Result<BackupReport, BackupError> {
    let data = data.canonicalize().map_err(io_at(data))?;
    let inside = |dest: &Path| match std::path::absolute(dest) {
        Ok(d) if d.starts_with(&data) => Err(BackupError::Inside(d)),
        _ => Ok(()),
    };
    inside(dest)?;
    fs::create_dir_all(dest).map_err(io_at(dest))?;
    let dest = dest.canonicalize().map_err(io_at(dest))?;
    inside(&dest)?;
    storage.hold_blobs();
    let _hold = Hold(storage);
    let snapshot = dest.join(format!("{DB_NAME}.part"));
    match fs::remove_file(&snapshot) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_at(&snapshot)(e)),
        _ => {}
    }
    let blobs = storage.store().snapshot_to(&snapshot)?;
    let mut report = BackupReport::default();
    let wanted: std::collections::HashSet<PathBuf> =
        blobs.iter().map(|id| blob_path(&dest, *id)).collect();
    for id in &blobs {
        let (from, to) = (blob_path(&data, *id), blob_path(&dest, *id));
        let from_len = fs::metadata(&from).map_err(io_at(&from))?.len();
        if fs::metadata(&to).is_ok_and(|m| m.len() == from_len) {
            report.blobs_kept += 1;
            continue;
        }
        report.bytes_copied += copy_file(&from, &to)?;
        report.blobs_copied += 1;
    }
    // Blobs of an earlier backup that this one no longer references.
    if let Ok(shards) = fs::read_dir(dest.join("blobs")) {
        for shard in shards.flatten() {
            let shard = shard.path();
            for entry in fs::read_dir(&shard).map_err(io_at(&shard))?.flatten() {
                let path = entry.path();
                if !wanted.contains(&path) {
                    fs::remove_file(&path).map_err(io_at(&path))?;
                    report.blobs_removed += 1;
                }
            }
            sync_dir(&shard)?;
        }
    }
    copy_tree(&data.join("engine"), &dest.join("engine"))?;
    let db = dest.join(DB_NAME);
    fs::rename(&snapshot, &db).map_err(io_at(&db))?;
    sync_dir(&dest)?;
    Ok(report)
}
