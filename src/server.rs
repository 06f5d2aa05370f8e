//! `torrentdrive serve`: WebDAV (and later the web page) over HTTP, the control socket, and
//! a clean stop on SIGINT/SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use torrentdrive_dav::{Authenticator, Body, WebDav};
use torrentdrive_fs::Drive;

use crate::api::Api;
use crate::control;
use crate::service::Service;
use crate::torrents::engine::EngineOptions;
use crate::torrents::scheduler::SeedPolicy;
use crate::torrents::Torrents;
use crate::users::Users;

pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
/// How long a stop waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub engine: EngineOptions,
}

/// Signs WebDAV users in against the user table.
struct UserAuth {
    users: Arc<Users>,
}

#[async_trait]
impl Authenticator for UserAuth {
    async fn authenticate(&self, user: &str, password: &str) -> Option<Arc<dyn Drive>> {
        let rec = match self.users.verify_cached(user, password) {
            Some(rec) => rec,
            None => {
                let (users, user, password) =
                    (self.users.clone(), user.to_owned(), password.to_owned());
                tokio::task::spawn_blocking(move || users.verify(&user, &password))
                    .await
                    .ok()??
            }
        };
        Some(Arc::new(self.users.storage().drive(&rec)))
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

async fn route(webdav: Arc<WebDav>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let res = if path == "/dav" || path.starts_with("/dav/") {
        webdav.handle(req).await
    } else if path == "/" {
        // The web page takes `/` later; until then, point browsers at the drive.
        let mut res = Response::new(Body::from("see /dav/\n"));
        *res.status_mut() = StatusCode::FOUND;
        res.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_static("/dav/"),
        );
        res
    } else {
        let mut res = Response::new(Body::from("not found\n"));
        *res.status_mut() = StatusCode::NOT_FOUND;
        res
    };
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
    let torrents = Torrents::start(&data, storage.store().clone(), &opts.engine).await?;
    if let Some(addr) = torrents.engine().listen_addr() {
        tracing::info!(%addr, "torrent engine listening");
    }
    storage.set_torrents(torrents.clone());
    let scheduler = torrents.spawn_scheduler(SeedPolicy {
        ratio: opts.engine.seed_ratio,
        time: opts.engine.seed_time,
    });
    for user in tokio::task::block_in_place(|| users.all())? {
        if let Err(e) = storage.drive(&user).scan_add() {
            tracing::warn!(user = %user.name, error = %e, "looking for drops in /Add");
        }
    }

    let webdav = Arc::new(WebDav::new(
        Arc::new(UserAuth {
            users: users.clone(),
        }),
        "/dav",
    ));
    let forget = webdav.clone();
    let api = Arc::new(Api::new(
        users.clone(),
        Some(Box::new(move |name| forget.forget_user(name))),
    ));
    let socket = control::socket_path(&data);
    let control_listener = control::bind(&socket).context("binding the control socket")?;
    let control_task = tokio::spawn(control::serve(control_listener, api));

    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %data.display(), "serving WebDAV at http://{addr}/dav/");

    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let webdav = webdav.clone();
                let service = hyper::service::service_fn(move |req| route(webdav.clone(), req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
    tracing::info!("stopping");
    drop(listener);
    control_task.abort();
    let _ = std::fs::remove_file(&socket);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    scheduler.abort();
    torrents.stop().await;
    tracing::info!("stopped");
    Ok(())
}
