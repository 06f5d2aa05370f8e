//! What users see of their transfers: `/Add/status.txt` and `torrentdrive transfers`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::metainfo::hex;
use super::Torrents;
use crate::size::format_size;
use crate::store::{Store, StoreError, TransferRec};

/// One transfer of one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferInfo {
    pub user: String,
    pub name: String,
    pub info_hash: String,
    /// `checking`, `downloading`, `seeding`, `completed`, `paused`, `error` or `stopped`
    /// (no engine running).
    pub state: String,
    /// 0 to 100.
    pub progress: f64,
    pub size: u64,
    pub downloaded: u64,
    pub down_bps: u64,
    pub up_bps: u64,
    pub eta_secs: Option<u64>,
    pub peers: u32,
    pub error: Option<String>,
    /// For a link still fetching metadata: the dropped file (delete it to cancel).
    pub drop: Option<String>,
}

fn mbps_to_bps(mbps: f64) -> u64 {
    (mbps * 1024.0 * 1024.0).max(0.0) as u64
}

impl Torrents {
    /// The transfers of user `user_id`, with live figures from the engine.
    pub fn transfers(&self, user_id: u64, user: &str) -> Result<Vec<TransferInfo>, StoreError> {
        let list = self.store.read(|tx| tx.transfers_of(user_id))?;
        let mut out: Vec<TransferInfo> = list
            .into_iter()
            .map(|(hash, rec)| self.describe(user, &hash, &rec))
            .collect();
        for p in self.pending_of(user_id) {
            let mut info =
                TransferInfo::idle(user, link_name(&p.link), String::new(), "fetching metadata");
            info.error = Some(format!("waiting {} s", p.since.elapsed().as_secs()));
            info.drop = Some(p.drop_path);
            out.push(info);
        }
        Ok(out)
    }

    fn describe(&self, user: &str, hash: &[u8; 20], rec: &TransferRec) -> TransferInfo {
        let mut info = offline(user, hash, rec);
        let Some(stats) = self.engine.stats(hash) else {
            info.state = "error".into();
            info.error = Some("not in the engine".into());
            return info;
        };
        info.size = stats.total_bytes;
        info.downloaded = stats.progress_bytes;
        info.progress = if stats.total_bytes == 0 {
            100.0
        } else {
            stats.progress_bytes as f64 * 100.0 / stats.total_bytes as f64
        };
        info.error = stats.error.clone();
        info.state = state_of(&stats).into();
        if info.state == "queued" && self.engine.space_low() {
            info.error = Some("paused: the server's disk is nearly full".into());
        }
        if let Some(reason) = self.stalled_reason(hash) {
            if info.state == "queued" {
                info.state = "error".into();
                info.error = Some(reason);
            }
        }
        let live = live_figures(&stats);
        (info.down_bps, info.up_bps, info.peers) = (live.down_bps, live.up_bps, live.peers);
        let left = stats.total_bytes.saturating_sub(stats.progress_bytes);
        info.eta_secs = (info.down_bps > 0 && left > 0).then(|| left / info.down_bps);
        info
    }
}

/// What users are told a torrent is doing.
pub fn state_of(stats: &librqbit::TorrentStats) -> &'static str {
    match stats.state {
        librqbit::TorrentStatsState::Initializing { .. } => "checking",
        librqbit::TorrentStatsState::Paused if stats.finished => "completed",
        // Only the queue pauses unfinished downloads.
        librqbit::TorrentStatsState::Paused => "queued",
        librqbit::TorrentStatsState::Error => "error",
        librqbit::TorrentStatsState::Live if stats.finished => "seeding",
        librqbit::TorrentStatsState::Live => "downloading",
    }
}

/// The figures of a running torrent (zero when it isn't running).
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveFigures {
    pub down_bps: u64,
    pub up_bps: u64,
    pub peers: u32,
}

pub fn live_figures(stats: &librqbit::TorrentStats) -> LiveFigures {
    match &stats.live {
        Some(live) => LiveFigures {
            down_bps: mbps_to_bps(live.download_speed.mbps),
            up_bps: mbps_to_bps(live.upload_speed.mbps),
            peers: live.snapshot.peer_stats.live,
        },
        None => LiveFigures::default(),
    }
}

/// What to call a link that has no metadata yet: its title, else the link.
fn link_name(link: &str) -> String {
    super::pickup::link_title(link).unwrap_or_else(|| link.chars().take(60).collect())
}

impl TransferInfo {
    /// A transfer with no figures yet.
    fn idle(user: &str, name: String, info_hash: String, state: &str) -> TransferInfo {
        TransferInfo {
            user: user.to_owned(),
            name,
            info_hash,
            state: state.to_owned(),
            progress: 0.0,
            size: 0,
            downloaded: 0,
            down_bps: 0,
            up_bps: 0,
            eta_secs: None,
            peers: 0,
            error: None,
            drop: None,
        }
    }
}

fn offline(user: &str, hash: &[u8; 20], rec: &TransferRec) -> TransferInfo {
    TransferInfo::idle(user, rec.name.clone(), hex(hash), "stopped")
}

/// A user's transfers: live from the engine when it runs, else as stored.
pub fn transfers_of(
    storage: &crate::drive::Storage,
    user_id: u64,
    user: &str,
) -> Result<Vec<TransferInfo>, StoreError> {
    match storage.torrents() {
        Some(t) => t.transfers(user_id, user),
        None => stored_transfers(storage.store(), user_id, user),
    }
}

/// The transfers of a user when no engine runs (the CLI without a daemon).
fn stored_transfers(
    store: &Store,
    user_id: u64,
    user: &str,
) -> Result<Vec<TransferInfo>, StoreError> {
    let list = store.read(|tx| tx.transfers_of(user_id))?;
    Ok(list
        .into_iter()
        .map(|(hash, rec)| offline(user, &hash, &rec))
        .collect())
}

fn eta(secs: Option<u64>) -> String {
    match secs {
        Some(s) => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
        None => "-".into(),
    }
}

/// A table for people, one transfer a line; with `show_user`, a column of user names.
pub fn status_text(list: &[TransferInfo], show_user: bool) -> String {
    let mut out = String::new();
    if show_user {
        out.push_str(&format!("{:<16} ", "USER"));
    }
    let _ = writeln!(
        out,
        "{:<40} {:<12} {:>8} {:>12} {:>12} {:>9} {:>5}  ERROR",
        "NAME", "STATE", "PROGRESS", "DOWN", "UP", "ETA", "PEERS"
    );
    for t in list {
        let name: String = t.name.chars().take(40).collect();
        if show_user {
            out.push_str(&format!("{:<16} ", t.user));
        }
        let _ = writeln!(
            out,
            "{:<40} {:<12} {:>7.1}% {:>10}/s {:>10}/s {:>9} {:>5}  {}",
            name,
            t.state,
            t.progress,
            format_size(t.down_bps),
            format_size(t.up_bps),
            eta(t.eta_secs),
            t.peers,
            t.error.as_deref().unwrap_or("")
        );
    }
    if list.is_empty() {
        out.push_str("(no transfers: drop a .torrent file into this folder)\n");
    }
    out
}

/// `/Add/status.txt`: a read-only file that is not stored anywhere; its content is made
/// when it is opened, so every read shows the transfers as they are.
pub(crate) const STATUS_NAME: &str = "status.txt";
/// Node ids from here up are status files (`STATUS_BASE | user id`); stored ids never get
/// this high.
const STATUS_BASE: u64 = 1 << 62;

impl crate::drive::UserDrive {
    pub(crate) fn status_id(&self) -> u64 {
        STATUS_BASE | self.user
    }

    pub(crate) fn is_status(&self, id: u64) -> bool {
        id == self.status_id()
    }

    /// Whether `name` in `parent` is this drive's status file.
    pub(crate) fn is_status_name(&self, parent: u64, name: &str) -> bool {
        name == STATUS_NAME && self.add == Some(parent)
    }

    /// The status file's content now, and its attributes.
    pub(crate) fn status_file(&self) -> (torrentdrive_fs::Attr, bytes::Bytes) {
        let text = match transfers_of(&self.storage, self.user, &self.name) {
            Ok(list) => status_text(&list, false),
            Err(e) => format!("transfers unavailable: {e}\n"),
        };
        let now = std::time::SystemTime::now();
        let attr = torrentdrive_fs::Attr {
            id: torrentdrive_fs::NodeId(self.status_id()),
            kind: torrentdrive_fs::NodeKind::File,
            size: text.len() as u64,
            mtime: now,
            ctime: now,
            // New content every time: clients must not cache it.
            version: crate::store::now_nanos() as u64,
            read_only: true,
            has_xattrs: false,
            volatile: true,
        };
        (attr, bytes::Bytes::from(text))
    }
}
