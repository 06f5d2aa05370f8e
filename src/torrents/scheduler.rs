//! What runs when: at most `max_active` downloads at once (the rest wait, paused, in the
//! order they were added), and completed torrents seed until their ratio or time is reached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::metainfo::hex;
use super::Torrents;
use crate::store::{now_nanos, TorrentRec};

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub struct SeedPolicy {
    pub ratio: f64,
    pub time: Duration,
}

impl Torrents {
    /// Runs the schedule until the returned task is aborted.
    pub fn spawn_scheduler(self: &Arc<Self>, policy: SeedPolicy) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                me.schedule(policy).await;
            }
        })
    }

    async fn schedule(&self, policy: SeedPolicy) {
        let all = self.engine.all();
        let recs: HashMap<[u8; 20], TorrentRec> = match self.store.read(|tx| tx.torrents()) {
            Ok(r) => r.into_iter().collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading torrents for the schedule");
                return;
            }
        };
        let added = |hash: &[u8; 20]| recs.get(hash).map_or(i64::MAX, |r| r.added);
        let mut downloading = Vec::new();
        let mut queued = Vec::new();
        for (hash, paused, stats) in &all {
            if stats.finished {
                let completed = recs.get(hash).and_then(|r| r.completed);
                let completed = match completed {
                    Some(at) => at,
                    None => self.mark_completed(hash).await,
                };
                if !paused && seeding_done(policy, stats, completed) {
                    tracing::info!(torrent = %hex(hash), uploaded = stats.uploaded_bytes, "seeding done");
                    if let Err(e) = self.engine.pause(hash).await {
                        tracing::warn!(torrent = %hex(hash), error = %format!("{e:#}"), "stopping seeding");
                    }
                }
            } else if matches!(stats.state, librqbit::TorrentStatsState::Error) {
                continue;
            } else if *paused {
                queued.push(*hash);
            } else {
                downloading.push(*hash);
            }
        }
        // A nearly full disk pauses every download until space is back.
        let max = if self.engine.check_space() {
            0
        } else {
            self.engine.max_active()
        };
        downloading.sort_by_key(&added);
        queued.sort_by_key(&added);
        // Too many (a restart restores all as they were): the newest wait.
        for hash in downloading.iter().skip(max) {
            if let Err(e) = self.engine.pause(hash).await {
                tracing::warn!(torrent = %hex(hash), error = %format!("{e:#}"), "queueing");
            }
        }
        for hash in queued.iter().take(max.saturating_sub(downloading.len())) {
            tracing::info!(torrent = %hex(hash), "starting a queued download");
            if let Err(e) = self.engine.unpause(hash).await {
                tracing::warn!(torrent = %hex(hash), error = %format!("{e:#}"), "starting a queued download");
            }
        }
    }

    /// Records when a torrent was first seen complete; returns that time.
    async fn mark_completed(&self, hash: &[u8; 20]) -> i64 {
        let now = now_nanos();
        let hash = *hash;
        let result = self
            .store
            .write_async(move |tx| {
                if let Some(mut rec) = tx.torrent(&hash)? {
                    if rec.completed.is_none() {
                        rec.completed = Some(now);
                        tx.put_torrent(&hash, &rec)?;
                    }
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(torrent = %hex(&hash), error = %e, "recording completion");
        }
        now
    }
}

fn seeding_done(policy: SeedPolicy, stats: &librqbit::TorrentStats, completed: i64) -> bool {
    let ratio_reached = stats.total_bytes > 0
        && stats.uploaded_bytes as f64 >= policy.ratio * stats.total_bytes as f64;
    let seeded_for = Duration::from_nanos(now_nanos().saturating_sub(completed).max(0) as u64);
    ratio_reached || seeded_for >= policy.time
}
