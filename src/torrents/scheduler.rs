//! What runs when: at most `max_active` downloads at once (the rest wait, paused, in the
//! order they were added), and completed torrents seed until their ratio or time is reached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// When a download counts as stuck.
#[derive(Debug, Clone, Copy)]
pub struct StallPolicy {
    /// No progress this long while peers are known: restart it (reconnect, reannounce).
    pub stall: Duration,
    /// No peer connected this long: give up, paused, with a reason users see.
    pub no_peers: Duration,
}

/// What the scheduler last saw of a running download.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    bytes: u64,
    progress_at: Instant,
    peers_at: Instant,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Torrents {
    /// Runs the schedule until the returned task is aborted.
    pub fn spawn_scheduler(
        self: &Arc<Self>,
        policy: SeedPolicy,
        stall: StallPolicy,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                me.schedule(policy).await;
                me.unstick(stall).await;
            }
        })
    }

    /// The reason a download was given up on, if it was.
    pub(crate) fn stalled_reason(&self, hash: &[u8; 20]) -> Option<String> {
        lock(&self.stalled).get(hash).cloned()
    }

    /// Finds running downloads that are stuck: restarts those that get nothing from the
    /// peers they know, and gives up on those that have had no peer for too long.
    async fn unstick(&self, policy: StallPolicy) {
        let now = Instant::now();
        let mut restart = Vec::new();
        let mut give_up = Vec::new();
        {
            let mut progress = lock(&self.progress);
            let mut running = std::collections::HashSet::new();
            for (hash, paused, stats) in self.engine.all() {
                let Some(live) = stats.live.as_ref() else {
                    continue;
                };
                if paused || stats.finished {
                    continue;
                }
                running.insert(hash);
                let peers = &live.snapshot.peer_stats;
                let p = progress.entry(hash).or_insert(Progress {
                    bytes: stats.progress_bytes,
                    progress_at: now,
                    peers_at: now,
                });
                if stats.progress_bytes > p.bytes {
                    p.bytes = stats.progress_bytes;
                    p.progress_at = now;
                }
                if peers.live > 0 {
                    p.peers_at = now;
                }
                if now.duration_since(p.peers_at) >= policy.no_peers {
                    give_up.push(hash);
                } else if now.duration_since(p.progress_at) >= policy.stall && peers.seen > 0 {
                    // Known peers that give nothing: reconnect and ask the trackers again,
                    // then a full period before the next restart.
                    p.progress_at = now;
                    restart.push(hash);
                }
            }
            // Paused, finished or gone: timers start again when it runs.
            progress.retain(|h, _| running.contains(h));
            for hash in &give_up {
                progress.remove(hash);
            }
        }
        for hash in restart {
            tracing::warn!(torrent = %hex(&hash), "no progress from the peers it knows: restarting it");
            let restarted = async {
                self.engine.pause(&hash).await?;
                self.engine.unpause(&hash).await
            };
            if let Err(e) = restarted.await {
                tracing::warn!(torrent = %hex(&hash), error = %format!("{e:#}"), "restarting a stuck download");
            }
            self.restarts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for hash in give_up {
            let reason = format!(
                "no peers for {}: paused (read one of its files to try again)",
                human(policy.no_peers)
            );
            tracing::warn!(torrent = %hex(&hash), "{reason}");
            lock(&self.stalled).insert(hash, reason);
            if let Err(e) = self.engine.pause(&hash).await {
                tracing::warn!(torrent = %hex(&hash), error = %format!("{e:#}"), "pausing a stuck download");
            }
            self.given_up
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
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
                // Given up on: waits for a reader to try again, not for the queue.
                if !lock(&self.stalled).contains_key(hash) {
                    queued.push(*hash);
                }
            } else {
                // Running again (a reader started it): no longer given up on.
                lock(&self.stalled).remove(hash);
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

/// "90 s", "10 min", "6 h".
fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{} h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}
