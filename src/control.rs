//! The control socket: `<data>/control.sock`, mode 0600. The daemon owns the database, so
//! while it runs the CLI sends its requests here, one JSON line each way.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
use tokio::net::UnixListener;

use crate::api::{Api, Reply, Request};

pub const SOCKET_NAME: &str = "control.sock";
/// Longest request line accepted (passwords are the largest field).
const MAX_LINE: u64 = 64 * 1024;

pub fn socket_path(data: &Path) -> PathBuf {
    data.join(SOCKET_NAME)
}

/// Binds the socket. A socket file left by a crashed daemon is replaced; the caller holds
/// the database lock, so no live daemon can own it.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Create it private from the start: no window in which others could connect.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: UnixListener, api: Arc<Api>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept");
                continue;
            }
        };
        let api = api.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = AsyncBufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(req) => tokio::task::spawn_blocking(move || api.call(req))
                    .await
                    .unwrap_or_else(|e| Reply::Error {
                        message: format!("request failed: {e}"),
                    }),
                Err(e) => Reply::Error {
                    message: format!("bad request: {e}"),
                },
            };
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let _ = write.write_all(&out).await;
        });
    }
}

/// Sends a request to a running daemon; `None` if no daemon listens.
pub fn call(path: &Path, req: &Request) -> io::Result<Option<Reply>> {
    let mut stream = match StdUnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|e| io::Error::other(format!("bad reply from the daemon: {e}")))
}
