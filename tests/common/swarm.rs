//! A BitTorrent swarm on loopback for the tests: a minimal HTTP tracker and a librqbit
//! seeder, both in the test process, no DHT, no LSD, no internet.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};

use librqbit::limits::LimitsConfig;
use librqbit::spawn_utils::BlockingSpawner;
use librqbit::{
    AddTorrent, AddTorrentOptions, CreateTorrentOptions, ListenerOptions, Session, SessionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP tracker answering announces with every peer it has seen for the info-hash. It
/// also serves files put with `serve_file` at `/files/<name>`, for http(s) links to
/// `.torrent` files.
pub struct Tracker {
    pub url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            let hex = std::str::from_utf8(&s[i + 1..i + 3]).unwrap_or("00");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

impl Tracker {
    pub async fn start() -> Tracker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tracker");
        let url = format!("http://{}/announce", listener.local_addr().expect("addr"));
        let peers: Arc<Mutex<HashMap<Vec<u8>, HashSet<u16>>>> = Arc::default();
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let served = files.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                let peers = peers.clone();
                let served = served.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let req = &buf[..n];
                    let line_end = req.iter().position(|&b| b == b'\r').unwrap_or(req.len());
                    let line = &req[..line_end];
                    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
                    if let Some(name) = target.strip_prefix(b"/files/") {
                        let name = String::from_utf8_lossy(name).into_owned();
                        let body = served
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get(&name)
                            .cloned();
                        let (status, body) = match body {
                            Some(b) => ("200 OK", b),
                            None => ("404 Not Found", Vec::new()),
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.write_all(&body).await;
                        return;
                    }
                    let query = line
                        .split(|&b| b == b' ')
                        .nth(1)
                        .and_then(|target| target.splitn(2, |&b| b == b'?').nth(1))
                        .unwrap_or_default();
                    let mut hash = Vec::new();
                    let mut port = 0u16;
                    for pair in query.split(|&b| b == b'&') {
                        let mut kv = pair.splitn(2, |&b| b == b'=');
                        let (k, v) = (kv.next().unwrap_or_default(), kv.next().unwrap_or_default());
                        match k {
                            b"info_hash" => hash = percent_decode(v),
                            b"port" => {
                                port = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|p| p.parse().ok())
                                    .unwrap_or(0)
                            }
                            _ => {}
                        }
                    }
                    let mut compact = Vec::new();
                    {
                        let mut map = peers.lock().unwrap_or_else(|e| e.into_inner());
                        let set = map.entry(hash).or_default();
                        for &p in set.iter().filter(|&&p| p != port) {
                            compact.extend_from_slice(&[127, 0, 0, 1]);
                            compact.extend_from_slice(&p.to_be_bytes());
                        }
                        if port != 0 {
                            set.insert(port);
                        }
                    }
                    if std::env::var("TD_TEST_LOG").is_ok() {
                        eprintln!(
                            "tracker: announce port {port}, {} peers returned, query {}",
                            compact.len() / 6,
                            String::from_utf8_lossy(query)
                        );
                    }
                    let mut body =
                        format!("d8:intervali2e12:min intervali1e5:peers{}:", compact.len())
                            .into_bytes();
                    body.extend_from_slice(&compact);
                    body.push(b'e');
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                });
            }
        });
        Tracker { url, files, task }
    }

    /// Serves `data` at the returned URL.
    pub fn serve_file(&self, name: &str, data: &[u8]) -> String {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), data.to_vec());
        format!("{}/files/{name}", self.url.trim_end_matches("/announce"))
    }
}

/// Files with deterministic pseudo-random content.
pub fn write_files(dir: &Path, files: &[(&str, usize)]) {
    for (i, (name, len)) in files.iter().enumerate() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut x = 0x9E37_79B9_u32.wrapping_mul(i as u32 + 1);
        let data: Vec<u8> = (0..*len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(path, data).expect("write");
    }
}

/// One file of pseudo-random bytes in `<work>/seed/`, and its torrent.
pub struct OneFile {
    pub dir: std::path::PathBuf,
    pub torrent: Vec<u8>,
    pub original: Vec<u8>,
}

/// Writes file `name` of `len` bytes and makes its torrent, announcing to `tracker`.
pub async fn one_file(work: &Path, name: &str, len: usize, tracker: &str, piece: u32) -> OneFile {
    let dir = work.join("seed");
    write_files(&dir, &[(name, len)]);
    let original = std::fs::read(dir.join(name)).expect("read");
    let torrent = make_torrent(&dir.join(name), tracker, piece).await;
    OneFile {
        dir,
        torrent,
        original,
    }
}

/// A file seeded on loopback and the magnet link that finds it: no tracker, the link's
/// peer hint (`x.pe`) is the only way to the seeder.
pub struct SeededMagnet {
    pub seeder: Seeder,
    pub torrent: Vec<u8>,
    pub hash: String,
    pub link: String,
}

/// Seeds `file` (its folder holds the data) under `work`, uploading at most `upload_bps`.
pub async fn magnet_of(work: &Path, file: &Path, upload_bps: Option<u32>) -> SeededMagnet {
    let torrent = make_torrent(file, "http://127.0.0.1:9/announce", 64 << 10).await;
    let seeder = Seeder::start(&work.join("seeder-state"), upload_bps).await;
    seeder
        .seed(&torrent, file.parent().expect("the file's folder"))
        .await;
    let hash = info_hash(&torrent);
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let link = format!("magnet:?xt=urn:btih:{hash}&dn={name}&x.pe={}", seeder.addr);
    SeededMagnet {
        seeder,
        torrent,
        hash,
        link,
    }
}

/// A seeder of `torrent`, whose data is in `dir`, uploading at most `upload_bps`.
pub async fn seed(work: &Path, torrent: &[u8], dir: &Path, upload_bps: Option<u32>) -> Seeder {
    let seeder = Seeder::start(&work.join("seeder-state"), upload_bps).await;
    seeder.seed(torrent, dir).await;
    seeder
}

/// Makes a `.torrent` of `path` (a file or a folder) announcing to `tracker`.
pub async fn make_torrent(path: &Path, tracker: &str, piece_length: u32) -> Vec<u8> {
    let t = librqbit::create_torrent(
        path,
        CreateTorrentOptions {
            name: None,
            trackers: vec![tracker.to_owned()],
            piece_length: Some(piece_length),
        },
        &BlockingSpawner::new(2),
    )
    .await
    .expect("create torrent");
    t.as_bytes().expect("torrent bytes").to_vec()
}

/// The hex info-hash of a `.torrent`.
pub fn info_hash(torrent: &[u8]) -> String {
    let t = librqbit::torrent_from_bytes(torrent).expect("parse torrent");
    t.info_hash.as_string()
}

/// A librqbit session seeding torrents from local data, upload limited to `upload_bps`.
pub struct Seeder {
    pub session: Arc<Session>,
    pub addr: SocketAddr,
}

impl Seeder {
    pub async fn start(dir: &Path, upload_bps: Option<u32>) -> Seeder {
        // A known port: it is what the seeder announces to the tracker.
        let port = super::free_port();
        let session = Session::new_with_opts(
            dir.to_owned(),
            SessionOptions {
                dht: None,
                disable_local_service_discovery: true,
                persistence: None,
                listen: Some(ListenerOptions {
                    listen_addr: (Ipv4Addr::LOCALHOST, port).into(),
                    announce_port: Some(port),
                    ..Default::default()
                }),
                ratelimits: LimitsConfig {
                    upload_bps: upload_bps.and_then(NonZeroU32::new),
                    download_bps: None,
                },
                ..Default::default()
            },
        )
        .await
        .expect("seeder session");
        let addr = session.listen_addr().expect("seeder listens");
        Seeder { session, addr }
    }

    /// Seeds `torrent` whose data is in `folder`; waits until it checked the data.
    pub async fn seed(&self, torrent: &[u8], folder: &Path) {
        let handle = self
            .session
            .add_torrent(
                AddTorrent::from_bytes(torrent.to_vec()),
                Some(AddTorrentOptions {
                    output_folder: Some(folder.to_string_lossy().into_owned()),
                    overwrite: true,
                    ..Default::default()
                }),
            )
            .await
            .expect("seed torrent")
            .into_handle()
            .expect("handle");
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            handle.wait_until_completed(),
        )
        .await
        .expect("seeder check in time")
        .expect("seeder has all data");
    }
}
