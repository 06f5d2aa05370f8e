//! Orphans: blobs and torrent data on disk that no file references, left by a crash between
//! writing content and committing (or dropping) the metadata that references it, or by a
//! deletion made while the torrent engine was not running. Only data older than the grace
//! period goes: younger content may belong to a commit in progress.
//!
//! `tmp/` (uploads in progress) is not touched while the daemon runs: open handles own its
//! files. It is emptied at every start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{JanitorError, Report};
use crate::drive::Storage;
use crate::size::format_size;
use crate::torrents::metainfo::unhex;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JanitorError + '_ {
    move |source| JanitorError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Entries of `dir` (none if it doesn't exist).
fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, JanitorError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<_, _>>().map_err(io(dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir)(e)),
    }
}

/// Whether `path` was last modified before the grace period.
fn old_enough(path: &Path, grace: Duration) -> Result<bool, JanitorError> {
    let modified = std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .map_err(io(path))?;
    Ok(SystemTime::now()
        .duration_since(modified)
        .is_ok_and(|age| age >= grace))
}

/// Blob files (`blobs/xx/<32 hex>`) whose id no file references.
fn orphan_blobs(storage: &Storage, data: &Path) -> Result<Vec<PathBuf>, JanitorError> {
    let mut found = Vec::new();
    for shard in entries(&data.join("blobs"))? {
        for entry in entries(&shard.path())? {
            let path = entry.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| n.len() == 32)
                .and_then(|n| u128::from_str_radix(n, 16).ok())
            else {
                continue; // not ours: leave it
            };
            if storage.store().read(|tx| tx.blob_refs(id))? == 0 {
                found.push(path);
            }
        }
    }
    Ok(found)
}

/// Torrent data folders (`torrents/<40 hex>`) of torrents no drive shows, and which the
/// engine doesn't hold (it removes the data of torrents it drops itself).
fn orphan_torrents(storage: &Storage, data: &Path) -> Result<Vec<PathBuf>, JanitorError> {
    let mut found = Vec::new();
    for entry in entries(&data.join("torrents"))? {
        let path = entry.path();
        let Some(hash) = path.file_name().and_then(|n| n.to_str()).and_then(unhex) else {
            continue;
        };
        let referenced = storage.store().read(|tx| tx.torrent(&hash))?.is_some();
        let in_engine = storage
            .torrents()
            .is_some_and(|t| t.engine().stats(&hash).is_some());
        if !referenced && !in_engine {
            found.push(path);
        }
    }
    Ok(found)
}

pub(super) fn run(
    storage: &Arc<Storage>,
    data: &Path,
    grace: Duration,
    dry_run: bool,
) -> Result<Report, JanitorError> {
    let mut report = Report::default();
    // A backup in progress may still copy blobs its snapshot references.
    let blobs = if storage.blobs_held() {
        Vec::new()
    } else {
        orphan_blobs(storage, data)?
    };
    let candidates = blobs.into_iter().map(|p| ("blob", p)).chain(
        orphan_torrents(storage, data)?
            .into_iter()
            .map(|p| ("torrent data", p)),
    );
    for (what, path) in candidates {
        if !old_enough(&path, grace)? {
            continue;
        }
        let bytes = crate::blob::disk_usage(&path);
        if !dry_run {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(io(&path))?;
        }
        let name = path
            .strip_prefix(data)
            .unwrap_or(&path)
            .display()
            .to_string();
        report.actions.push(format!(
            "{} unreferenced {what} {name} ({})",
            if dry_run { "would remove" } else { "removed" },
            format_size(bytes)
        ));
    }
    Ok(report)
}
