//! `/metrics` and `/healthz` on their own listen address.

mod common;
use common::*;

#[test]
fn metrics_count_requests_and_health_is_reported() {
    if !have("curl") {
        return;
    }
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start_with(&["--metrics-listen", &addr]);
    server.add_user("m", "metrics-password", None);
    let u = creds("m", "metrics-password");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").expect("write");
    let put = curl(&[
        "-u",
        &u,
        "-T",
        file.to_str().expect("path"),
        &server.url("/f.txt"),
    ]);
    assert_eq!(put.0, 201);
    assert_eq!(curl(&["-u", &u, &server.url("/f.txt")]).0, 200);
    assert_eq!(
        curl(&["-u", "m:wrong-password", &server.url("/f.txt")]).0,
        401
    );

    let (code, body) = curl(&[&format!("http://{addr}/metrics")]);
    assert_eq!(code, 200);
    let text = String::from_utf8_lossy(&body);
    for line in [
        "torrentdrive_webdav_requests_total{method=\"PUT\",status=\"201\"} 1",
        "torrentdrive_webdav_requests_total{method=\"GET\",status=\"200\"} 1",
        "torrentdrive_webdav_requests_total{method=\"GET\",status=\"401\"} 1",
        "torrentdrive_users 2",
        "torrentdrive_torrents{state=\"downloading\"} 0",
        "torrentdrive_reads_waiting 0",
        "torrentdrive_fuse_open_files 0",
        "torrentdrive_janitor_actions_total{job=\"orphans\"} 0",
        "torrentdrive_webdav_request_seconds_count 3",
        "torrentdrive_signin_failures_total 1",
        "torrentdrive_downloads_paused_for_space 0",
        "torrentdrive_stuck_downloads_total{action=\"restarted\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
    for family in [
        "torrentdrive_disk_free_bytes",
        "torrentdrive_blob_bytes",
        "torrentdrive_torrent_data_bytes",
        "torrentdrive_torrent_download_bytes_per_second",
        "torrentdrive_torrent_peers",
        "torrentdrive_signin_failures_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "missing {family}"
        );
    }
    let (code, body) = curl(&[&format!("http://{addr}/healthz")]);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        r#"{"store":"ok","engine":"ok","mount":"none"}"#
    );
    assert_eq!(curl(&[&format!("http://{addr}/other")]).0, 404);
}

#[test]
fn bytes_served_are_counted_per_user_and_month() {
    if !have("curl") {
        return;
    }
    let mut server = Server::start();
    server.add_user("reader", "reader-password", None);
    server.add_user("idle", "idle-password", None);
    let u = creds("reader", "reader-password");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f");
    std::fs::write(&file, vec![5u8; 300_000]).expect("write");
    let put = curl(&[
        "-u",
        &u,
        "-T",
        file.to_str().expect("path"),
        &server.url("/f.bin"),
    ]);
    assert_eq!(put.0, 201);
    for _ in 0..2 {
        let (code, body) = curl(&["-u", &u, &server.url("/f.bin")]);
        assert_eq!((code, body.len()), (200, 300_000));
    }
    // A stop writes what was counted.
    assert!(server.stop(libc::SIGTERM).success());
    let out = server.cli(&["user", "list"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // USER USED(2 words) QUOTA FILES SERVED(2) DOWNLOADED(2), sizes as in "585.9 KiB".
    let reader = row("reader");
    assert_eq!(reader[5..7].join(" "), "585.9 KiB", "{text}");
    assert_eq!(reader[7..9].join(" "), "0 B", "{text}");
    assert_eq!(row("idle")[5..7].join(" "), "0 B", "{text}");
}
