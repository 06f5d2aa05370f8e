//! WebDAV over an in-memory drive: the smallest complete use of `torrentdrive-dav`.
//!
//! ```sh
//! cargo run --example memory_webdav -- 127.0.0.1:4918
//! curl -u demo:demo-password -T README.md http://127.0.0.1:4918/dav/README.md
//! ```
//! Any `Drive` can be served this way; the daemon serves `UserDrive`s instead.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use torrentdrive_dav::{Authenticator, Denied, WebDav};
use torrentdrive_fs::{Drive, MemoryDrive};

/// One user, `demo`, with one drive in memory.
struct Demo {
    drive: Arc<MemoryDrive>,
}

#[async_trait]
impl Authenticator for Demo {
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        _client: Option<std::net::IpAddr>,
    ) -> Result<Arc<dyn Drive>, Denied> {
        (user == "demo" && password == "demo-password")
            .then(|| self.drive.clone() as Arc<dyn Drive>)
            .ok_or(Denied::Credentials)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4918".into())
        .parse()?;
    let auth = Demo {
        drive: Arc::new(MemoryDrive::new(Some(100 << 20))),
    };
    let webdav = Arc::new(WebDav::new(Arc::new(auth), "/dav"));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("WebDAV at http://{addr}/dav/ (user demo, password demo-password)");
    loop {
        let (stream, _) = listener.accept().await?;
        let webdav = webdav.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let webdav = webdav.clone();
                async move { Ok::<_, std::convert::Infallible>(webdav.handle(req).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
