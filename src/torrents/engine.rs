//! The BitTorrent engine: one librqbit session for the whole daemon, with every path under
//! the data dir (librqbit's defaults would use the home folder).
//!
//! Torrent data lives in `<data>/torrents/<info-hash>/`, once per torrent however many users
//! have it. Reads of missing ranges go through librqbit's `FileStream`, which makes the
//! engine fetch those pieces first; reads never wait longer than `read_timeout`.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use librqbit::api::TorrentIdOrHash;
use librqbit::dht::{DhtPersistenceConfig, Id20};
use librqbit::limits::LimitsConfig;
use librqbit::{
    AddTorrent, AddTorrentOptions, ConnectionOptions, DhtSessionConfig, ListenerMode,
    ListenerOptions, ManagedTorrent, PeerConnectionOptions, Session, SessionOptions,
    SessionPersistenceConfig,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeek, AsyncSeekExt};
use torrentdrive_fs::{FsError, FsResult};

use super::metainfo::hex;

/// How the engine talks to the swarm.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Where to accept peers; `None` accepts none.
    pub listen: Option<SocketAddr>,
    pub dht: bool,
    /// Local service discovery (multicast on the LAN).
    pub lsd: bool,
    /// How long a read of a missing range may wait for its pieces.
    pub read_timeout: Duration,
    /// Bytes per second for all downloads together; `None` is unlimited.
    pub download_limit: Option<u32>,
    pub upload_limit: Option<u32>,
    /// Trackers added to every torrent.
    pub trackers: Vec<String>,
    /// Downloads running at once; the others wait, paused, as "queued".
    pub max_active: usize,
    /// A completed torrent seeds until it uploaded this many times its size...
    pub seed_ratio: f64,
    /// ...or for this long, whichever comes first.
    pub seed_time: Duration,
    /// A download that gets nothing this long from the peers it knows is restarted.
    pub stall_timeout: Duration,
    /// A download with no peer this long is given up on (paused, with the reason shown).
    pub no_peers_timeout: Duration,
    /// Chunk (16 KiB) requests kept outstanding per peer. A piece a reader waits for is
    /// requested behind these, so fewer make seeks answer sooner; more help far peers.
    pub request_window: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            listen: Some(([0, 0, 0, 0], 4240).into()),
            dht: true,
            lsd: true,
            read_timeout: Duration::from_secs(60),
            download_limit: None,
            upload_limit: None,
            trackers: Vec::new(),
            max_active: 5,
            seed_ratio: 1.0,
            seed_time: Duration::from_secs(24 * 3600),
            stall_timeout: Duration::from_secs(600),
            no_peers_timeout: Duration::from_secs(6 * 3600),
            request_window: 128,
        }
    }
}

/// A readable, seekable stream of one torrent file, holding one of the engine's stream slots.
pub struct FileStream {
    stream: Box<dyn StreamRead>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// Streams open at once. Each librqbit stream holds one of the session's worker permits
/// (`runtime_worker_threads`, set to 64 below), which chunk writes and hash checks need too:
/// with all of them taken by streams waiting for pieces, no piece could ever arrive.
const MAX_STREAMS: usize = 32;
pub trait StreamRead: AsyncRead + AsyncSeek + Send + Unpin {}
impl<T: AsyncRead + AsyncSeek + Send + Unpin> StreamRead for T {}

pub struct Engine {
    session: Arc<Session>,
    streams: Arc<tokio::sync::Semaphore>,
    torrents_dir: PathBuf,
    read_timeout: Duration,
    max_active: usize,
    /// Reads waiting in `read` now (most of them for pieces).
    waiting: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of the disk downloads must leave free, and whether they are paused for it.
    reserve: std::sync::atomic::AtomicU64,
    space_low: std::sync::atomic::AtomicBool,
}

/// Counts a read as waiting for as long as it lives.
struct Waiting(Arc<std::sync::atomic::AtomicU64>);

impl Waiting {
    fn new(count: &Arc<std::sync::atomic::AtomicU64>) -> Waiting {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Engine {
    pub async fn start(data: &Path, opts: &EngineOptions) -> anyhow::Result<Engine> {
        let torrents_dir = data.join("torrents");
        let state_dir = data.join("engine");
        std::fs::create_dir_all(&torrents_dir)?;
        std::fs::create_dir_all(&state_dir)?;
        let session_dir = state_dir.join("session");
        let _ = librqbit::try_increase_nofile_limit();
        // Trackers must be told the real port; for "any port" pick one now.
        let listen = match opts.listen {
            Some(addr) if addr.port() == 0 => Some(
                std::net::TcpListener::bind(addr)
                    .and_then(|l| l.local_addr())
                    .context("finding a free port for the torrent engine")?,
            ),
            other => other,
        };
        let session = Session::new_with_opts(
            torrents_dir.clone(),
            SessionOptions {
                dht: opts.dht.then(|| DhtSessionConfig {
                    bootstrap_addrs: None,
                    port: None,
                    persistence: Some(DhtPersistenceConfig {
                        dump_interval: None,
                        config_filename: Some(state_dir.join("dht.json")),
                    }),
                }),
                disable_local_service_discovery: !opts.lsd,
                fastresume: true,
                persistence: Some(SessionPersistenceConfig::Json {
                    folder: Some(session_dir),
                }),
                listen: listen.map(|addr| ListenerOptions {
                    mode: ListenerMode::TcpOnly,
                    listen_addr: addr,
                    // What trackers are told; librqbit would announce its default port.
                    announce_port: Some(addr.port()),
                    enable_upnp_port_forwarding: false,
                    ..Default::default()
                }),
                // Every open stream holds one of these; chunk writes and hash checks need
                // them too. The default of 8 lets a few readers stall the whole session.
                runtime_worker_threads: Some(64),
                connect: Some(ConnectionOptions {
                    peer_opts: Some(PeerConnectionOptions {
                        max_request_window: Some(opts.request_window.max(1)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ratelimits: LimitsConfig {
                    download_bps: opts.download_limit.and_then(NonZeroU32::new),
                    upload_bps: opts.upload_limit.and_then(NonZeroU32::new),
                },
                trackers: opts
                    .trackers
                    .iter()
                    .filter_map(|t| url::Url::parse(t).ok())
                    .collect(),
                ..Default::default()
            },
        )
        .await
        .context("starting the torrent engine")?;
        Ok(Engine {
            session,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_STREAMS)),
            torrents_dir,
            read_timeout: opts.read_timeout,
            max_active: opts.max_active.max(1),
            waiting: Arc::default(),
            reserve: Default::default(),
            space_low: Default::default(),
        })
    }

    /// Where a torrent's data lives.
    pub fn data_dir(&self, hash: &[u8; 20]) -> PathBuf {
        self.torrents_dir.join(hex(hash))
    }

    /// The address peers can reach this engine at, if it listens.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.session.listen_addr()
    }

    fn handle(&self, hash: &[u8; 20]) -> Option<Arc<ManagedTorrent>> {
        self.session.get(TorrentIdOrHash::Hash(Id20::new(*hash)))
    }

    /// Starts (or joins) the download of a torrent.
    pub async fn add(
        &self,
        hash: &[u8; 20],
        torrent: Bytes,
        initial_peers: Vec<SocketAddr>,
    ) -> anyhow::Result<()> {
        if self.handle(hash).is_some() {
            return Ok(());
        }
        let folder = self.data_dir(hash);
        let opts = AddTorrentOptions {
            // Beyond the active limit a new download waits in the queue.
            paused: self.downloading() >= self.max_active,
            output_folder: Some(folder.to_string_lossy().into_owned()),
            // Resuming over our own partial data is the normal case after a restart.
            overwrite: true,
            initial_peers: (!initial_peers.is_empty()).then_some(initial_peers),
            ..Default::default()
        };
        self.session
            .add_torrent(AddTorrent::from_bytes(torrent), Some(opts))
            .await
            .context("adding the torrent to the engine")?;
        Ok(())
    }

    /// The `.torrent` behind a magnet link or an http(s) URL, without starting a download:
    /// for a magnet, the metadata is fetched from peers (`peers` are tried first). Fails
    /// after `within`.
    pub async fn resolve(
        &self,
        source: &str,
        peers: Vec<SocketAddr>,
        within: Duration,
    ) -> anyhow::Result<Bytes> {
        let opts = AddTorrentOptions {
            list_only: true,
            initial_peers: (!peers.is_empty()).then_some(peers),
            ..Default::default()
        };
        let add = self
            .session
            .add_torrent(AddTorrent::from_url(source), Some(opts));
        match tokio::time::timeout(within, add).await {
            Err(_) => anyhow::bail!("metadata not found in {} s", within.as_secs()),
            Ok(Err(e)) => Err(e),
            Ok(Ok(librqbit::AddTorrentResponse::ListOnly(r))) => Ok(r.torrent_bytes),
            Ok(Ok(_)) => anyhow::bail!("the engine added the torrent instead of listing it"),
        }
    }

    /// Unfinished torrents that are not paused.
    pub fn downloading(&self) -> usize {
        self.session.with_torrents(|all| {
            all.filter(|(_, h)| !h.is_paused() && !h.stats().finished)
                .count()
        })
    }

    /// Keep `bytes` of the disk free: below that, downloads pause (see `check_space`).
    pub fn set_reserve(&self, bytes: u64) {
        self.reserve
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether downloads are paused because the disk is nearly full.
    pub fn space_low(&self) -> bool {
        self.space_low.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Measures the free space: below the reserve, downloads must pause; they may run again
    /// once it is back above the reserve plus a margin (so they don't flap). Returns
    /// whether space is low.
    pub fn check_space(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let reserve = self.reserve.load(Relaxed);
        let Ok(free) = crate::blob::free_space(&self.torrents_dir) else {
            return self.space_low();
        };
        let margin = reserve / 10;
        let low = if self.space_low() {
            free < reserve.saturating_add(margin)
        } else {
            free < reserve
        };
        if low != self.space_low.swap(low, Relaxed) {
            if low {
                tracing::warn!(free, reserve, "disk nearly full: downloads paused");
            } else {
                tracing::info!(free, reserve, "disk space back: downloads resume");
            }
        }
        low
    }

    /// Reads of torrent data in progress (waiting for pieces, mostly).
    pub fn waiting_reads(&self) -> u64 {
        self.waiting.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn max_active(&self) -> usize {
        self.max_active
    }

    /// Every torrent the engine has: (info-hash, paused, stats).
    pub fn all(&self) -> Vec<([u8; 20], bool, librqbit::TorrentStats)> {
        self.session.with_torrents(|all| {
            all.map(|(_, h)| (h.info_hash().0, h.is_paused(), h.stats()))
                .collect()
        })
    }

    pub async fn pause(&self, hash: &[u8; 20]) -> anyhow::Result<()> {
        match self.handle(hash) {
            Some(h) if !h.is_paused() => self.session.pause(&h).await,
            _ => Ok(()),
        }
    }

    pub async fn unpause(&self, hash: &[u8; 20]) -> anyhow::Result<()> {
        match self.handle(hash) {
            Some(h) if h.is_paused() => self.session.unpause(&h).await,
            _ => Ok(()),
        }
    }

    /// The engine's figures for a torrent, if it has it.
    pub fn stats(&self, hash: &[u8; 20]) -> Option<librqbit::TorrentStats> {
        self.handle(hash).map(|h| h.stats())
    }

    /// Stops a torrent and deletes its data.
    pub async fn remove(&self, hash: &[u8; 20]) -> anyhow::Result<()> {
        if self.handle(hash).is_some() {
            self.session
                .delete(TorrentIdOrHash::Hash(Id20::new(*hash)), true)
                .await?;
        }
        let dir = self.data_dir(hash);
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// The path of file `file` of a torrent, if the torrent is complete: its data can then be
    /// read straight from disk.
    pub fn completed_file(&self, hash: &[u8; 20], file: u32) -> Option<PathBuf> {
        let handle = self.handle(hash)?;
        if !handle.stats().finished {
            return None;
        }
        let relative = handle
            .with_metadata(|m| {
                m.file_infos
                    .get(file as usize)
                    .map(|f| f.relative_filename.clone())
            })
            .ok()??;
        Some(handle.output_folder().join(relative))
    }

    /// Opens a stream of file `file` of a torrent.
    pub async fn open(&self, hash: &[u8; 20], file: u32) -> FsResult<FileStream> {
        // A drop's files are visible from the commit that creates them, a moment before the
        // engine has the torrent: wait for it as for a piece.
        let waited = tokio::time::timeout(self.read_timeout, async {
            loop {
                if let Some(handle) = self.handle(hash) {
                    return handle;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let handle = waited
            .await
            .map_err(|_| FsError::Io("the torrent is not in the engine".into()))?;
        // Someone wants to watch it: a queued download starts now (unless the disk is full).
        if handle.is_paused() && !handle.stats().finished && !self.space_low() {
            if let Err(e) = self.session.unpause(&handle).await {
                tracing::warn!(torrent = %hex(hash), error = %format!("{e:#}"), "starting a queued download for a read");
            }
        }
        let open = async {
            let slot = self
                .streams
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FsError::Io("the engine is stopping".into()))?;
            let stream = handle
                .stream(file as usize)
                .await
                .map_err(|e| FsError::Io(format!("opening a torrent stream: {e:#}")))?;
            Ok(FileStream {
                stream: Box::new(stream),
                _slot: slot,
            })
        };
        tokio::time::timeout(self.read_timeout, open)
            .await
            .map_err(|_| FsError::TimedOut)?
    }

    /// Reads up to `n` bytes at `offset` from `stream`, waiting for missing pieces at most
    /// `read_timeout`. Returns fewer bytes only at the end of the file.
    pub async fn read(&self, stream: &mut FileStream, offset: u64, n: usize) -> FsResult<Bytes> {
        let _waiting = Waiting::new(&self.waiting);
        let stream = &mut stream.stream;
        let work = async {
            stream.seek(SeekFrom::Start(offset)).await?;
            let mut buf = vec![0u8; n];
            let mut done = 0;
            // A stream read never crosses a piece boundary: loop for the whole range.
            while done < n {
                let got = stream.read(&mut buf[done..]).await?;
                if got == 0 {
                    break;
                }
                done += got;
            }
            buf.truncate(done);
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        tokio::time::timeout(self.read_timeout, work)
            .await
            .map_err(|_| FsError::TimedOut)?
            .map_err(FsError::from)
    }

    pub async fn stop(&self) {
        self.session.stop().await;
    }
}
