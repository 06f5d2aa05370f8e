//! `torrentdrive serve` and `torrentdrive mount`: WebDAV (and later the web page) over HTTP,
//! the FUSE mount, the control socket, and a clean stop on SIGINT/SIGTERM.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use torrentdrive_dav::{Authenticator, ClientAddr, Denied, WebDav};
use torrentdrive_fs::fuse::{self, DriveSet, MountOptions, Tree};
use torrentdrive_fs::{Drive, FsError, FsResult};

use crate::api::Api;
use crate::control;
use crate::drive::Storage;
use crate::janitor::{Janitor, JanitorOptions};
use crate::metrics::{self as metrics_http, Metrics, Sources};
use crate::service::Service;
use crate::signin::{Refused, SignInLimiter};
use crate::size::{format_size, MinFree};
use crate::torrents::engine::EngineOptions;
use crate::torrents::scheduler::{SeedPolicy, StallPolicy};
use crate::torrents::Torrents;
use crate::users::Users;
use crate::web::{full, ResponseBody, WebApi};

pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
/// How often counted traffic is added to the store.
const TRAFFIC_FLUSH: Duration = Duration::from_secs(10);
/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    /// Where WebDAV listens; `None` for none (`torrentdrive mount`).
    pub listen: Option<SocketAddr>,
    pub engine: EngineOptions,
    pub mount: Option<MountSpec>,
    pub janitor: JanitorOptions,
    /// Disk space kept free.
    pub min_free: MinFree,
    /// Where `/metrics` and `/healthz` listen; `None` for nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// HTTPS: certificate chain and private key files (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A FUSE mount of the drives.
pub struct MountSpec {
    pub dir: PathBuf,
    /// Mount this user's drive at `dir`; otherwise every drive as `dir/<user>`.
    pub user: Option<String>,
    pub options: MountOptions,
}

/// Every user's drive, for a mount that shows them all.
struct UserDrives {
    users: Arc<Users>,
}

fn user_error(e: crate::users::UserError) -> FsError {
    match e {
        crate::users::UserError::NotFound(_) => FsError::NotFound,
        other => FsError::Io(other.to_string()),
    }
}

#[async_trait]
impl DriveSet for UserDrives {
    async fn names(&self) -> FsResult<Vec<String>> {
        let users = tokio::task::block_in_place(|| self.users.all()).map_err(user_error)?;
        Ok(users.into_iter().map(|u| u.name).collect())
    }

    async fn drive(&self, name: &str) -> FsResult<Arc<dyn Drive>> {
        let rec = tokio::task::block_in_place(|| self.users.get(name)).map_err(user_error)?;
        Ok(Arc::new(self.users.storage().drive(&rec)))
    }
}

/// Mounts the drives as `spec` says.
fn mount(users: &Arc<Users>, spec: MountSpec) -> anyhow::Result<fuse::Mount> {
    let tree = match &spec.user {
        Some(name) => {
            let rec = users
                .get(name)
                .with_context(|| format!("mounting the drive of `{name}`"))?;
            Tree::Drive(Arc::new(users.storage().drive(&rec)))
        }
        None => Tree::Drives(Arc::new(UserDrives {
            users: users.clone(),
        })),
    };
    let runtime = tokio::runtime::Handle::current();
    let mount = tokio::task::block_in_place(|| fuse::mount(tree, &spec.dir, spec.options, runtime))
        .with_context(|| format!("mounting at {}", spec.dir.display()))?;
    tracing::info!(dir = %spec.dir.display(), user = spec.user.as_deref().unwrap_or("(all)"), "drives mounted");
    Ok(mount)
}

/// Signs WebDAV users in against the user table, holding back addresses that fail often.
struct UserAuth {
    users: Arc<Users>,
    limiter: Arc<SignInLimiter>,
}

#[async_trait]
impl Authenticator for UserAuth {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<dyn Drive>, Denied> {
        match self
            .limiter
            .attempt(client, self.users.verify_async(user, password))
            .await
        {
            Ok(rec) => Ok(Arc::new(self.users.storage().drive(&rec))),
            Err(Refused::Credentials) => Err(Denied::Credentials),
            Err(Refused::TooManyAttempts(retry_after)) => {
                Err(Denied::TooManyAttempts { retry_after })
            }
        }
    }
}

/// The address a request comes from: the peer's, or, when the peer is a reverse proxy on
/// this machine, the one it appended to X-Forwarded-For (a remote client can't claim to be
/// someone else, since only loopback peers are believed).
fn client_addr(peer: SocketAddr, headers: &hyper::HeaderMap) -> IpAddr {
    if peer.ip().is_loopback() {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .next_back();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

/// Adds the traffic counted since the last time to the store.
async fn flush_traffic(storage: &Arc<Storage>, torrents: &Arc<Torrents>) {
    let (storage, torrents) = (storage.clone(), torrents.clone());
    let flushed = tokio::task::spawn_blocking(move || {
        storage.traffic.flush(storage.store(), Some(&torrents))
    })
    .await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "recording traffic");
    }
}

fn write_admin_password(data: &Path, password: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(data.join(ADMIN_PASSWORD_FILE))?;
    writeln!(f, "{password}")?;
    f.sync_all()
}

async fn route(
    webdav: Arc<WebDav>,
    web_api: Arc<WebApi>,
    metrics: Arc<Metrics>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let client = client_addr(peer, req.headers());
    req.extensions_mut().insert(ClientAddr(client));
    if WebApi::serves(req.uri().path()) {
        return web_api.handle(req, client).await;
    }
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let res = if path == "/dav" || path.starts_with("/dav/") {
        webdav.handle(req).await.map(BodyExt::boxed_unsync)
    } else {
        let mut res = Response::new(full("not found\n"));
        *res.status_mut() = StatusCode::NOT_FOUND;
        res
    };
    if path == "/dav" || path.starts_with("/dav/") {
        metrics.record_request(method.as_str(), res.status().as_u16(), started.elapsed());
    }
    tracing::debug!(%method, %path, status = res.status().as_u16(), us = started.elapsed().as_micros() as u64, "request");
    Ok(res)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

pub async fn serve(service: Service, opts: ServeOptions) -> anyhow::Result<()> {
    // Checked first: a bad certificate stops the start before anything else runs.
    let tls = match &opts.tls {
        Some((cert, key)) => Some(crate::tls::acceptor(cert, key)?),
        None => None,
    };
    let data = service.data.clone();
    let users = service.users.clone();
    if let Some(password) = tokio::task::block_in_place(|| users.ensure_admin())? {
        write_admin_password(&data, &password).context("writing the admin password")?;
        println!(
            "Created user `admin` with password: {password}\n(also in {}; change it with `torrentdrive user passwd admin`)",
            data.join(ADMIN_PASSWORD_FILE).display()
        );
    }

    let storage = users.storage().clone();
    let disk = crate::blob::disk_size(&data).context("measuring the data dir's disk")?;
    let reserve = opts.min_free.bytes(disk);
    storage.set_reserve(reserve);
    tracing::info!(
        min_free = %format_size(reserve),
        "uploads are refused when the disk's free space would drop below this"
    );
    let torrents = Torrents::start(&data, storage.store().clone(), &opts.engine).await?;
    torrents.engine().set_reserve(reserve);
    if let Some(addr) = torrents.engine().listen_addr() {
        tracing::info!(%addr, "torrent engine listening");
    }
    storage.set_torrents(torrents.clone());
    let scheduler = torrents.spawn_scheduler(
        SeedPolicy {
            ratio: opts.engine.seed_ratio,
            time: opts.engine.seed_time,
        },
        StallPolicy {
            stall: opts.engine.stall_timeout,
            no_peers: opts.engine.no_peers_timeout,
        },
    );
    for user in tokio::task::block_in_place(|| users.all())? {
        if let Err(e) = storage.drive(&user).scan_add() {
            tracing::warn!(user = %user.name, error = %e, "looking for drops in /Add");
        }
    }

    let metrics = Arc::new(Metrics::default());
    // One record of failed sign-ins for WebDAV and the API alike.
    let limiter = Arc::new(SignInLimiter::default());
    let web_api = Arc::new(WebApi::new(users.clone(), limiter.clone(), tls.is_some()));
    let webdav = Arc::new(WebDav::new(
        Arc::new(UserAuth {
            users: users.clone(),
            limiter: limiter.clone(),
        }),
        "/dav",
    ));
    let janitor = Arc::new(Janitor::new(storage.clone(), data.clone(), opts.janitor));
    let janitor_tasks = janitor.clone().spawn();
    let traffic_task = {
        let (storage, torrents) = (storage.clone(), torrents.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TRAFFIC_FLUSH);
            loop {
                tick.tick().await;
                flush_traffic(&storage, &torrents).await;
            }
        })
    };
    let forget = webdav.clone();
    let api = Arc::new(Api::new(
        users.clone(),
        data.clone(),
        janitor.clone(),
        Some(Box::new(move |name| forget.forget_user(name))),
    ));
    let metrics_listener = metrics_http::bind(opts.metrics_listen).await?;
    let socket = control::socket_path(&data);
    let control_listener = control::bind(&socket).context("binding the control socket")?;
    let control_task = tokio::spawn(control::serve(control_listener, api));

    let mounted = match opts.mount {
        Some(spec) => Some(Arc::new(mount(&users, spec)?)),
        None => None,
    };
    let metrics_task = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "metrics at http://{addr}/metrics, health at /healthz");
        }
        // Weak: the stop unmounts whatever scrapes are open.
        let mount_state = mounted.as_ref().map(|m| {
            let m = Arc::downgrade(m);
            Arc::new(move || match m.upgrade() {
                Some(m) => (m.open_files(), m.is_healthy()),
                None => (0, false),
            }) as Arc<dyn Fn() -> (u64, bool) + Send + Sync>
        });
        tokio::spawn(metrics_http::serve(
            listener,
            Arc::new(Sources {
                metrics: metrics.clone(),
                limiter: limiter.clone(),
                users: users.clone(),
                torrents: torrents.clone(),
                janitor: janitor.clone(),
                data: data.clone(),
                mount: mount_state,
            }),
        ))
    });

    let listener = match opts.listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let addr = listener.local_addr()?;
            let scheme = if opts.tls.is_some() { "https" } else { "http" };
            tracing::info!(%addr, data = %data.display(), "serving WebDAV at {scheme}://{addr}/dav/");
            Some(listener)
        }
        None => None,
    };
    let accept = async |listener: &Option<TcpListener>| match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    };

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = accept(&listener) => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (webdav, web_api, metrics) = (webdav.clone(), web_api.clone(), metrics.clone());
                let service = hyper::service::service_fn(move |req| {
                    route(webdav.clone(), web_api.clone(), metrics.clone(), peer, req)
                });
                match &tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        let conn = graceful.watch(conn.into_owned());
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let (acceptor, builder, watcher) = (acceptor.clone(), builder.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            // A client that never finishes its handshake holds nothing for long.
                            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                            if let Err(e) = watcher.watch(conn.into_owned()).await {
                                tracing::debug!(error = %e, "connection ended");
                            }
                        });
                    }
                }
            }
            _ = &mut stop => break,
        }
    }
    tracing::info!("stopping");
    drop(listener);
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Some(m) = mounted.and_then(Arc::into_inner) {
        let dir = m.dir().to_owned();
        if let Err(e) = tokio::task::block_in_place(|| m.unmount()) {
            tracing::warn!(dir = %dir.display(), error = %e, "unmounting");
        }
    }
    control_task.abort();
    let _ = std::fs::remove_file(&socket);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    scheduler.abort();
    for task in janitor_tasks {
        task.abort();
    }
    traffic_task.abort();
    flush_traffic(&storage, &torrents).await;
    torrents.stop().await;
    tracing::info!("stopped");
    Ok(())
}
