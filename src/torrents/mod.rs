//! Torrents: the engine, what a drive's `/Add` folder does with dropped `.torrent` files,
//! and the shared torrent data behind the files they put in drives.

pub mod engine;
pub mod metainfo;
pub(crate) mod pickup;
pub mod status;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::store::Store;
use engine::{Engine, EngineOptions};
use metainfo::hex;

pub struct Torrents {
    engine: Engine,
    store: Arc<Store>,
}

impl Torrents {
    /// Starts the engine and gives it back every torrent a drive still shows.
    pub async fn start(
        data: &Path,
        store: Arc<Store>,
        opts: &EngineOptions,
    ) -> anyhow::Result<Arc<Torrents>> {
        let engine = Engine::start(data, opts).await?;
        let torrents = Arc::new(Torrents { engine, store });
        torrents.resume().await;
        Ok(torrents)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Re-adds torrents the engine's own state lost (it restores the rest itself).
    async fn resume(&self) {
        let all = match self.store.read(|tx| tx.torrents()) {
            Ok(all) => all,
            Err(e) => {
                tracing::error!(error = %e, "listing torrents to resume");
                return;
            }
        };
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
