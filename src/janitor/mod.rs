//! The janitor: jobs the daemon runs by itself, each on its own interval, that put things
//! right instead of needing cron and a pager. Each pass is logged and returns a report;
//! `torrentdrive janitor run JOB` (and `gc`) run one now, through the daemon if it runs.

mod orphans;
mod quotas;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drive::Storage;
use crate::store::StoreError;

/// What a janitor pass can fail on.
#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unknown janitor job `{0}` (jobs: quotas, orphans)")]
    UnknownJob(String),
}

impl From<torrentdrive_fs::FsError> for JanitorError {
    fn from(e: torrentdrive_fs::FsError) -> Self {
        JanitorError::Store(StoreError::Corrupt(e.to_string()))
    }
}

/// The janitor's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Job {
    /// Recomputes each user's usage from their tree and corrects drift.
    Quotas,
    /// Removes blobs and torrent data nothing references.
    Orphans,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Quotas => "quotas",
            Job::Orphans => "orphans",
        }
    }

    pub fn parse(name: &str) -> Result<Job, JanitorError> {
        match name {
            "quotas" => Ok(Job::Quotas),
            "orphans" | "gc" => Ok(Job::Orphans),
            other => Err(JanitorError::UnknownJob(other.to_owned())),
        }
    }
}

/// What one pass did (or, in a dry run, would do): one line per action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub actions: Vec<String>,
}

/// When the jobs run.
#[derive(Debug, Clone)]
pub struct JanitorOptions {
    /// Between two passes of the usage check.
    pub quota_interval: Duration,
    /// Between two passes of the orphan removal.
    pub orphan_interval: Duration,
    /// How old unreferenced data must be before it is removed: content being written is
    /// on disk a moment before the metadata that references it.
    pub orphan_grace: Duration,
}

impl Default for JanitorOptions {
    fn default() -> Self {
        JanitorOptions {
            quota_interval: Duration::from_secs(3600),
            orphan_interval: Duration::from_secs(6 * 3600),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

pub struct Janitor {
    storage: Arc<Storage>,
    data: PathBuf,
    options: JanitorOptions,
    /// Actions taken by each job (not counting dry runs), for the metrics.
    actions: [std::sync::atomic::AtomicU64; 2],
}

impl Janitor {
    pub fn new(storage: Arc<Storage>, data: PathBuf, options: JanitorOptions) -> Janitor {
        Janitor {
            storage,
            data,
            options,
            actions: Default::default(),
        }
    }

    /// Actions `job` has taken since the start.
    pub fn actions(&self, job: Job) -> u64 {
        self.actions[job as usize].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs one pass of `job` now, with another orphan grace period if given. Blocking:
    /// call it off the async threads.
    pub fn run(
        &self,
        job: Job,
        dry_run: bool,
        grace: Option<Duration>,
    ) -> Result<Report, JanitorError> {
        let report = match job {
            Job::Quotas => quotas::run(&self.storage, dry_run)?,
            Job::Orphans => orphans::run(
                &self.storage,
                &self.data,
                grace.unwrap_or(self.options.orphan_grace),
                dry_run,
            )?,
        };
        for action in &report.actions {
            tracing::info!(job = job.name(), dry_run, "{action}");
        }
        if !dry_run {
            self.actions[job as usize].fetch_add(
                report.actions.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        tracing::debug!(
            job = job.name(),
            actions = report.actions.len(),
            "janitor pass"
        );
        Ok(report)
    }

    /// Runs each job on its own interval until the tasks are aborted. The first pass of each
    /// comes one interval after the start, so a start stays quick.
    pub fn spawn(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        [
            (Job::Quotas, self.options.quota_interval),
            (Job::Orphans, self.options.orphan_interval),
        ]
        .into_iter()
        .map(|(job, every)| {
            let me = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await; // the first tick is immediate
                loop {
                    tick.tick().await;
                    let pass = me.clone();
                    match tokio::task::spawn_blocking(move || pass.run(job, false, None)).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(job = job.name(), error = %e, "janitor pass failed")
                        }
                        Err(e) => {
                            tracing::warn!(job = job.name(), error = %e, "janitor pass panicked")
                        }
                    }
                }
            })
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Service;
    use torrentdrive_fs::{CreateOptions, Drive};

    async fn put(drive: &impl Drive, name: &str, len: usize) {
        let (_, fh) = drive
            .create(drive.root(), name, CreateOptions::default())
            .await
            .expect("create");
        drive.write(fh, 0, &vec![7; len]).await.expect("write");
        drive.flush(fh).await.expect("flush");
        drive.release(fh).await.expect("release");
    }

    fn janitor(service: &Service) -> Janitor {
        Janitor::new(
            service.users.storage().clone(),
            service.data.clone(),
            JanitorOptions::default(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_drift_is_found_and_corrected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = Service::open(dir.path()).expect("open");
        let rec = service
            .users
            .add("drift", "password123", None)
            .expect("add");
        let drive = service.users.storage().drive(&rec);
        put(&drive, "a", 100_000).await;
        put(&drive, "b", 10).await;
        let store = service.users.storage().store().clone();
        let right = store.read(|tx| tx.usage(rec.id)).expect("usage");
        assert_eq!(right.0, 100_010);
        let j = janitor(&service);
        let clean = tokio::task::block_in_place(|| j.run(Job::Quotas, false, None));
        assert!(clean.expect("pass").actions.is_empty(), "no drift yet");

        store
            .write(|tx| tx.set_usage(rec.id, 5, right.1 + 3))
            .expect("break the counters");
        let dry = tokio::task::block_in_place(|| j.run(Job::Quotas, true, None)).expect("pass");
        assert_eq!(dry.actions.len(), 1);
        assert!(dry.actions[0].contains("user drift"), "{:?}", dry.actions);
        assert_eq!(store.read(|tx| tx.usage(rec.id)).expect("usage").0, 5);
        let fixed = tokio::task::block_in_place(|| j.run(Job::Quotas, false, None)).expect("pass");
        assert!(
            fixed.actions[0].contains("+100005 bytes"),
            "{:?}",
            fixed.actions
        );
        assert_eq!(store.read(|tx| tx.usage(rec.id)).expect("usage"), right);
        assert_eq!(drive.usage().await.expect("usage").used, 100_010);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreferenced_data_goes_after_the_grace_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = Service::open(dir.path()).expect("open");
        let rec = service.users.add("gc", "password123", None).expect("add");
        let drive = service.users.storage().drive(&rec);
        put(&drive, "kept", 100_000).await; // large enough to be a blob
        let blobs: Vec<_> = walk(&dir.path().join("blobs"));
        assert_eq!(blobs.len(), 1, "one referenced blob");
        let orphan = dir.path().join("blobs/ab/ab000000000000000000000000000001");
        std::fs::create_dir_all(orphan.parent().expect("parent")).expect("mkdir");
        std::fs::write(&orphan, b"left by a crash").expect("write");
        let torrent = dir.path().join("torrents").join("ab".repeat(20));
        std::fs::create_dir_all(&torrent).expect("mkdir");
        std::fs::write(torrent.join("film.mkv"), b"data").expect("write");
        let not_ours = dir.path().join("blobs/ab/README");
        std::fs::write(&not_ours, b"x").expect("write");

        let j = janitor(&service);
        let young = tokio::task::block_in_place(|| j.run(Job::Orphans, false, None)).expect("pass");
        assert!(
            young.actions.is_empty(),
            "within the grace period: {young:?}"
        );
        let zero = Some(Duration::ZERO);
        let dry = tokio::task::block_in_place(|| j.run(Job::Orphans, true, zero)).expect("pass");
        assert_eq!(dry.actions.len(), 2, "{:?}", dry.actions);
        assert!(dry.actions.iter().all(|a| a.starts_with("would remove")));
        assert!(orphan.exists() && torrent.exists());
        let done = tokio::task::block_in_place(|| j.run(Job::Orphans, false, zero)).expect("pass");
        assert_eq!(done.actions.len(), 2, "{:?}", done.actions);
        assert!(!orphan.exists() && !torrent.exists());
        assert!(not_ours.exists(), "files that are not blobs stay");
        assert!(blobs[0].exists(), "the referenced blob stays");
        let fh = drive
            .open(
                drive.lookup(drive.root(), "kept").await.expect("lookup").id,
                Default::default(),
            )
            .await
            .expect("open");
        assert_eq!(drive.read(fh, 99_999, 10).await.expect("read").len(), 1);
        drive.release(fh).await.expect("release");
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
