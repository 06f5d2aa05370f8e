//! Failed sign-ins per client address: after a few, each attempt from that address is slowed
//! down; after many, the address is refused for a while. Only the address is held back, never
//! the account, so nobody can lock a user out from elsewhere.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make before its attempts are slowed down.
const FREE_FAILURES: u32 = 5;
/// Each failure past the free ones adds this much wait, up to `MAX_DELAY`.
const DELAY_STEP: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// Failures after which the address is refused outright...
const REFUSE_AFTER: u32 = 20;
/// ...for this long.
const REFUSE_FOR: Duration = Duration::from_secs(15 * 60);
/// An address's failures are forgotten this long after its last one.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most; the oldest are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

/// What to do with a sign-in attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Go,
    /// Check the password after waiting this long.
    Wait(Duration),
    /// Refuse without checking, for this much longer.
    Refuse(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    refused_until: Option<Instant>,
}

type Clock = Box<dyn Fn() -> Instant + Send + Sync>;

pub struct SignInLimiter {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    clock: Clock,
    /// Failed or refused attempts since the start, for the metrics.
    failures: AtomicU64,
}

/// Why a sign-in attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Wrong credentials (or none that exist).
    Credentials,
    /// Too many failures from the address: try again after this long.
    TooManyAttempts(Duration),
}

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter::with_clock(Box::new(Instant::now))
    }
}

impl SignInLimiter {
    /// A limiter reading the time from `clock` (tests move it by hand).
    pub fn with_clock(clock: Clock) -> SignInLimiter {
        SignInLimiter {
            entries: Mutex::new(HashMap::new()),
            clock,
            failures: AtomicU64::new(0),
        }
    }

    /// Failed or refused attempts since the start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// One sign-in attempt from `client` (if known): held back or refused as the address's
    /// record says, then `verify` decides, and the outcome goes on the record. Every front
    /// end signs in through here.
    pub async fn attempt<T>(
        &self,
        client: Option<IpAddr>,
        verify: impl Future<Output = Option<T>>,
    ) -> Result<T, Refused> {
        if let Some(ip) = client {
            match self.check(ip) {
                Verdict::Go => {}
                Verdict::Wait(delay) => tokio::time::sleep(delay).await,
                Verdict::Refuse(retry_after) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return Err(Refused::TooManyAttempts(retry_after));
                }
            }
        }
        match verify.await {
            Some(found) => {
                if let Some(ip) = client {
                    self.succeeded(ip);
                }
                Ok(found)
            }
            None => {
                if let Some(ip) = client {
                    self.failed(ip);
                }
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(Refused::Credentials)
            }
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an attempt from `ip` may go ahead now.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let now = (self.clock)();
        let mut entries = self.entries();
        let Some(e) = entries.get(&ip).copied() else {
            return Verdict::Go;
        };
        if let Some(until) = e.refused_until {
            if now < until {
                return Verdict::Refuse(until - now);
            }
        }
        if now.duration_since(e.last) >= FORGET_AFTER {
            entries.remove(&ip);
            return Verdict::Go;
        }
        match e.failures.checked_sub(FREE_FAILURES) {
            None | Some(0) => Verdict::Go,
            Some(over) => Verdict::Wait((DELAY_STEP * over).min(MAX_DELAY)),
        }
    }

    /// Counts a failed attempt from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = (self.clock)();
        let mut entries = self.entries();
        if entries.len() >= MAX_ADDRESSES && !entries.contains_key(&ip) {
            entries.retain(|_, e| now.duration_since(e.last) < FORGET_AFTER);
            if entries.len() >= MAX_ADDRESSES {
                if let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.last).map(|(a, _)| *a) {
                    entries.remove(&oldest);
                }
            }
        }
        let e = entries.entry(ip).or_insert(Entry {
            failures: 0,
            last: now,
            refused_until: None,
        });
        if now.duration_since(e.last) >= FORGET_AFTER {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures >= REFUSE_AFTER {
            e.refused_until = Some(now + REFUSE_FOR);
            e.failures = 0;
        }
    }

    /// A successful sign-in clears the address's record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.entries().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limiter() -> (SignInLimiter, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        let limiter = SignInLimiter::with_clock(Box::new(move || *clock.lock().expect("clock")));
        (limiter, now)
    }

    #[test]
    fn failures_slow_down_then_refuse_one_address_only() {
        let (l, now) = limiter();
        let bad: IpAddr = [203, 0, 113, 7].into();
        let other: IpAddr = [198, 51, 100, 1].into();
        for _ in 0..FREE_FAILURES {
            assert_eq!(l.check(bad), Verdict::Go);
            l.failed(bad);
        }
        l.failed(bad);
        assert_eq!(l.check(bad), Verdict::Wait(DELAY_STEP));
        for _ in 0..8 {
            l.failed(bad);
        }
        assert_eq!(l.check(bad), Verdict::Wait(MAX_DELAY));
        for _ in 0..(REFUSE_AFTER - FREE_FAILURES - 9) {
            l.failed(bad);
        }
        assert_eq!(l.check(bad), Verdict::Refuse(REFUSE_FOR));
        // Elsewhere, the same user signs in as usual.
        assert_eq!(l.check(other), Verdict::Go);
        // The refusal ends, and the slate is clean.
        *now.lock().expect("clock") += REFUSE_FOR;
        assert_eq!(l.check(bad), Verdict::Go);
    }

    #[test]
    fn success_and_time_clear_the_record() {
        let (l, now) = limiter();
        let ip: IpAddr = [192, 0, 2, 1].into();
        for _ in 0..8 {
            l.failed(ip);
        }
        assert!(matches!(l.check(ip), Verdict::Wait(_)));
        l.succeeded(ip);
        assert_eq!(l.check(ip), Verdict::Go);
        for _ in 0..8 {
            l.failed(ip);
        }
        *now.lock().expect("clock") += FORGET_AFTER;
        assert_eq!(l.check(ip), Verdict::Go);
    }
}
