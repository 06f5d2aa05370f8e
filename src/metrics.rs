//! `GET /metrics` (Prometheus text format) and `GET /healthz`, on a listen address of their
//! own so they can stay on loopback while WebDAV faces the network.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::janitor::{Janitor, Job};
use crate::torrents::status::{live_figures, state_of};
use crate::torrents::Torrents;
use crate::users::Users;

/// Upper bounds (seconds) of the request latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// How long measured folder sizes are reused: walking big folders at every scrape costs.
const SIZE_TTL: Duration = Duration::from_secs(60);

/// Counters the front ends update.
#[derive(Default)]
pub struct Metrics {
    /// WebDAV requests by (method, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Cumulative counts per bucket of `BUCKETS`, then the total.
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    sizes: Mutex<Option<(Instant, u64, u64)>>,
}

impl Metrics {
    pub fn record_request(&self, method: &str, status: u16, elapsed: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method.to_owned(), status))
            .or_default() += 1;
        let secs = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency[BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }
}

/// What the metrics and the health check read.
pub struct Sources {
    pub metrics: Arc<Metrics>,
    /// Failed sign-ins (wrong password, unknown user, refused while held back).
    pub limiter: Arc<crate::signin::SignInLimiter>,
    pub users: Arc<Users>,
    pub torrents: Arc<Torrents>,
    pub janitor: Arc<Janitor>,
    pub data: PathBuf,
    /// Open files and health of the FUSE mount, if there is one.
    pub mount: Option<Arc<dyn Fn() -> (u64, bool) + Send + Sync>>,
}

/// One per-user figure of `user list`.
type UserFigure = fn(&crate::users::UserInfo) -> u64;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Sources {
    /// The metrics in Prometheus text format. Blocking (walks folders, reads the store).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.metrics;

        family(
            &mut out,
            "torrentdrive_torrents",
            "gauge",
            "Torrents in the engine by state.",
        );
        let all = self.torrents.engine().all();
        let mut states: BTreeMap<&str, u64> = [
            "checking",
            "queued",
            "downloading",
            "seeding",
            "completed",
            "error",
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        let (mut down, mut up, mut down_bps, mut up_bps, mut peers) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        for (_, _, stats) in &all {
            *states.entry(state_of(stats)).or_default() += 1;
            down += stats.progress_bytes;
            up += stats.uploaded_bytes;
            let live = live_figures(stats);
            down_bps += live.down_bps;
            up_bps += live.up_bps;
            peers += u64::from(live.peers);
        }
        for (state, n) in states {
            let _ = writeln!(out, "torrentdrive_torrents{{state=\"{state}\"}} {n}");
        }
        family(
            &mut out,
            "torrentdrive_torrent_bytes_downloaded",
            "gauge",
            "Bytes of torrent data on disk and checked, over all torrents.",
        );
        let _ = writeln!(out, "torrentdrive_torrent_bytes_downloaded {down}");
        family(
            &mut out,
            "torrentdrive_torrent_bytes_uploaded",
            "gauge",
            "Bytes uploaded to peers by the torrents in the engine.",
        );
        let _ = writeln!(out, "torrentdrive_torrent_bytes_uploaded {up}");
        family(
            &mut out,
            "torrentdrive_torrent_download_bytes_per_second",
            "gauge",
            "Current download speed.",
        );
        let _ = writeln!(
            out,
            "torrentdrive_torrent_download_bytes_per_second {down_bps}"
        );
        family(
            &mut out,
            "torrentdrive_torrent_upload_bytes_per_second",
            "gauge",
            "Current upload speed.",
        );
        let _ = writeln!(out, "torrentdrive_torrent_upload_bytes_per_second {up_bps}");
        family(
            &mut out,
            "torrentdrive_torrent_peers",
            "gauge",
            "Peers connected, over all torrents.",
        );
        let _ = writeln!(out, "torrentdrive_torrent_peers {peers}");
        family(
            &mut out,
            "torrentdrive_stuck_downloads_total",
            "counter",
            "Stuck downloads restarted, and given up on for want of peers.",
        );
        let _ = writeln!(
            out,
            "torrentdrive_stuck_downloads_total{{action=\"restarted\"}} {}",
            self.torrents.restarts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "torrentdrive_stuck_downloads_total{{action=\"given_up\"}} {}",
            self.torrents.given_up.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "torrentdrive_reads_waiting",
            "gauge",
            "Reads of torrent data waiting for pieces now.",
        );
        let _ = writeln!(
            out,
            "torrentdrive_reads_waiting {}",
            self.torrents.engine().waiting_reads()
        );

        family(
            &mut out,
            "torrentdrive_downloads_paused_for_space",
            "gauge",
            "1 while the disk is below --min-free and downloads are paused.",
        );
        let _ = writeln!(
            out,
            "torrentdrive_downloads_paused_for_space {}",
            u8::from(self.torrents.engine().space_low())
        );
        family(
            &mut out,
            "torrentdrive_disk_free_bytes",
            "gauge",
            "Free space on the data dir's disk.",
        );
        let free = crate::blob::free_space(&self.data).unwrap_or(0);
        let _ = writeln!(out, "torrentdrive_disk_free_bytes {free}");
        let (blobs, torrents) = {
            let mut sizes = m.sizes.lock().unwrap_or_else(|e| e.into_inner());
            match *sizes {
                Some((at, b, t)) if at.elapsed() < SIZE_TTL => (b, t),
                _ => {
                    let b = crate::blob::disk_usage(&self.data.join("blobs"));
                    let t = crate::blob::disk_usage(&self.data.join("torrents"));
                    *sizes = Some((Instant::now(), b, t));
                    (b, t)
                }
            }
        };
        family(
            &mut out,
            "torrentdrive_blob_bytes",
            "gauge",
            "Bytes of file contents in blobs/ (measured at most once a minute).",
        );
        let _ = writeln!(out, "torrentdrive_blob_bytes {blobs}");
        family(
            &mut out,
            "torrentdrive_torrent_data_bytes",
            "gauge",
            "Bytes of torrent data in torrents/ (measured at most once a minute).",
        );
        let _ = writeln!(out, "torrentdrive_torrent_data_bytes {torrents}");

        family(&mut out, "torrentdrive_users", "gauge", "Users.");
        let users = self.users.list().unwrap_or_default();
        let _ = writeln!(out, "torrentdrive_users {}", users.len());
        let per_user: [(&str, &str, UserFigure); 3] = [
            (
                "torrentdrive_user_served_bytes",
                "Bytes read from each user's drive this calendar month (UTC; added every 10 s).",
                |u| u.served_month,
            ),
            (
                "torrentdrive_user_downloaded_bytes",
                "Bytes of each user's torrents downloaded this calendar month (UTC).",
                |u| u.downloaded_month,
            ),
            (
                "torrentdrive_user_used_bytes",
                "Bytes each user's files take.",
                |u| u.used,
            ),
        ];
        for (name, help, value) in per_user {
            family(&mut out, name, "gauge", help);
            for u in &users {
                let _ = writeln!(out, "{name}{{user=\"{}\"}} {}", label(&u.name), value(u));
            }
        }

        family(
            &mut out,
            "torrentdrive_webdav_requests_total",
            "counter",
            "WebDAV requests answered, by method and status.",
        );
        for ((method, status), n) in m.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "torrentdrive_webdav_requests_total{{method=\"{}\",status=\"{status}\"}} {n}",
                label(method)
            );
        }
        family(
            &mut out,
            "torrentdrive_webdav_request_seconds",
            "histogram",
            "Time to answer a WebDAV request (to the response head).",
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "torrentdrive_webdav_request_seconds_bucket{{le=\"{bound}\"}} {}",
                m.latency[i].load(Ordering::Relaxed)
            );
        }
        let count = m.latency[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "torrentdrive_webdav_request_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "torrentdrive_webdav_request_seconds_sum {}",
            m.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "torrentdrive_webdav_request_seconds_count {count}");

        family(
            &mut out,
            "torrentdrive_signin_failures_total",
            "counter",
            "Failed or refused sign-ins.",
        );
        let _ = writeln!(
            out,
            "torrentdrive_signin_failures_total {}",
            self.limiter.failures()
        );

        family(
            &mut out,
            "torrentdrive_fuse_open_files",
            "gauge",
            "Files open on the FUSE mount.",
        );
        let open = self.mount.as_ref().map_or(0, |f| f().0);
        let _ = writeln!(out, "torrentdrive_fuse_open_files {open}");

        family(
            &mut out,
            "torrentdrive_janitor_actions_total",
            "counter",
            "Repairs and removals made by the janitor's jobs.",
        );
        for job in [Job::Quotas, Job::Orphans] {
            let _ = writeln!(
                out,
                "torrentdrive_janitor_actions_total{{job=\"{}\"}} {}",
                job.name(),
                self.janitor.actions(job)
            );
        }
        out
    }

    /// Whether the store, the engine and the mount work, as JSON; false if one doesn't.
    pub fn health(&self) -> (bool, String) {
        let store = self.users.all().is_ok();
        // The engine answers if it can list its torrents (its lock isn't stuck).
        let engine = {
            let _ = self.torrents.engine().all();
            true
        };
        let mount = self.mount.as_ref().map(|f| f().1);
        let word = |ok: bool| if ok { "ok" } else { "failing" };
        let body = format!(
            "{{\"store\":\"{}\",\"engine\":\"{}\",\"mount\":\"{}\"}}\n",
            word(store),
            word(engine),
            mount.map_or("none", word)
        );
        (store && engine && mount != Some(false), body)
    }
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        res.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    res
}

async fn route(
    sources: Arc<Sources>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return Ok(respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    let path = req.uri().path().to_owned();
    let res = match path.as_str() {
        "/metrics" => {
            let s = sources.clone();
            match tokio::task::spawn_blocking(move || s.render()).await {
                Ok(text) => respond(StatusCode::OK, "text/plain; version=0.0.4", text),
                Err(_) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    "metrics failed\n".into(),
                ),
            }
        }
        "/healthz" => {
            let s = sources.clone();
            match tokio::task::spawn_blocking(move || s.health()).await {
                Ok((true, body)) => respond(StatusCode::OK, "application/json", body),
                Ok((false, body)) => {
                    respond(StatusCode::SERVICE_UNAVAILABLE, "application/json", body)
                }
                Err(_) => respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "health check failed\n".into(),
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "/metrics or /healthz\n".into(),
        ),
    };
    Ok(res)
}

/// Serves `/metrics` and `/healthz` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, sources: Arc<Sources>) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sources = sources.clone();
        let service = hyper::service::service_fn(move |req| route(sources.clone(), req));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// Binds the metrics address: `off` for none.
pub async fn bind(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    use anyhow::Context as _;
    match addr {
        Some(a) => Ok(Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("metrics: listening on {a}"))?,
        )),
        None => Ok(None),
    }
}
