//! Shared by the end-to-end tests: the real binary on a free loopback port with a temp data
//! dir, and the external programs the tests drive.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_torrentdrive");

/// Whether `program` can be run. Missing programs fail the test under CI (`CI=true`), and
/// skip it elsewhere with a note.
pub fn have(program: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("`{program}` is required for this test (CI=true): install it (see .ci/run)");
        }
        eprintln!("skipping: `{program}` is not installed");
    }
    found
}

/// Waits until the daemon answers on `addr` and its control socket exists; false if it
/// exited first (its port was taken).
fn wait_until_serving(child: &mut Child, addr: SocketAddr, data: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if data.join("control.sock").exists() && TcpStream::connect(addr).is_ok() {
            // Still ours: a process that lost the port race exits at once.
            std::thread::sleep(Duration::from_millis(20));
            if child.try_wait().ok().flatten().is_none() {
                return true;
            }
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "torrentdrive did not start listening"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `torrentdrive serve`; killed when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub addr: SocketAddr,
    pub data: PathBuf,
    pub admin_password: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Starts a daemon on a new data dir with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut s = Server::start_in_with(&data, extra);
        s._dir = Some(dir);
        s
    }

    /// Starts a daemon on an existing (or new) data dir.
    pub fn start_in(data: &Path) -> Server {
        Server::start_in_with(data, &[])
    }

    pub fn start_in_with(data: &Path, extra: &[&str]) -> Server {
        // A port picked here may be taken by another test's process before the daemon binds
        // it: then the daemon exits, and we try again with another.
        for _ in 0..5 {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            // Tests run side by side: no fixed metrics port unless the test picks one.
            let metrics: &[&str] = if extra.contains(&"--metrics-listen") {
                &[]
            } else {
                &["--metrics-listen", "off"]
            };
            let mut child = Command::new(BIN)
                .args(["--data"])
                .arg(data)
                .args(["serve", "--listen", &addr.to_string()])
                // No DHT or LSD on a test machine; peers come from the tests.
                .args(["--torrent-listen", "127.0.0.1:0", "--no-dht", "--no-lsd"])
                .args(metrics)
                .args(extra)
                .env(
                    "RUST_LOG",
                    std::env::var("TD_TEST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .spawn()
                .expect("start torrentdrive");
            if wait_until_serving(&mut child, addr, data) {
                let admin_password = std::fs::read_to_string(data.join("admin-password"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
                return Server {
                    child: Some(child),
                    addr,
                    data: data.to_owned(),
                    admin_password,
                    _dir: None,
                };
            }
        }
        panic!("torrentdrive did not start");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/dav{}", self.addr, path)
    }

    /// Runs the CLI against this server's data dir.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        cli(&self.data, args, stdin)
    }

    /// Adds a user with a password and optional quota.
    pub fn add_user(&self, name: &str, password: &str, quota: Option<&str>) {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        if let Some(q) = quota {
            args.extend(["--quota", q]);
        }
        let out = self.cli(&args, Some(password));
        assert!(
            out.status.success(),
            "user add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// PUTs `data` at `path` over WebDAV with `creds` (`user:password`); the status.
    pub fn put(&self, creds: &str, path: &str, data: &[u8]) -> u16 {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("upload");
        std::fs::write(&file, data).expect("write");
        curl(&[
            "-u",
            creds,
            "-T",
            file.to_str().expect("path"),
            &self.url(path),
        ])
        .0
    }

    /// Peak resident memory of the daemon, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().map(|c| c.id()).expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Stops the daemon with `signal` and returns its exit status.
    pub fn stop(&mut self, signal: i32) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run torrentdrive");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        writeln!(w, "{input}").expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

/// Runs curl with `args`; returns (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-S", "--path-as-is", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let mut body = out.stdout;
    let split = body.iter().rposition(|&b| b == b'\n').expect("status line");
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

/// `user:password` for curl's `-u`.
pub fn creds(user: &str, password: &str) -> String {
    format!("{user}:{password}")
}

/// A small tmpfs, mounted for a test that fills a disk; unmounted when dropped.
pub struct Tmpfs {
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`24m`) at `dir/small`. Needs root: `None` (the test skips)
    /// without it, except under CI, where that fails.
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("this test mounts a small tmpfs and needs root under CI");
            }
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let path = dir.join("small");
        std::fs::create_dir(&path).expect("mkdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mounting a tmpfs failed");
        Some(Tmpfs { path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
