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
    /// Links whose metadata is being fetched: (user id, link) → since when.
    pending: Mutex<Vec<(u64, String, Instant)>>,
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

/// Marks a link as being resolved for as long as it lives.
pub(crate) struct Pending<'a> {
    torrents: &'a Torrents,
    user: u64,
    link: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.torrents
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(u, l, _)| !(*u == self.user && *l == self.link));
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

    /// Shows `link` as "fetching metadata" for `user` until the guard is dropped.
    pub(crate) fn pending(&self, user: u64, link: &str) -> Pending<'_> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((user, link.to_owned(), Instant::now()));
        Pending {
            torrents: self,
            user,
            link: link.to_owned(),
        }
    }

    /// Links of `user` being resolved, with when they started.
    pub(crate) fn pending_of(&self, user: u64) -> Vec<(String, Instant)> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(u, _, _)| *u == user)
            .map(|(_, l, at)| (l.clone(), *at))
            .collect()
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
