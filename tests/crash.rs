//! Crash safety: the daemon is killed with SIGKILL at random moments during a mixed workload
//! (uploads, overwrites, renames, copies, deletes, folders, torrent downloads and reads of
//! them), many times in a row on one data dir, and restarted each time; some rounds also
//! kill it again while it starts. After every restart:
//!
//! - the daemon starts (the database opens);
//! - every file the model says must exist is there with its exact bytes: an operation that
//!   was answered with success happened, one answered with a failure did not, and one whose
//!   answer never came (in flight at the kill) either happened completely or not at all;
//! - nothing else is visible: no partial file, no leftover, no duplicate;
//! - quotas add up: the user's `quota-used-bytes` is the sum of the lengths of all files in
//!   the drive (torrent files count their full size), and `user list` counts every node;
//! - no staging file is left in `data/tmp`; a dropped `.torrent` is picked up.
//!
//! Reads of the torrents while they download only ever return the seeded bytes. At the end
//! every torrent resumes and finishes with the right bytes, and is still complete after one
//! more kill with no seeder left.
//!
//! One outcome between "done" and "not done" is allowed, because dav-server does it in
//! several steps (as RFC 4918 describes it): a recursive DELETE removes entries one by one,
//! children first. A MOVE over an existing file is atomic: the old destination is never
//! lost with the source still in place.
//!
//! The downloads make little progress during the rounds: librqbit saves a torrent's
//! bitfield every 16 MiB downloaded, so a kill loses what came since; they finish after
//! the last restart.
//!
//! `TD_CRASH_ROUNDS` sets the number of kill/restart rounds (default 50), `TD_CRASH_SEED`
//! the base seed (hex; each round prints its own). `TD_CRASH_TOLERATE_READ_FAILURES=1`
//! counts reads of a torrent that fail while the daemon runs instead of failing the test
//! (to run many rounds past that bug). The timing of a kill is random, so a
//! seed reproduces the workload and the kill delays, not the exact moment a kill lands.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use common::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USER: &str = "crash";
const PASSWORD: &str = "crash-password";
/// 30 MiB of torrents and three workers of about `WORKER_BUDGET` each: a little short, so
/// that some uploads and copies are refused (507) and must leave nothing behind.
const QUOTA: &str = "56M";
const WORKERS: usize = 3;
/// Clients reading the torrents' files while they download.
const READERS: usize = 2;
const DEFAULT_ROUNDS: usize = 50;
/// Bytes a worker's files may hold before it starts deleting.
const WORKER_BUDGET: u64 = 10 << 20;
/// Files up to this size are stored inside the database, larger ones as blobs.
const INLINE_MAX: usize = 16 * 1024;
/// The seeder's upload limit: the downloads run through many rounds.
const SEED_RATE: u32 = 2 << 20;
const TORRENTS: [(&str, usize); 3] = [
    ("alpha.bin", 12 << 20),
    ("beta.bin", 10 << 20),
    ("gamma.bin", 8 << 20),
];

// ---------------------------------------------------------------------------------------
// Deterministic randomness and content.

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// In `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The bytes of content `id`: pseudo-random, different for every id.
fn content_bytes(id: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = splitmix(id ^ 0xC0FF_EE00_D15C_0000) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A size for a new upload: empty, around the inline limit, small, medium or up to 3 MiB.
fn upload_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=7 => 0,
        8..=14 => *rng.pick(&[INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1]),
        15..=39 => rng.range(1, INLINE_MAX as u64) as usize,
        40..=74 => rng.range(INLINE_MAX as u64 + 1, 1 << 20) as usize,
        _ => rng.range(1 << 20, 3 << 20) as usize,
    }
}

// ---------------------------------------------------------------------------------------
// The model.

/// A node of a worker's tree: a folder, or a file with content id.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

/// A worker's tree: paths below `/dav/` (`w0/f-1-2.bin`), without the worker's own folder.
type State = BTreeMap<String, Node>;

/// What the drive shows: folders, and files with their bytes.
#[derive(Debug)]
enum Seen {
    Dir,
    File(Vec<u8>),
}

type Observed = BTreeMap<String, Seen>;

/// Every content created, by id.
type Contents = Mutex<HashMap<u64, Arc<Vec<u8>>>>;

#[derive(Clone, Debug)]
enum Op {
    /// PUT of new content to a new or an existing file.
    Put {
        path: String,
        content: u64,
    },
    Mkcol {
        path: String,
    },
    /// DELETE of a file or (recursively) a folder.
    Delete {
        path: String,
    },
    /// MOVE of a file or folder to a new name, or of a file over another one (Overwrite: T).
    Move {
        from: String,
        to: String,
    },
    /// COPY of a file to a new name.
    Copy {
        from: String,
        to: String,
    },
}

impl Op {
    fn describe(&self, contents: &HashMap<u64, Arc<Vec<u8>>>) -> String {
        match self {
            Op::Put { path, content } => {
                let len = contents.get(content).map_or(0, |c| c.len());
                format!("PUT {path} ({len} bytes, content #{content})")
            }
            Op::Mkcol { path } => format!("MKCOL {path}"),
            Op::Delete { path } => format!("DELETE {path}"),
            Op::Move { from, to } => format!("MOVE {from} -> {to}"),
            Op::Copy { from, to } => format!("COPY {from} -> {to}"),
        }
    }
}

fn under(path: &str, dir: &str) -> bool {
    path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/'
}

fn remove_tree(state: &mut State, path: &str) {
    state.retain(|k, _| k != path && !under(k, path));
}

/// The state after `op` completed.
fn apply(before: &State, op: &Op) -> State {
    let mut s = before.clone();
    match op {
        Op::Put { path, content } => {
            s.insert(path.clone(), Node::File(*content));
        }
        Op::Mkcol { path } => {
            s.insert(path.clone(), Node::Dir);
        }
        Op::Delete { path } => remove_tree(&mut s, path),
        Op::Move { from, to } => {
            remove_tree(&mut s, to);
            let moved: Vec<(String, Node)> = s
                .iter()
                .filter(|(k, _)| *k == from || under(k, from))
                .map(|(k, v)| (format!("{to}{}", &k[from.len()..]), v.clone()))
                .collect();
            remove_tree(&mut s, from);
            s.extend(moved);
        }
        Op::Copy { from, to } => {
            let node = s[from].clone();
            s.insert(to.clone(), node);
        }
    }
    s
}

/// Whether the drive shows exactly `expected`.
fn matches(expected: &State, observed: &Observed, contents: &HashMap<u64, Arc<Vec<u8>>>) -> bool {
    expected.len() == observed.len()
        && expected.iter().zip(observed).all(|((ek, ev), (ok, ov))| {
            ek == ok
                && match (ev, ov) {
                    (Node::Dir, Seen::Dir) => true,
                    (Node::File(id), Seen::File(bytes)) => contents[id].as_slice() == bytes,
                    _ => false,
                }
        })
}

/// How `observed` differs from `expected`, path by path.
fn diff(expected: &State, observed: &Observed, contents: &HashMap<u64, Arc<Vec<u8>>>) -> String {
    let mut out = Vec::new();
    for (k, v) in expected {
        match (v, observed.get(k)) {
            (Node::Dir, None) => out.push(format!("folder {k} missing")),
            (Node::File(id), None) => out.push(format!(
                "file {k} missing (content #{id}, {} bytes)",
                contents[id].len()
            )),
            (Node::Dir, Some(Seen::File(_))) => out.push(format!("{k} is a file, not a folder")),
            (Node::File(_), Some(Seen::Dir)) => out.push(format!("{k} is a folder, not a file")),
            (Node::File(id), Some(Seen::File(bytes))) => {
                let want = &contents[id];
                if want.as_slice() != bytes {
                    let first = bytes.iter().zip(want.iter()).position(|(a, b)| a != b);
                    out.push(format!(
                        "file {k}: {} bytes where content #{id} has {}; first difference at {first:?}; zero bytes: {}",
                        bytes.len(),
                        want.len(),
                        bytes.iter().filter(|&&b| b == 0).count()
                    ));
                }
            }
            (Node::Dir, Some(Seen::Dir)) => {}
        }
    }
    for (k, v) in observed {
        if !expected.contains_key(k) {
            let what = match v {
                Seen::Dir => "folder".to_owned(),
                Seen::File(b) => format!("file of {} bytes", b.len()),
            };
            out.push(format!("unexpected {what} {k}"));
        }
    }
    if out.is_empty() {
        "no difference".into()
    } else {
        out.join("; ")
    }
}

/// The state the drive shows if it is one `op` may leave when it was in flight at the kill
/// (or `before` itself without `op`): the name of that outcome and the state.
fn explain(
    before: &State,
    op: Option<&Op>,
    observed: &Observed,
    contents: &HashMap<u64, Arc<Vec<u8>>>,
) -> Result<(&'static str, State), String> {
    let Some(op) = op else {
        return if matches(before, observed, contents) {
            Ok(("as acknowledged", before.clone()))
        } else {
            Err(format!(
                "differs from the acknowledged state: {}",
                diff(before, observed, contents)
            ))
        };
    };
    // A MOVE over an existing file is one rename in the drive (dav/src/moves.rs): done or
    // not, never the destination deleted with the source still there.
    let candidates = vec![("not done", before.clone()), ("done", apply(before, op))];
    for (what, state) in &candidates {
        if matches(state, observed, contents) {
            return Ok((what, state.clone()));
        }
    }
    // A recursive DELETE removes entries one by one, children first: any subset of the
    // tree may be gone, as long as no folder is gone while something below it remains.
    if let Op::Delete { path } = op {
        if before.get(path) == Some(&Node::Dir) {
            let same = observed.iter().all(|(k, v)| match (before.get(k), v) {
                (Some(Node::Dir), Seen::Dir) => true,
                (Some(Node::File(id)), Seen::File(b)) => contents[id].as_slice() == b,
                _ => false,
            });
            let gone: Vec<&String> = before
                .keys()
                .filter(|k| !observed.contains_key(*k))
                .collect();
            let only_below = gone.iter().all(|k| *k == path || under(k, path));
            let closed = gone
                .iter()
                .all(|g| before[*g] != Node::Dir || !observed.keys().any(|k| under(k, g)));
            if same && only_below && closed {
                let state = before
                    .iter()
                    .filter(|(k, _)| observed.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                return Ok(("partly deleted", state));
            }
        }
    }
    Err(format!(
        "is no outcome of `{}` in flight at the kill; against not done: {}; against done: {}",
        op.describe(contents),
        diff(&candidates[0].1, observed, contents),
        diff(&candidates[1].1, observed, contents)
    ))
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// curl with a time limit (a kill never makes a request hang, but a bug might).
fn curl_t(args: &[&str]) -> (u16, Vec<u8>) {
    let mut all = vec!["--max-time", "60"];
    all.extend_from_slice(args);
    curl(&all)
}

/// Whether the daemon at `base` (`http://ADDR/dav/`) still answers. A request cut off by
/// the kill finds it dead: the kill is what closed the connection.
fn alive(base: &str) -> bool {
    curl(&["--max-time", "10", "-o", "/dev/null", "-I", base]).0 != 0
}

const PROPFIND_BODY: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
<D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/><D:getcontentlength/>\
<D:quota-used-bytes/></D:prop></D:propfind>";

/// An entry of a PROPFIND answer.
struct Listed {
    /// Below `/dav/`, without leading or trailing slash.
    path: String,
    dir: bool,
    size: u64,
    quota_used: Option<u64>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<D:{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</D:{name}>"))? + start;
    Some(&xml[start..end])
}

fn parse_multistatus(xml: &str) -> Result<Vec<Listed>, String> {
    let mut out = Vec::new();
    for resp in xml.split("<D:response>").skip(1) {
        let href = tag(resp, "href").ok_or_else(|| format!("no href in {resp}"))?;
        let path = percent_decode(href);
        let path = path
            .strip_prefix("/dav")
            .ok_or_else(|| format!("href {href} outside /dav"))?
            .trim_matches('/')
            .to_owned();
        let dir = resp.contains("<D:collection/>");
        let size = match tag(resp, "getcontentlength") {
            Some(v) => v.parse().map_err(|_| format!("bad length {v}"))?,
            None if dir => 0,
            None => return Err(format!("no length for file {path}")),
        };
        let quota_used = tag(resp, "quota-used-bytes").and_then(|v| v.parse().ok());
        out.push(Listed {
            path,
            dir,
            size,
            quota_used,
        });
    }
    Ok(out)
}

fn dav_url(server: &Server, path: &str) -> String {
    if path.is_empty() {
        server.url("/")
    } else {
        server.url(&format!("/{path}"))
    }
}

fn propfind(server: &Server, u: &str, path: &str) -> Result<Vec<Listed>, String> {
    let url = if path.is_empty() {
        server.url("/")
    } else {
        server.url(&format!("/{path}/"))
    };
    let (code, body) = curl_t(&[
        "-u",
        u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "-H",
        "Content-Type: application/xml",
        "--data-binary",
        PROPFIND_BODY,
        &url,
    ]);
    if code != 207 {
        return Err(format!(
            "PROPFIND /{path}/ answered {code}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    parse_multistatus(&String::from_utf8_lossy(&body))
}

/// Every entry of the drive: path → (folder, length).
type Entries = BTreeMap<String, (bool, u64)>;

/// Every entry of the drive, and the quota used the root reports.
fn walk(server: &Server, u: &str) -> Result<(Entries, u64), String> {
    let mut entries = BTreeMap::new();
    let mut quota_used = None;
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let listed = propfind(server, u, &dir)?;
        let mut listed = listed.into_iter();
        let me = listed
            .next()
            .ok_or_else(|| format!("empty PROPFIND of /{dir}/"))?;
        if me.path != dir || !me.dir {
            return Err(format!("PROPFIND of /{dir}/ starts with /{}", me.path));
        }
        if dir.is_empty() {
            quota_used = me.quota_used;
        }
        for e in listed {
            if e.dir {
                stack.push(e.path.clone());
            }
            if entries.insert(e.path.clone(), (e.dir, e.size)).is_some() {
                return Err(format!("/{} listed twice", e.path));
            }
        }
    }
    let used = quota_used.ok_or("no quota-used-bytes on the root")?;
    Ok((entries, used))
}

/// GETs every path with one curl (one connection): (status, body) each.
fn get_many(server: &Server, u: &str, paths: &[String], dir: &Path) -> Vec<(u16, Vec<u8>)> {
    if paths.is_empty() {
        return Vec::new();
    }
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--path-as-is", "--max-time", "120", "-u", u])
        .args(["-w", "%{http_code}\n"]);
    let files: Vec<PathBuf> = (0..paths.len())
        .map(|i| dir.join(format!("get-{i}")))
        .collect();
    for (p, f) in paths.iter().zip(&files) {
        let _ = std::fs::remove_file(f);
        cmd.arg(dav_url(server, p)).arg("-o").arg(f);
    }
    let out = cmd.output().expect("run curl");
    let codes: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect();
    files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // curl creates no file for an empty body.
            let body = std::fs::read(f).unwrap_or_default();
            let _ = std::fs::remove_file(f);
            (codes.get(i).copied().unwrap_or(0), body)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The workload.

/// One client working in its own folder `/w<id>/`, one request at a time.
struct Worker {
    id: usize,
    state: State,
    /// The request whose answer never came, if the last round ended in one.
    pending: Option<Op>,
    names: u64,
}

/// What a worker did in a round.
#[derive(Default)]
struct Report {
    done: usize,
    refused: usize,
    acked_puts: Vec<u64>,
}

struct RoundCtx<'a> {
    base: String,
    user: String,
    round: usize,
    tmp: PathBuf,
    contents: &'a Contents,
    next_content: &'a AtomicU64,
}

impl Worker {
    fn root(&self) -> String {
        format!("w{}", self.id)
    }

    fn fresh_name(&mut self, round: usize, prefix: &str) -> String {
        self.names += 1;
        format!("{prefix}-{round}-{}", self.names)
    }

    fn bytes(&self, contents: &HashMap<u64, Arc<Vec<u8>>>) -> u64 {
        self.state
            .values()
            .map(|n| match n {
                Node::File(id) => contents[id].len() as u64,
                Node::Dir => 0,
            })
            .sum()
    }

    /// The next request, picked from the current state.
    fn choose(&mut self, rng: &mut Rng, ctx: &RoundCtx) -> Op {
        let files: Vec<String> = self
            .state
            .iter()
            .filter(|(_, n)| matches!(n, Node::File(_)))
            .map(|(k, _)| k.clone())
            .collect();
        let dirs: Vec<String> = self
            .state
            .iter()
            .filter(|(_, n)| **n == Node::Dir)
            .map(|(k, _)| k.clone())
            .collect();
        let mut folders = vec![self.root()];
        folders.extend(dirs.iter().cloned());
        let used = self.bytes(&ctx.contents.lock().unwrap());
        if used > WORKER_BUDGET {
            // Over budget: delete (a file mostly, sometimes a folder).
            if !dirs.is_empty() && rng.below(5) == 0 {
                return Op::Delete {
                    path: rng.pick(&dirs).clone(),
                };
            }
            return Op::Delete {
                path: rng.pick(&files).clone(),
            };
        }
        let roll = rng.below(100);
        let round = ctx.round;
        match roll {
            35..=44 if !files.is_empty() => {
                let path = rng.pick(&files).clone();
                self.new_put(rng, ctx, path)
            }
            45..=57 if !files.is_empty() => {
                let from = rng.pick(&files).clone();
                let to = format!("{}/{}.bin", rng.pick(&folders), self.fresh_name(round, "m"));
                Op::Move { from, to }
            }
            58..=62 if files.len() >= 2 => {
                let from = rng.pick(&files).clone();
                let to = rng.pick(&files).clone();
                if from == to {
                    let path = format!("{}/{}.bin", self.root(), self.fresh_name(round, "f"));
                    return self.new_put(rng, ctx, path);
                }
                Op::Move { from, to }
            }
            63..=67 if !files.is_empty() => {
                let from = rng.pick(&files).clone();
                let to = format!("{}/{}.bin", rng.pick(&folders), self.fresh_name(round, "c"));
                Op::Copy { from, to }
            }
            68..=82 if !files.is_empty() => Op::Delete {
                path: rng.pick(&files).clone(),
            },
            83..=88 => {
                // At most two levels of folders below the worker's own.
                let shallow: Vec<String> = folders
                    .iter()
                    .filter(|f| f.matches('/').count() < 2)
                    .cloned()
                    .collect();
                let parent = rng.pick(&shallow).clone();
                Op::Mkcol {
                    path: format!("{parent}/{}", self.fresh_name(round, "d")),
                }
            }
            89..=93 if !dirs.is_empty() => Op::Delete {
                path: rng.pick(&dirs).clone(),
            },
            94..=99 if !dirs.is_empty() => Op::Move {
                from: rng.pick(&dirs).clone(),
                to: format!("{}/{}", self.root(), self.fresh_name(round, "d")),
            },
            _ => {
                let path = format!("{}/{}.bin", rng.pick(&folders), self.fresh_name(round, "f"));
                self.new_put(rng, ctx, path)
            }
        }
    }

    fn new_put(&mut self, rng: &mut Rng, ctx: &RoundCtx, path: String) -> Op {
        let id = ctx.next_content.fetch_add(1, Ordering::Relaxed);
        let bytes = content_bytes(id, upload_size(rng));
        ctx.contents.lock().unwrap().insert(id, Arc::new(bytes));
        Op::Put { path, content: id }
    }

    /// Sends `op`; its HTTP status, 0 when no answer came.
    fn send(&self, op: &Op, ctx: &RoundCtx) -> u16 {
        let url = |p: &str| format!("{}{p}", ctx.base);
        let u = ctx.user.as_str();
        match op {
            Op::Put { path, content } => {
                let file = ctx.tmp.join(format!("upload-{}", self.id));
                let bytes = ctx.contents.lock().unwrap()[content].clone();
                std::fs::write(&file, &*bytes).expect("write upload");
                curl_t(&["-u", u, "-T", file.to_str().expect("path"), &url(path)]).0
            }
            Op::Mkcol { path } => curl_t(&["-u", u, "-X", "MKCOL", &url(path)]).0,
            Op::Delete { path } => {
                let slash = if self.state.get(path) == Some(&Node::Dir) {
                    "/"
                } else {
                    ""
                };
                curl_t(&["-u", u, "-X", "DELETE", &url(&format!("{path}{slash}"))]).0
            }
            Op::Move { from, to } | Op::Copy { from, to } => {
                let method = if matches!(op, Op::Move { .. }) {
                    "MOVE"
                } else {
                    "COPY"
                };
                let replaces = self.state.contains_key(to);
                curl_t(&[
                    "-u",
                    u,
                    "-X",
                    method,
                    "-H",
                    &format!("Destination: {}", url(to)),
                    "-H",
                    if replaces {
                        "Overwrite: T"
                    } else {
                        "Overwrite: F"
                    },
                    &url(from),
                ])
                .0
            }
        }
    }

    /// Sends requests until one gets no answer (the daemon was killed).
    fn run(&mut self, ctx: &RoundCtx, mut rng: Rng) -> Result<Report, String> {
        let mut report = Report::default();
        assert!(self.pending.is_none());
        loop {
            let op = self.choose(&mut rng, ctx);
            let code = self.send(&op, ctx);
            match code {
                // No final answer: the daemon died with the request in flight (a 1xx is
                // curl's `Expect: 100-continue` answered before the kill).
                0..=199 => {
                    if alive(&ctx.base) {
                        return Err(format!(
                            "worker {}: `{}` got no answer ({code}) while the daemon kept running",
                            self.id,
                            op.describe(&ctx.contents.lock().unwrap())
                        ));
                    }
                    self.pending = Some(op);
                    return Ok(report);
                }
                // Over quota: refused, nothing changed.
                507 if matches!(op, Op::Put { .. } | Op::Copy { .. }) => report.refused += 1,
                200..=206 => {
                    if let Op::Put { content, .. } = &op {
                        report.acked_puts.push(*content);
                    }
                    self.state = apply(&self.state, &op);
                    report.done += 1;
                }
                _ => {
                    return Err(format!(
                        "worker {}: `{}` answered {code}, which the model does not expect",
                        self.id,
                        op.describe(&ctx.contents.lock().unwrap())
                    ))
                }
            }
        }
    }
}

/// What the torrent reader did in a round.
#[derive(Default)]
struct ReadReport {
    /// Ranges read completely and compared.
    full: usize,
    /// Ranges cut off by the kill; the bytes that came were compared.
    cut: usize,
    /// Reads that failed while the daemon ran, tolerated.
    failed: usize,
}

/// Reads random ranges of the torrents' files while they download (each read waits for
/// its pieces), and compares every byte that comes with the seeded file. `known` torrents
/// were picked up before the round: their file must be there.
fn read_torrents(
    base: &str,
    u: &str,
    torrents: &[Torrent],
    known: usize,
    dropped: usize,
    mut rng: Rng,
) -> Result<ReadReport, String> {
    let mut report = ReadReport::default();
    if dropped == 0 {
        return Ok(report);
    }
    // A torrent dropped in this round is read as soon as its file appears.
    let mut appeared = known == dropped;
    loop {
        let i = if appeared {
            rng.below(dropped as u64) as usize
        } else {
            dropped - 1
        };
        let t = &torrents[i];
        let len = t.original.len() as u64;
        let want = rng.range(1, 512 << 10);
        let start = rng.below(len - want);
        let range = format!("{start}-{}", start + want - 1);
        let url = format!("{base}Downloads/{}", t.name);
        let (code, body) = curl_t(&["-u", u, "-r", &range, &url]);
        let expected = &t.original[start as usize..(start + want) as usize];
        match code {
            206 => {
                if body.len() > expected.len() || body[..] != expected[..body.len()] {
                    let first = body.iter().zip(expected).position(|(a, b)| a != b);
                    return Err(format!(
                        "GET /Downloads/{} range {range}: {} bytes that are not the seeded ones (first difference at {first:?}, zero bytes: {})",
                        t.name,
                        body.len(),
                        body.iter().filter(|&&b| b == 0).count()
                    ));
                }
                appeared = true;
                if body.len() == expected.len() {
                    report.full += 1;
                    continue;
                }
            }
            0..=199 => {}
            404 if i >= known => continue,
            _ => {
                return Err(format!(
                    "GET /Downloads/{} range {range} answered {code}",
                    t.name
                ))
            }
        }
        // Cut off, or no answer: only the kill may do that this early (the read timeout is
        // 60 s).
        if alive(base) {
            if std::env::var("TD_CRASH_TOLERATE_READ_FAILURES").is_ok_and(|v| v == "1") {
                eprintln!(
                    "tolerated (TD_CRASH_TOLERATE_READ_FAILURES=1): GET /Downloads/{} range {range} failed ({code}, {} of {want} bytes) while the daemon kept running",
                    t.name,
                    body.len()
                );
                report.failed += 1;
                return Ok(report);
            }
            return Err(format!(
                "GET /Downloads/{} range {range} failed ({code}, {} of {want} bytes) while the \
                 daemon kept running: a read of a torrent file must wait for its data, not fail \
                 (look for \"the torrent is not in the engine\" in the daemon's log above: a \
                 read between the pick-up's commit and the engine's add)",
                t.name,
                body.len()
            ));
        }
        report.cut += 1;
        return Ok(report);
    }
}

// ---------------------------------------------------------------------------------------
// The test.

struct Torrent {
    name: &'static str,
    torrent: Vec<u8>,
    original: Vec<u8>,
}

impl Torrent {
    fn drop_name(&self) -> String {
        format!("{}.torrent", self.name.trim_end_matches(".bin"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    if !have("curl") {
        return;
    }
    let rounds: usize = std::env::var("TD_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    let base_seed: u64 = std::env::var("TD_CRASH_SEED")
        .ok()
        .and_then(|v| {
            let v = v.trim_start_matches("0x");
            u64::from_str_radix(v, 16).ok()
        })
        .unwrap_or(0x7D_C4A5);
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let seed_dir = work.path().join("seed");
    swarm::write_files(&seed_dir, &TORRENTS);
    let seeder = swarm::Seeder::start(&work.path().join("seeder-state"), Some(SEED_RATE)).await;
    let mut torrents = Vec::new();
    for (name, _) in TORRENTS {
        let path = seed_dir.join(name);
        let torrent = swarm::make_torrent(&path, &tracker.url, 256 << 10).await;
        seeder.seed(&torrent, &seed_dir).await;
        torrents.push(Torrent {
            name,
            torrent,
            original: std::fs::read(&path).expect("read"),
        });
    }
    let data = work.path().join("data");
    let tmp = work.path().join("client");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let runtime = tokio::runtime::Handle::current();
    let session = seeder.session.clone();
    let seeder_addr = seeder.addr;
    let stop_seeder = move || {
        runtime.block_on(session.stop());
        assert!(
            std::net::TcpStream::connect(seeder_addr).is_err(),
            "the seeder still accepts peers"
        );
    };
    let result = tokio::task::spawn_blocking(move || {
        crash_rounds(&data, &tmp, &torrents, rounds, base_seed, stop_seeder)
    })
    .await;
    drop(seeder);
    drop(tracker);
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Counters over the whole run.
#[derive(Default)]
struct Totals {
    ops: usize,
    refused: usize,
    in_flight: usize,
    /// Outcomes of requests in flight at a kill, by name.
    outcomes: BTreeMap<String, usize>,
    acked_puts: HashSet<u64>,
    /// Acknowledged uploads whose bytes were read back intact after a kill.
    uploads_checked: HashSet<u64>,
    file_checks: usize,
    torrent_reads: usize,
    torrent_reads_cut: usize,
    torrent_reads_failed: usize,
    early_kills: usize,
}

fn crash_rounds(
    data: &Path,
    tmp: &Path,
    torrents: &[Torrent],
    rounds: usize,
    base_seed: u64,
    stop_seeder: impl FnOnce(),
) {
    let started = Instant::now();
    let mut server = Server::start_in(data);
    server.add_user(USER, PASSWORD, Some(QUOTA));
    let u = creds(USER, PASSWORD);
    let mut workers: Vec<Worker> = (0..WORKERS)
        .map(|id| Worker {
            id,
            state: State::new(),
            pending: None,
            names: 0,
        })
        .collect();
    for w in &workers {
        let (code, _) = curl_t(&["-u", &u, "-X", "MKCOL", &dav_url(&server, &w.root())]);
        assert_eq!(code, 201, "MKCOL /{}", w.root());
    }
    let contents: Contents = Mutex::new(HashMap::new());
    let next_content = AtomicU64::new(1);
    let mut dropped = 0;
    let mut totals = Totals::default();
    eprintln!(
        "crash test: {rounds} rounds, base seed {base_seed:#x} (TD_CRASH_ROUNDS, TD_CRASH_SEED), data dir {}",
        data.display()
    );

    for round in 0..rounds {
        let seed = base_seed ^ splitmix(round as u64);
        let mut rng = Rng::new(seed);
        // One torrent dropped at the start of each of the first rounds: a kill may land
        // while it is picked up.
        let known = dropped;
        if dropped < torrents.len() && round == dropped {
            let t = &torrents[dropped];
            let file = tmp.join("drop.torrent");
            std::fs::write(&file, &t.torrent).expect("write");
            let url = dav_url(&server, &format!("Add/{}", t.drop_name()));
            let (code, _) = curl_t(&["-u", &u, "-T", file.to_str().expect("path"), &url]);
            assert_eq!(code, 201, "round {round}: dropping {}", t.drop_name());
            dropped += 1;
        }
        let run_ms = if rng.below(8) == 0 {
            rng.range(0, 50)
        } else {
            rng.range(50, 400)
        };
        let base = server.url("/");
        let mut failures = Vec::new();
        let mut reports = Vec::new();
        let mut reads = ReadReport::default();
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..READERS as u64)
                .map(|r| {
                    let (base, u) = (base.clone(), u.clone());
                    let rrng = Rng::new(seed ^ splitmix(2000 + r));
                    s.spawn(move || read_torrents(&base, &u, torrents, known, dropped, rrng))
                })
                .collect();
            let handles: Vec<_> = workers
                .iter_mut()
                .map(|w| {
                    let ctx = RoundCtx {
                        base: base.clone(),
                        user: u.clone(),
                        round,
                        tmp: tmp.to_owned(),
                        contents: &contents,
                        next_content: &next_content,
                    };
                    let wrng = Rng::new(seed ^ splitmix(1000 + w.id as u64));
                    s.spawn(move || w.run(&ctx, wrng))
                })
                .collect();
            std::thread::sleep(Duration::from_millis(run_ms));
            server.stop(libc::SIGKILL);
            for h in handles {
                match h.join() {
                    Ok(Ok(r)) => reports.push(r),
                    Ok(Err(e)) => failures.push(e),
                    Err(_) => failures.push("a worker panicked".into()),
                }
            }
            for reader in readers {
                match reader.join() {
                    Ok(Ok(r)) => {
                        reads.full += r.full;
                        reads.cut += r.cut;
                        reads.failed += r.failed;
                    }
                    Ok(Err(e)) => failures.push(e),
                    Err(_) => failures.push("a torrent reader panicked".into()),
                }
            }
        });
        totals.torrent_reads += reads.full;
        totals.torrent_reads_cut += reads.cut;
        totals.torrent_reads_failed += reads.failed;
        let in_flight: Vec<String> = workers
            .iter()
            .filter_map(|w| {
                w.pending
                    .as_ref()
                    .map(|op| op.describe(&contents.lock().unwrap()))
            })
            .collect();
        for r in &reports {
            totals.ops += r.done;
            totals.refused += r.refused;
            totals.acked_puts.extend(&r.acked_puts);
        }
        totals.in_flight += in_flight.len();
        let done: usize = reports.iter().map(|r| r.done).sum();
        assert!(
            failures.is_empty(),
            "round {round} (seed {seed:#x}): {}",
            failures.join("\n")
        );

        // Sometimes killed again while it starts (the database recovering from the kill, the
        // engine restoring its torrents, drops being picked up), before it serves.
        let early_kill = (rng.below(5) == 0).then(|| rng.range(0, 200));
        if let Some(ms) = early_kill {
            kill_while_starting(data, Duration::from_millis(ms));
        }
        // The daemon must start again on the data dir it was killed on.
        server = match std::panic::catch_unwind(|| Server::start_in(data)) {
            Ok(s) => s,
            Err(_) => {
                let out = cli(data, &["user", "list"], None);
                panic!(
                    "round {round} (seed {seed:#x}): the daemon does not start after SIGKILL \
                     ({run_ms} ms into the round; in flight: {in_flight:?}); `user list` on the \
                     data dir says: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            }
        };
        let summary = verify(
            &server,
            &u,
            tmp,
            torrents,
            dropped,
            &mut workers,
            &contents,
            &mut totals,
        )
        .unwrap_or_else(|e| {
            panic!(
                "round {round} (seed {seed:#x}, killed {run_ms} ms into the round, {done} \
                 requests answered, in flight: {in_flight:?}):\n{e}"
            )
        });
        totals.early_kills += usize::from(early_kill.is_some());
        eprintln!(
            "round {round:>3} seed {seed:#018x}: killed after {run_ms:>3} ms{}, {done:>3} answered, \
             {} in flight, {} torrent ranges read; {summary}",
            early_kill.map_or(String::new(), |ms| format!(" and {ms} ms into its start")),
            in_flight.len(),
            reads.full + reads.cut
        );
        // Forget contents no file has any more.
        let live: HashSet<u64> = workers
            .iter()
            .flat_map(|w| w.state.values())
            .filter_map(|n| match n {
                Node::File(id) => Some(*id),
                Node::Dir => None,
            })
            .collect();
        contents.lock().unwrap().retain(|id, _| live.contains(id));
    }

    // Every transfer resumes and finishes, with the right bytes.
    let rounds_took = started.elapsed();
    let finished_in =
        wait_finished(&server, dropped, Duration::from_secs(90)).unwrap_or_else(|states| {
            panic!("the transfers did not finish within 90 s of the last restart: {states:?}")
        });
    check_torrent_bytes(&server, &u, tmp, &torrents[..dropped], "after the restarts");

    // A completed torrent is not downloaded again: killed once more with no seeder left,
    // the daemon has every byte of it from disk.
    stop_seeder();
    server.stop(libc::SIGKILL);
    let server = Server::start_in(data);
    let summary = verify(
        &server,
        &u,
        tmp,
        torrents,
        dropped,
        &mut workers,
        &contents,
        &mut totals,
    )
    .unwrap_or_else(|e| panic!("after the final kill, with every transfer complete:\n{e}"));
    eprintln!("final kill with the transfers complete and no seeder: {summary}");
    wait_finished(&server, dropped, Duration::from_secs(30)).unwrap_or_else(|states| {
        panic!(
            "completed transfers are not complete after a kill (no peer has the data any more): {states:?}"
        )
    });
    check_torrent_bytes(
        &server,
        &u,
        tmp,
        &torrents[..dropped],
        "after a kill with no seeder",
    );

    // Blobs left behind by kills (README: removed by a janitor later); fewer than the
    // model references would mean lost data, which the reads above would have caught.
    let on_disk = count_blobs(&data.join("blobs"));
    let contents = contents.lock().unwrap();
    let referenced: HashSet<u64> = workers
        .iter()
        .flat_map(|w| w.state.values())
        .filter_map(|n| match n {
            Node::File(id) if contents[id].len() > INLINE_MAX => Some(*id),
            _ => None,
        })
        .collect();
    assert!(
        on_disk >= referenced.len(),
        "{on_disk} blobs on disk, {} referenced",
        referenced.len()
    );
    eprintln!(
        "crash test: {rounds} rounds ({} also killed while starting) in {:.1} s, {} requests answered ({} refused over quota), {} in flight at a kill: {:?}",
        totals.early_kills,
        rounds_took.as_secs_f64(),
        totals.ops + totals.refused,
        totals.refused,
        totals.in_flight,
        totals.outcomes
    );
    eprintln!(
        "crash test: {} acknowledged uploads, {} file reads compared, {} torrent ranges read intact during the rounds ({} more cut off by a kill, {} failed with the daemon running); torrents finished {:.1} s after the last restart and read back intact, again after a kill with no seeder; {} blobs on disk for {} referenced ({} orphaned by kills)",
        totals.acked_puts.len(),
        totals.file_checks,
        totals.torrent_reads,
        totals.torrent_reads_cut,
        totals.torrent_reads_failed,
        finished_in.as_secs_f64(),
        on_disk,
        referenced.len(),
        on_disk - referenced.len()
    );
    eprintln!(
        "crash test: {rounds} rounds, {} uploads checked",
        totals.uploads_checked.len()
    );
}

/// Waits until the user's transfers are all seeding or completed; how long that took, or
/// their states when `within` ran out.
fn wait_finished(
    server: &Server,
    count: usize,
    within: Duration,
) -> Result<Duration, Vec<(String, String, f64)>> {
    let started = Instant::now();
    loop {
        let states = transfer_states(server);
        let finished = states
            .iter()
            .filter(|(_, state, _)| state == "seeding" || state == "completed")
            .count();
        if finished == count && states.len() == count {
            return Ok(started.elapsed());
        }
        if started.elapsed() > within {
            return Err(states);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Reads every torrent's file whole and compares it with the seeded one.
fn check_torrent_bytes(server: &Server, u: &str, tmp: &Path, torrents: &[Torrent], when: &str) {
    let paths: Vec<String> = torrents
        .iter()
        .map(|t| format!("Downloads/{}", t.name))
        .collect();
    for (t, (code, body)) in torrents.iter().zip(get_many(server, u, &paths, tmp)) {
        assert_eq!(code, 200, "GET /Downloads/{} {when}", t.name);
        assert!(
            body == t.original,
            "/Downloads/{} differs from the seeded file {when}: {} bytes of {}, first difference at {:?}",
            t.name,
            body.len(),
            t.original.len(),
            body.iter().zip(&t.original).position(|(a, b)| a != b)
        );
    }
}

/// Starts the daemon on `data` and kills it `after` that, before it serves.
fn kill_while_starting(data: &Path, after: Duration) {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--torrent-listen", "127.0.0.1:0", "--no-dht", "--no-lsd"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start torrentdrive");
    std::thread::sleep(after);
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

fn count_blobs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read_dir(e.path()).map_or(0, |f| f.count()))
                .sum()
        })
        .unwrap_or(0)
}

/// (name, state, progress %) of the user's transfers.
fn transfer_states(server: &Server) -> Vec<(String, String, f64)> {
    let out = server.cli(&["transfers", "--user", USER, "--json"], None);
    assert!(
        out.status.success(),
        "transfers: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("transfers json");
    json.as_array()
        .expect("an array")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["state"].as_str().unwrap_or_default().to_owned(),
                t["progress"].as_f64().unwrap_or(0.0),
            )
        })
        .collect()
}

/// The checks after a restart; a one-line summary, or what is wrong.
#[allow(clippy::too_many_arguments)]
fn verify(
    server: &Server,
    u: &str,
    tmp: &Path,
    torrents: &[Torrent],
    dropped: usize,
    workers: &mut [Worker],
    contents: &Contents,
    totals: &mut Totals,
) -> Result<String, String> {
    let mut problems = Vec::new();
    // Staging files of interrupted uploads are gone.
    let staging: Vec<_> = std::fs::read_dir(server.data.join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    if !staging.is_empty() {
        problems.push(format!("staging files left in data/tmp: {staging:?}"));
    }
    // Drops in /Add are picked up again after a kill: wait for that, so that nothing
    // changes the drive while it is checked.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: Vec<String> = propfind(server, u, "Add")?
            .into_iter()
            .skip(1)
            .filter(|e| e.path.ends_with(".torrent"))
            .map(|e| e.path)
            .collect();
        if waiting.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            problems.push(format!(
                "dropped files not picked up after 20 s: {waiting:?}"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let (entries, used) = walk(server, u)?;
    // Quotas add up: the bytes and the nodes.
    let files: Vec<(&String, u64)> = entries
        .iter()
        .filter(|(k, (dir, _))| !dir && *k != "Add/status.txt")
        .map(|(k, (_, len))| (k, *len))
        .collect();
    let sum: u64 = files.iter().map(|(_, len)| len).sum();
    if used != sum {
        problems.push(format!(
            "quota drift: quota-used-bytes is {used}, the files add up to {sum} ({} more)",
            used as i128 - sum as i128
        ));
    }
    let nodes = 1 + entries.len() - usize::from(entries.contains_key("Add/status.txt"));
    let list = server.cli(&["user", "list"], None);
    if !list.status.success() {
        problems.push(format!(
            "user list failed: {}",
            String::from_utf8_lossy(&list.stderr)
        ));
    }
    let listed = String::from_utf8_lossy(&list.stdout).into_owned();
    // The FILES column is right-aligned under its header.
    let files_end = listed
        .lines()
        .next()
        .and_then(|header| Some(header.find(" FILES")? + " FILES".len()));
    let listed_nodes: Option<usize> = files_end.and_then(|end| {
        let line = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(USER))?;
        line.get(..end)?.split_whitespace().last()?.parse().ok()
    });
    if files_end.is_none() {
        eprintln!("note: no FILES column in `user list`, node count not checked:\n{listed}");
    } else if listed_nodes != Some(nodes) {
        problems.push(format!(
            "node count drift: `user list` says {listed_nodes:?} files, the drive shows {nodes} nodes:\n{listed}"
        ));
    }

    // The fixed folders and the torrents: each dropped torrent is one complete-size file in
    // /Downloads, and nothing else is there.
    let mut expected_top: HashSet<String> = ["Add", "Downloads", "Add/status.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for t in &torrents[..dropped] {
        let path = format!("Downloads/{}", t.name);
        match entries.get(&path) {
            Some((false, len)) if *len == t.original.len() as u64 => {}
            other => problems.push(format!(
                "/{path} should be a file of {} bytes, is {other:?}",
                t.original.len()
            )),
        }
        expected_top.insert(path);
    }
    for w in workers.iter() {
        expected_top.insert(w.root());
    }
    for (k, (dir, len)) in &entries {
        let in_worker = workers.iter().any(|w| under(k, &w.root()));
        if !in_worker && !expected_top.contains(k) {
            problems.push(format!(
                "unexpected {} /{k} ({len} bytes)",
                if *dir { "folder" } else { "file" }
            ));
        }
    }

    // Every worker's files, read back and compared with the model.
    let mut checked = 0;
    let mut outcomes = Vec::new();
    for w in workers.iter_mut() {
        let root = w.root();
        let mine: Vec<(&String, &(bool, u64))> =
            entries.iter().filter(|(k, _)| under(k, &root)).collect();
        let paths: Vec<String> = mine
            .iter()
            .filter(|(_, (dir, _))| !dir)
            .map(|(k, _)| (*k).clone())
            .collect();
        let mut bodies = get_many(server, u, &paths, tmp).into_iter();
        let mut observed = Observed::new();
        for (k, (dir, len)) in mine {
            if *dir {
                observed.insert(k.clone(), Seen::Dir);
                continue;
            }
            let (code, body) = bodies.next().expect("a body per file");
            if code != 200 {
                problems.push(format!("/{k} is listed but GET answered {code}"));
            } else if body.len() as u64 != *len {
                problems.push(format!(
                    "/{k}: PROPFIND says {len} bytes, GET gave {}",
                    body.len()
                ));
            }
            observed.insert(k.clone(), Seen::File(body));
        }
        let all = contents.lock().unwrap();
        match explain(&w.state, w.pending.as_ref(), &observed, &all) {
            Ok((outcome, state)) => {
                if let Some(op) = &w.pending {
                    let kind = match op {
                        Op::Put { .. } => "PUT",
                        Op::Mkcol { .. } => "MKCOL",
                        Op::Delete { .. } => "DELETE",
                        Op::Move { .. } => "MOVE",
                        Op::Copy { .. } => "COPY",
                    };
                    let key = format!("{kind}: {outcome}");
                    outcomes.push(key.clone());
                    *totals.outcomes.entry(key).or_default() += 1;
                }
                for n in state.values() {
                    if let Node::File(id) = n {
                        checked += 1;
                        if totals.acked_puts.contains(id) {
                            totals.uploads_checked.insert(*id);
                        }
                    }
                }
                w.state = state;
                w.pending = None;
            }
            Err(e) => problems.push(format!(
                "/{root}/ {e}{}",
                match &w.pending {
                    Some(op) => format!(" (in flight: {})", op.describe(&all)),
                    None => String::new(),
                }
            )),
        }
    }
    totals.file_checks += checked;
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let progress: Vec<String> = transfer_states(server)
        .iter()
        .map(|(name, state, p)| format!("{name} {state} {p:.0}%"))
        .collect();
    Ok(format!(
        "{checked} files intact, {} B used; outcomes {outcomes:?}; {}",
        used,
        progress.join(", ")
    ))
}
