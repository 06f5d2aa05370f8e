//! The CLI with and without a running daemon, first start, and stopping.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn users_without_a_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let ok = |args: &[&str], stdin: Option<&str>| {
        let o = cli(&data, args, stdin);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    ok(
        &["user", "add", "alice", "--password-stdin", "--quota", "10G"],
        Some("alice-password"),
    );
    ok(
        &["user", "add", "bob", "--password-stdin"],
        Some("bob-password"),
    );
    let list = ok(&["user", "list"], None);
    assert!(
        list.contains("alice") && list.contains("10.0 GiB"),
        "{list}"
    );
    assert!(list.contains("bob") && list.contains("none"), "{list}");
    ok(&["user", "quota", "bob", "500M"], None);
    assert!(ok(&["user", "list"], None).contains("500.0 MiB"));
    ok(
        &["user", "passwd", "bob", "--password-stdin"],
        Some("new-bob-password"),
    );
    ok(&["user", "remove", "alice"], None);
    assert!(!ok(&["user", "list"], None).contains("alice"));

    // Clear errors.
    let o = cli(
        &data,
        &["user", "add", "bob", "--password-stdin"],
        Some("whatever-pw"),
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    let o = cli(
        &data,
        &["user", "add", "../x", "--password-stdin"],
        Some("whatever-pw"),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid user name"));
    let o = cli(
        &data,
        &["user", "add", "carol", "--password-stdin"],
        Some("short"),
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("at least 8"));
    let o = cli(&data, &["user", "quota", "bob", "lots"], None);
    assert!(!o.status.success());
    let o = cli(&data, &["user", "remove", "nobody"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no user"));
    assert_eq!(mode(&data), 0o700, "the data dir is private");

    // A daemon started on this data dir uses these users (no admin is created).
    let server = Server::start_in(&data);
    assert!(!data.join("admin-password").exists());
    if have("curl") {
        let (code, _) = curl(&["-u", "bob:new-bob-password", &server.url("/")]);
        assert_eq!(code, 200);
    }
}

#[test]
fn users_through_the_running_daemon() {
    let mut server = Server::start();
    let data = server.data.clone();
    assert_eq!(server.admin_password.len(), 20, "first start creates admin");
    assert_eq!(mode(&data.join("admin-password")), 0o600);
    assert_eq!(mode(&data.join("control.sock")), 0o600);

    server.add_user("carol", "carol-password", Some("1G"));
    let o = server.cli(&["user", "list"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list = stdout(&o);
    assert!(list.contains("admin") && list.contains("carol"), "{list}");
    if have("curl") {
        let (code, _) = curl(&[
            "-u",
            "carol:carol-password",
            "--data-binary",
            "x",
            "-X",
            "PUT",
            &server.url("/f"),
        ]);
        assert_eq!(code, 201);
        let admin = creds("admin", &server.admin_password);
        assert_eq!(curl(&["-u", &admin, &server.url("/")]).0, 200);
        let o = server.cli(
            &["user", "passwd", "carol", "--password-stdin"],
            Some("carol-password-2"),
        );
        assert!(o.status.success());
        assert_eq!(
            curl(&["-u", "carol:carol-password", &server.url("/f")]).0,
            401,
            "old password"
        );
        assert_eq!(
            curl(&["-u", "carol:carol-password-2", &server.url("/f")]).0,
            200
        );
        let o = server.cli(&["user", "remove", "carol"], None);
        assert!(o.status.success());
        assert_eq!(
            curl(&["-u", "carol:carol-password-2", &server.url("/f")]).0,
            401
        );
    }

    // SIGTERM: a clean stop, the socket is gone, and the CLI works on its own again.
    let status = server.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status:?}");
    assert!(!data.join("control.sock").exists());
    let o = cli(&data, &["user", "list"], None);
    assert!(o.status.success());
    assert!(!stdout(&o).contains("carol"));
}

#[test]
fn committed_uploads_survive_kill_9() {
    if !have("curl") {
        return;
    }
    let mut server = Server::start();
    server.add_user("k", "kill-password", None);
    let u = creds("k", "kill-password");
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..20 {
        let file = dir.path().join(format!("f{i}"));
        std::fs::write(&file, format!("file {i}").repeat(i * 1000 + 1)).expect("write");
        let (code, _) = curl(&[
            "-u",
            &u,
            "-T",
            file.to_str().expect("path"),
            &server.url(&format!("/f{i}")),
        ]);
        assert_eq!(code, 201);
    }
    server.stop(libc::SIGKILL);
    let server = Server::start_in(&server.data.clone());
    for i in 0..20 {
        let (code, body) = curl(&["-u", &u, &server.url(&format!("/f{i}"))]);
        assert_eq!(code, 200);
        assert_eq!(body, format!("file {i}").repeat(i * 1000 + 1).into_bytes());
    }
}

/// Starts `serve` on `data` with `env` and `args`; returns whether it listened on `port`.
fn serves_on(data: &std::path::Path, env: &[(&str, &str)], args: &[&str], port: u16) -> bool {
    let mut child = std::process::Command::new(BIN)
        .arg("--data")
        .arg(data)
        .arg("serve")
        .args(["--metrics-listen", "off"])
        .args(args)
        .env_remove("TORRENTDRIVE_LISTEN")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut up = false;
    while std::time::Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    up
}

#[test]
fn the_config_file_sets_flags_and_flags_and_environment_win() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let [from_file, from_env, from_flag] = [free_port(), free_port(), free_port()];
    std::fs::write(
        data.join("config.toml"),
        format!(
            "listen = \"127.0.0.1:{from_file}\"\ntorrent_listen = \"off\"\nno_dht = true\n\
             no_lsd = true\nread_timeout = 30\ntracker = [\"http://127.0.0.1:1/announce\"]\n"
        ),
    )
    .expect("write config");
    assert!(serves_on(&data, &[], &[], from_file), "the file's listen");
    let env = format!("127.0.0.1:{from_env}");
    assert!(
        serves_on(&data, &[("TORRENTDRIVE_LISTEN", &env)], &[], from_env),
        "the environment over the file"
    );
    let flag = format!("127.0.0.1:{from_flag}");
    assert!(
        serves_on(
            &data,
            &[("TORRENTDRIVE_LISTEN", &env)],
            &["--listen", &flag],
            from_flag
        ),
        "the flag over both"
    );
    // --config names another file.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        format!("listen = \"127.0.0.1:{from_env}\"\ntorrent_listen = \"off\"\n"),
    )
    .expect("write config");
    let config = other.to_str().expect("path");
    assert!(
        serves_on(&data, &[], &["--config", config], from_env),
        "--config FILE"
    );
}

#[test]
fn a_bad_config_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    for (text, message) in [
        ("bogus = 1\n", "unknown key `bogus`"),
        ("read_timeout = \"soon\"\n", "key `read_timeout`"),
        ("no_dht = \"yes\"\n", "key `no_dht` must be true or false"),
        ("listen = \n", "config.toml"),
    ] {
        std::fs::write(data.join("config.toml"), text).expect("write config");
        let o = cli(&data, &["serve"], None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{text}: started");
        assert!(err.contains(message), "{text}: {err}");
    }
    // The example shipped in packaging/ is what `config example` prints, and is valid.
    let o = cli(&data, &["config", "example"], None);
    assert!(o.status.success());
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/config.toml"),
    )
    .expect("packaging/config.toml");
    assert_eq!(stdout(&o), shipped, "regenerate packaging/config.toml");
    std::fs::write(data.join("config.toml"), &shipped).expect("write config");
    let o = cli(&data, &["user", "list"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn upkeep_jobs_run_through_the_daemon_and_the_disk_reserve_refuses_uploads() {
    if !have("curl") {
        return;
    }
    // The whole disk reserved: nothing fits.
    let server = Server::start_with(&["--min-free", "100%"]);
    server.add_user("j", "janitor-password", None);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("upload");
    std::fs::write(&file, vec![1u8; 1 << 20]).expect("write");
    let u = creds("j", "janitor-password");
    let (code, _) = curl(&[
        "-u",
        &u,
        "-T",
        file.to_str().expect("path"),
        &server.url("/big.bin"),
    ]);
    assert_eq!(code, 507, "an upload into the reserve");

    let orphan = server
        .data
        .join("blobs/cd/cd000000000000000000000000000002");
    std::fs::create_dir_all(orphan.parent().expect("parent")).expect("mkdir");
    std::fs::write(&orphan, b"left behind").expect("write");
    let run = |args: &[&str]| {
        let o = server.cli(args, None);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    let dry = run(&["gc", "--dry-run", "--grace", "0"]);
    assert!(dry.contains("would remove unreferenced blob"), "{dry}");
    assert!(orphan.exists());
    assert!(
        run(&["gc"]).contains("nothing to do"),
        "within the grace period"
    );
    let done = run(&["gc", "--grace", "0"]);
    assert!(done.contains("removed unreferenced blob"), "{done}");
    assert!(!orphan.exists());
    assert!(run(&["janitor", "run", "quotas"]).contains("quotas: nothing to do"));
    let o = server.cli(&["janitor", "run", "everything"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown janitor job"));
}

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let child = std::process::Command::new(BIN)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", "off", "--torrent-listen", "off"])
        .args(["--no-dht", "--no-lsd", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) of our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
        assert!(
            v.get("level").is_some() && v.get("message").is_some(),
            "{line}"
        );
    }
    assert!(
        text.contains("\"message\":\"serving WebDAV at http://"),
        "{text}"
    );
}
