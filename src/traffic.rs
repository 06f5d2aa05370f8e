//! Bytes served (read over WebDAV or the FUSE mount) and downloaded (torrent data), per user
//! and calendar month (UTC), as the talk's "Calculate Monthly Bandwidth" job did. Counted in
//! memory as it happens and added to the store every few seconds.
//!
//! A torrent's download counts for every user who has it. Reads the kernel serves itself
//! (FUSE passthrough of complete files) never reach the daemon and are not counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::{Store, StoreError};
use crate::torrents::Torrents;

/// "YYYY-MM" of `t`, in UTC.
pub fn month_of(t: SystemTime) -> String {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}")
}

#[derive(Default)]
pub struct Traffic {
    /// Bytes served per user since the last flush.
    served: Mutex<HashMap<u64, u64>>,
    /// Each running torrent's bytes downloaded in its current run (librqbit counts them
    /// from each start or unpause) at the last flush.
    progress: Mutex<HashMap<[u8; 20], u64>>,
}

impl Traffic {
    pub fn served(&self, user: u64, bytes: u64) {
        if bytes > 0 {
            *self
                .served
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(user)
                .or_default() += bytes;
        }
    }

    /// Adds what was served and downloaded since the last call to this month's counters.
    /// Blocking (one store write).
    pub fn flush(&self, store: &Store, torrents: Option<&Torrents>) -> Result<(), StoreError> {
        let served = std::mem::take(&mut *self.served.lock().unwrap_or_else(|e| e.into_inner()));
        let mut downloaded: HashMap<[u8; 20], u64> = HashMap::new();
        if let Some(torrents) = torrents {
            let mut last = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            let now: HashMap<[u8; 20], u64> = torrents
                .engine()
                .all()
                .into_iter()
                .filter_map(|(hash, _, stats)| {
                    let live = stats.live.as_ref()?;
                    Some((hash, live.snapshot.downloaded_and_checked_bytes))
                })
                .collect();
            for (hash, bytes) in &now {
                // A count below the last one is a new run, counted from zero.
                let before = last.get(hash).copied().filter(|b| b <= bytes).unwrap_or(0);
                if *bytes > before {
                    downloaded.insert(*hash, bytes - before);
                }
            }
            *last = now;
        }
        if served.is_empty() && downloaded.is_empty() {
            return Ok(());
        }
        let month = month_of(SystemTime::now());
        let result = store.write(|tx| -> Result<(), StoreError> {
            for (user, bytes) in &served {
                tx.add_traffic(*user, &month, *bytes, 0)?;
            }
            if !downloaded.is_empty() {
                for user in tx.users()? {
                    for (hash, _) in tx.transfers_of(user.id)? {
                        if let Some(bytes) = downloaded.get(&hash) {
                            tx.add_traffic(user.id, &month, 0, *bytes)?;
                        }
                    }
                }
            }
            Ok(())
        });
        if result.is_err() {
            // Not lost: counted again at the next flush.
            let mut pending = self.served.lock().unwrap_or_else(|e| e.into_inner());
            for (user, bytes) in served {
                *pending.entry(user).or_default() += bytes;
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn months_in_utc() {
        let at = |secs: u64| month_of(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01");
        assert_eq!(
            at(951_782_400),
            "2000-02-29".get(..7).map(str::to_owned).unwrap_or_default()
        );
        assert_eq!(at(1_798_761_599), "2026-12"); // 2026-12-31 23:59:59
        assert_eq!(at(1_798_761_600), "2027-01");
    }
}
