//! Torrents: the engine, what a drive's `/Add` folder does with dropped `.torrent` files,
//! and the shared torrent data behind the files they put in drives.

pub mod engine;
pub mod metainfo;
pub(crate) mod pickup;
pub mod scheduler;
pub mod status;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::store::Store;
use engine::{Engine, EngineOptions};
use metainfo::hex;

pub struct Torrents {
    engine: Engine,
    store: Arc<Store>,
    /// Links whose metadata is being fetched.
    pending: Mutex<Vec<PendingLink>>,
    /// Progress of each running download, to find stuck ones (see the scheduler).
    pub(crate) progress: Mutex<std::collections::HashMap<[u8; 20], scheduler::Progress>>,
    /// Downloads given up on, with the reason users are shown.
    pub(crate) stalled: Mutex<std::collections::HashMap<[u8; 20], String>>,
    /// Stuck downloads restarted, and given up, since the start.
    pub restarts: std::sync::atomic::AtomicU64,
    pub given_up: std::sync::atomic::AtomicU64,
}

/// How long a magnet link may take to yield its metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(300);

/// A link of a dropped file in `/Add` whose metadata is being fetched.
struct PendingLink {
    serial: u64,
    user: u64,
    link: String,
    since: Instant,
    /// The dropped file: deleting it cancels the fetch.
    drop_id: u64,
    drop_path: String,
    cancel: Arc<tokio::sync::Notify>,
}

/// A link being resolved, as its user is shown it.
pub(crate) struct PendingInfo {
    pub link: String,
    pub since: Instant,
    /// The dropped file's path in the drive.
    pub drop_path: String,
}

/// Marks a link as being resolved for as long as it lives.
pub(crate) struct Pending<'a> {
    torrents: &'a Torrents,
    serial: u64,
    cancel: Arc<tokio::sync::Notify>,
}

impl Pending<'_> {
    /// Completes when the dropped file is deleted.
    pub(crate) async fn cancelled(&self) {
        self.cancel.notified().await;
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.torrents
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p.serial != self.serial);
    }
}

impl Torrents {
    /// Starts the engine and gives it back every torrent a drive still shows.
    pub async fn start(
        data: &Path,
        store: Arc<Store>,
        opts: &EngineOptions,
    ) -> anyhow::Result<Arc<Torrents>> {
        let engine = Engine::start(data, opts).await?;
        let torrents = Arc::new(Torrents {
            engine,
            store,
            pending: Mutex::new(Vec::new()),
            progress: Mutex::default(),
            stalled: Mutex::default(),
            restarts: Default::default(),
            given_up: Default::default(),
        });
        torrents.resume().await;
        Ok(torrents)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn metadata_timeout(&self) -> Duration {
        METADATA_TIMEOUT
    }

    /// Shows `link`, from the file `drop_id` dropped at `drop_path`, as "fetching metadata"
    /// for `user` until the guard is dropped.
    pub(crate) fn pending(
        &self,
        user: u64,
        link: &str,
        drop_id: u64,
        drop_path: &str,
    ) -> Pending<'_> {
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cancel = Arc::new(tokio::sync::Notify::new());
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(PendingLink {
                serial,
                user,
                link: link.to_owned(),
                since: Instant::now(),
                drop_id,
                drop_path: drop_path.to_owned(),
                cancel: cancel.clone(),
            });
        Pending {
            torrents: self,
            serial,
            cancel,
        }
    }

    /// Links of `user` being resolved.
    pub(crate) fn pending_of(&self, user: u64) -> Vec<PendingInfo> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.user == user)
            .map(|p| PendingInfo {
                link: p.link.clone(),
                since: p.since,
                drop_path: p.drop_path.clone(),
            })
            .collect()
    }

    /// The file `drop_id` of `user` was deleted: stop fetching its links' metadata.
    pub(crate) fn cancel_drop(&self, user: u64, drop_id: u64) {
        for p in self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.user == user && p.drop_id == drop_id)
        {
            // A stored permit: the fetch sees it even if it is not waiting yet.
            p.cancel.notify_one();
        }
    }

    /// Re-adds torrents the engine's own state lost (it restores the rest itself), and
    /// drops those it restored that no drive shows any more: a crash between adding a
    /// torrent and committing its files, or files deleted while the daemon was stopped.
    async fn resume(&self) {
        let all = match self.store.read(|tx| tx.torrents()) {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "listing torrents to resume");
                return;
            }
        };
        let known: std::collections::HashSet<[u8; 20]> = all.iter().map(|(h, _)| *h).collect();
        for (hash, _, _) in self.engine.all() {
            if !known.contains(&hash) {
                tracing::warn!(torrent = %hex(&hash), "no drive shows this torrent: removing it and its data");
                self.forget(&hash).await;
            }
        }
        for (hash, rec) in all {
            if let Err(e) = self
                .engine
                .add(&hash, Bytes::from(rec.torrent), Vec::new())
                .await
            {
                tracing::error!(torrent = %hex(&hash), name = %rec.name, error = %e, "resuming torrent");
            }
        }
    }

    /// Stops a torrent no drive shows any more and deletes its data.
    pub async fn forget(&self, hash: &[u8; 20]) {
        match self.engine.remove(hash).await {
            Ok(()) => tracing::info!(torrent = %hex(hash), "torrent data deleted"),
            Err(e) => tracing::warn!(torrent = %hex(hash), error = %e, "deleting torrent data"),
        }
    }

    pub async fn stop(&self) {
        self.engine.stop().await;
    }
}
