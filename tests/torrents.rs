//! Torrents dropped into `/Add` over WebDAV, downloaded from a seeder on loopback.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use common::*;
use std::time::{Duration, Instant};

/// curl off the async threads (the seeder runs on them).
fn curl_blocking(args: &[&str]) -> (u16, Vec<u8>) {
    tokio::task::block_in_place(|| curl(args))
}

/// Waits until `url` answers 200 to HEAD.
fn wait_for(u: &str, url: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if curl_blocking(&["-u", u, "-I", url]).0 == 200 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn put_bytes(u: &str, url: &str, data: &[u8]) -> u16 {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("upload");
    std::fs::write(&file, data).expect("write");
    curl_blocking(&["-u", u, "-T", file.to_str().expect("path"), url]).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_torrent_streams_while_it_downloads() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    const LEN: usize = 12 << 20;
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "movie.mkv", LEN, &tracker.url, 256 << 10).await;
    // 3 MiB/s: the download takes about four seconds, the reads below come before.
    let seeder = swarm::seed(work.path(), &torrent, &dir, Some(3 << 20)).await;

    let server = Server::start();
    server.add_user("t", "torrent-password", None);
    let u = creds("t", "torrent-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/movie.torrent"), &torrent),
        201
    );

    let file_url = server.url("/Downloads/movie.mkv");
    eprintln!("seeder at {}, tracker {}", seeder.addr, tracker.url);
    assert!(
        wait_for(&u, &file_url, Duration::from_secs(20)),
        "the file did not appear"
    );
    // The file has its final size at once.
    let (_, head) = curl_blocking(&["-u", &u, "-I", &file_url]);
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.contains(&format!("content-length: {LEN}")), "{head}");
    // The dropped file is gone.
    assert_eq!(
        curl_blocking(&["-u", &u, "-I", &server.url("/Add/movie.torrent")]).0,
        404
    );

    // Ranges at the end, the middle and the start, while the download runs.
    let started = Instant::now();
    for (start, len) in [(LEN - 65_536, 65_536), (LEN / 2, 100_000), (0, 4096)] {
        let range = format!("{start}-{}", start + len - 1);
        let (code, body) = curl_blocking(&["-u", &u, "-r", &range, &file_url]);
        assert_eq!(code, 206, "range {range}");
        let first_diff = body
            .iter()
            .zip(&original[start..])
            .position(|(a, b)| a != b);
        assert!(
            body == original[start..start + len],
            "bytes of range {range} differ: got {} bytes, first difference at {first_diff:?}, zeros: {}",
            body.len(),
            body.iter().filter(|&&b| b == 0).count()
        );
    }
    eprintln!("three ranges read in {:?}", started.elapsed());
    let (code, body) = curl_blocking(&["-u", &u, &file_url]);
    assert_eq!(code, 200);
    assert!(body == original, "the whole file differs");

    // The transfer in /Add/status.txt and in the CLI; the status file is read-only.
    let status_url = server.url("/Add/status.txt");
    let (code, status) = curl_blocking(&["-u", &u, &status_url]);
    let status = String::from_utf8_lossy(&status).into_owned();
    assert_eq!(code, 200);
    assert!(status.contains("movie.mkv"), "{status}");
    assert!(
        ["downloading", "seeding", "completed"]
            .iter()
            .any(|s| status.contains(s)),
        "{status}"
    );
    let (_, listing) = curl_blocking(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &server.url("/Add/"),
    ]);
    assert!(String::from_utf8_lossy(&listing).contains("/dav/Add/status.txt"));
    assert_eq!(put_bytes(&u, &status_url, b"no"), 403);
    assert_eq!(
        curl_blocking(&["-u", &u, "-X", "DELETE", &status_url]).0,
        403
    );
    let out = tokio::task::block_in_place(|| server.cli(&["transfers", "--json"], None));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains("\"name\": \"movie.mkv\"") && json.contains("\"user\": \"t\""),
        "{json}"
    );

    // Torrent files are read-only, but their owner can move and delete them.
    assert_eq!(put_bytes(&u, &file_url, b"overwrite"), 403);
    let (code, _) = curl_blocking(&[
        "-u",
        &u,
        "-X",
        "MOVE",
        "-H",
        &format!("Destination: {}", server.url("/movie.mkv")),
        &file_url,
    ]);
    assert_eq!(code, 201);
    let (code, body) = curl_blocking(&["-u", &u, "-r", "0-99", &server.url("/movie.mkv")]);
    assert_eq!((code, &body[..]), (206, &original[..100]));
    drop(seeder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn folders_dedup_and_cleanup() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let pack = work.path().join("Season 1");
    swarm::write_files(&pack, &[("e01.mkv", 700_000), ("subs/e01.srt", 5_000)]);
    let torrent = swarm::make_torrent(&pack, &tracker.url, 64 << 10).await;
    let seeder = swarm::Seeder::start(&work.path().join("seeder-state"), None).await;
    seeder.seed(&torrent, &pack).await;

    let server = Server::start();
    server.add_user("a", "alice-password", None);
    server.add_user("b", "bobby-password", Some("10M"));
    let a = creds("a", "alice-password");
    let b = creds("b", "bobby-password");

    // Into a sub folder of /Add: lands in that folder at the root.
    assert_eq!(
        curl_blocking(&["-u", &a, "-X", "MKCOL", &server.url("/Add/Shows")]).0,
        201
    );
    assert_eq!(
        put_bytes(&a, &server.url("/Add/Shows/s1.torrent"), &torrent),
        201
    );
    let srt = server.url("/Shows/Season%201/subs/e01.srt");
    assert!(
        wait_for(&a, &srt, Duration::from_secs(20)),
        "multi-file torrent did not appear"
    );
    let (code, body) = curl_blocking(&["-u", &a, &srt]);
    assert_eq!(code, 200);
    assert!(body == std::fs::read(pack.join("subs/e01.srt")).expect("read"));

    // The same torrent for another user: the data is stored once.
    assert_eq!(put_bytes(&b, &server.url("/Add/s1.torrent"), &torrent), 201);
    let b_file = server.url("/Downloads/Season%201/e01.mkv");
    assert!(wait_for(&b, &b_file, Duration::from_secs(20)));
    let (code, body) = curl_blocking(&["-u", &b, &b_file]);
    assert_eq!(code, 200);
    assert!(body == std::fs::read(pack.join("e01.mkv")).expect("read"));
    let stored = std::fs::read_dir(server.data.join("torrents"))
        .expect("torrents dir")
        .count();
    assert_eq!(stored, 1, "one copy of the data");
    // Dropping it again gives a second folder, "Season 1 (2)".
    assert_eq!(
        put_bytes(&b, &server.url("/Add/again.torrent"), &torrent),
        201
    );
    assert!(wait_for(
        &b,
        &server.url("/Downloads/Season%201%20(2)/e01.mkv"),
        Duration::from_secs(20)
    ));

    // Deleting every file that shows the torrent deletes its data.
    for (who, path) in [
        (&a, "/Shows/Season%201/"),
        (&b, "/Downloads/Season%201/"),
        (&b, "/Downloads/Season%201%20(2)/"),
    ] {
        let (code, _) = curl_blocking(&["-u", who, "-X", "DELETE", &server.url(path)]);
        assert_eq!(code, 204, "DELETE {path}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(server.data.join("torrents"))
        .expect("dir")
        .count()
        > 0
    {
        assert!(Instant::now() < deadline, "torrent data not deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(seeder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_drops_get_an_error_file() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("e", "error-password", Some("8M"));
    let u = creds("e", "error-password");
    let name_with_control = {
        let mut t =
            b"d4:infod6:lengthi3e4:name5:a\x01b.c12:piece lengthi16384e6:pieces20:".to_vec();
        t.extend_from_slice(&[7u8; 20]);
        t.extend_from_slice(b"ee");
        t
    };
    let zero_piece = {
        let mut t = b"d4:infod6:lengthi3e4:name5:a.bin12:piece lengthi0e6:pieces20:".to_vec();
        t.extend_from_slice(&[7u8; 20]);
        t.extend_from_slice(b"ee");
        t
    };
    let too_big = {
        // 16 MiB in one file: over this user's 8 MiB quota.
        let mut t =
            b"d4:infod6:lengthi16777216e4:name7:big.bin12:piece lengthi1048576e6:pieces320:"
                .to_vec();
        t.extend_from_slice(&[7u8; 320]);
        t.extend_from_slice(b"ee");
        t
    };
    let many_files = {
        // 100,000 files of one byte each.
        let mut t = b"d4:infod5:filesl".to_vec();
        for i in 0..100_000 {
            let name = format!("f{i}");
            t.extend_from_slice(format!("d6:lengthi1e4:pathl{}:{name}ee", name.len()).as_bytes());
        }
        t.extend_from_slice(b"e4:name4:many12:piece lengthi16384e6:pieces140:");
        t.extend_from_slice(&[7u8; 140]);
        t.extend_from_slice(b"ee");
        t
    };
    let cases: [(&str, &[u8], &str); 5] = [
        (
            "garbage.torrent",
            b"this is not bencode",
            "not a torrent file",
        ),
        ("control.torrent", &name_with_control, "invalid name"),
        ("zero.torrent", &zero_piece, "piece length"),
        ("big.torrent", &too_big, "over quota"),
        ("many.torrent", &many_files, "too many files"),
    ];
    for (name, data, expected) in cases {
        assert_eq!(
            put_bytes(&u, &server.url(&format!("/Add/{name}")), data),
            201
        );
        let error_url = server.url(&format!("/Add/{name}.error.txt"));
        assert!(
            wait_for(&u, &error_url, Duration::from_secs(10)),
            "no error file for {name}"
        );
        let (_, text) = curl_blocking(&["-u", &u, &error_url]);
        let text = String::from_utf8_lossy(&text).into_owned();
        assert!(text.contains(expected), "{name}: {text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        // The dropped file stays; removing it removes its error file.
        assert_eq!(
            curl_blocking(&["-u", &u, "-I", &server.url(&format!("/Add/{name}"))]).0,
            200
        );
        let (code, _) = curl_blocking(&[
            "-u",
            &u,
            "-X",
            "DELETE",
            &server.url(&format!("/Add/{name}")),
        ]);
        assert_eq!(code, 204);
        assert_eq!(curl_blocking(&["-u", &u, "-I", &error_url]).0, 404);
    }
    // A zero-length file is a file like any other.
    let zero_len = {
        let mut t = b"d4:infod5:filesld6:lengthi0e4:pathl5:emptyeed6:lengthi5e4:pathl4:dataeee4:name4:pack12:piece lengthi16384e6:pieces20:".to_vec();
        t.extend_from_slice(&[7u8; 20]);
        t.extend_from_slice(b"ee");
        t
    };
    assert_eq!(
        put_bytes(&u, &server.url("/Add/pack.torrent"), &zero_len),
        201
    );
    let empty = server.url("/Downloads/pack/empty");
    assert!(
        wait_for(&u, &empty, Duration::from_secs(10)),
        "zero-length file missing"
    );
    let (code, body) = curl_blocking(&["-u", &u, &empty]);
    assert_eq!((code, body.len()), (200, 0));
    let (code, _) = curl_blocking(&["-u", &u, "-X", "DELETE", &server.url("/Downloads/pack/")]);
    assert_eq!(code, 204);

    // Nothing was created in Downloads and the daemon still serves.
    let (code, body) = curl_blocking(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        &server.url("/Downloads/"),
    ]);
    assert_eq!(code, 207);
    assert_eq!(
        String::from_utf8_lossy(&body)
            .matches("<D:response>")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_that_cannot_be_served_fails_in_time() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("nobody-seeds");
    swarm::write_files(&dir, &[("lost.bin", 1 << 20)]);
    let torrent = swarm::make_torrent(&dir.join("lost.bin"), &tracker.url, 64 << 10).await;
    let server = Server::start_with(&["--read-timeout", "2"]);
    server.add_user("r", "reader-password", None);
    let u = creds("r", "reader-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/lost.torrent"), &torrent),
        201
    );
    let url = server.url("/Downloads/lost.bin");
    assert!(wait_for(&u, &url, Duration::from_secs(20)));
    let started = Instant::now();
    let (_, body) = curl_blocking(&["-u", &u, "-r", "0-65535", &url]);
    let elapsed = started.elapsed();
    assert!(
        body.is_empty(),
        "no bytes may be invented: got {}",
        body.len()
    );
    assert!(
        elapsed >= Duration::from_secs(2),
        "gave up after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(15), "hung for {elapsed:?}");
    // The daemon keeps serving.
    assert_eq!(curl_blocking(&["-u", &u, "-I", &server.url("/")]).0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_download_resumes_after_kill_9() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "film.mkv", 8 << 20, &tracker.url, 128 << 10).await;
    let seeder = swarm::seed(work.path(), &torrent, &dir, Some(2 << 20)).await;

    let data = work.path().join("data");
    let mut server = Server::start_in(&data);
    server.add_user("k", "killer-password", None);
    let u = creds("k", "killer-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/film.torrent"), &torrent),
        201
    );
    let url = server.url("/Downloads/film.mkv");
    assert!(wait_for(&u, &url, Duration::from_secs(20)));
    let (code, body) = curl_blocking(&["-u", &u, "-r", "0-65535", &url]);
    assert_eq!(code, 206);
    assert!(body == original[..65_536]);
    // Killed mid-download (about 4 s of data at 2 MiB/s), then started again.
    server.stop(libc::SIGKILL);
    let server = Server::start_in(&data);
    let url = server.url("/Downloads/film.mkv");
    let (code, body) = curl_blocking(&["-u", &u, &url]);
    assert_eq!(code, 200);
    assert!(body == original, "the resumed download has the right bytes");
    drop(seeder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_magnet_with_a_peer_hint_downloads() {
    if !have("curl") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let seed_dir = work.path().join("seed");
    swarm::write_files(&seed_dir, &[("clip.mp4", 3 << 20)]);
    let original = std::fs::read(seed_dir.join("clip.mp4")).expect("read");
    let swarm::SeededMagnet {
        seeder,
        torrent,
        link,
        ..
    } = swarm::magnet_of(work.path(), &seed_dir.join("clip.mp4"), None).await;
    let magnet = format!("{link}\n");

    let server = Server::start();
    server.add_user("m", "magnet-password", None);
    let u = creds("m", "magnet-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/clip.magnet"), magnet.as_bytes()),
        201
    );
    let url = server.url("/Downloads/clip.mp4");
    assert!(
        wait_for(&u, &url, Duration::from_secs(30)),
        "the magnet's file did not appear"
    );
    let (code, body) = curl_blocking(&["-u", &u, &url]);
    assert_eq!(code, 200);
    assert!(body == original);
    assert_eq!(
        curl_blocking(&["-u", &u, "-I", &server.url("/Add/clip.magnet")]).0,
        404
    );

    // `torrentdrive add` with a .torrent file, through the running daemon.
    let file = work.path().join("clip.torrent");
    std::fs::write(&file, &torrent).expect("write");
    let out = tokio::task::block_in_place(|| {
        server.cli(&["add", "--user", "m", file.to_str().expect("path")], None)
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wait_for(
        &u,
        &server.url("/Downloads/clip%20(2).mp4"),
        Duration::from_secs(30)
    ));

    // `torrentdrive add` of a magnet with no daemon running: picked up at the next start.
    let data = server.data.clone();
    let mut server = server;
    assert!(server.stop(libc::SIGTERM).success());
    let out =
        tokio::task::block_in_place(|| cli(&data, &["add", "--user", "m", magnet.trim()], None));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start_in(&data);
    assert!(wait_for(
        &u,
        &server.url("/Downloads/clip%20(3).mp4"),
        Duration::from_secs(30)
    ));
    let (code, body) = curl_blocking(&["-u", &u, &server.url("/Downloads/clip%20(3).mp4")]);
    assert_eq!(code, 200);
    assert!(body == original);
    drop(seeder);
}

/// The states in `/Add/status.txt`, by name.
fn states(u: &str, server: &Server) -> Vec<(String, String)> {
    let (_, body) = curl_blocking(&["-u", u, &server.url("/Add/status.txt")]);
    String::from_utf8_lossy(&body)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some((cols.next()?.to_owned(), cols.next()?.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downloads_queue_and_stop_seeding() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let seeder = swarm::Seeder::start(&work.path().join("seeder-state"), Some(2 << 20)).await;
    let mut torrents = Vec::new();
    for name in ["first.bin", "second.bin"] {
        let dir = work.path().join(name);
        swarm::write_files(&dir, &[(name, 3 << 20)]);
        let torrent = swarm::make_torrent(&dir.join(name), &tracker.url, 64 << 10).await;
        seeder.seed(&torrent, &dir).await;
        torrents.push((name, torrent, std::fs::read(dir.join(name)).expect("read")));
    }
    let server = Server::start_with(&["--max-active", "1", "--seed-time", "0"]);
    server.add_user("q", "queue-password", None);
    let u = creds("q", "queue-password");
    for (name, torrent, _) in &torrents {
        assert_eq!(
            put_bytes(&u, &server.url(&format!("/Add/{name}.torrent")), torrent),
            201
        );
        assert!(wait_for(
            &u,
            &server.url(&format!("/Downloads/{name}")),
            Duration::from_secs(20)
        ));
    }
    // One downloads, the other waits.
    let mut saw_queue = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !saw_queue {
        let s = states(&u, &server);
        saw_queue = s.iter().any(|(_, st)| st == "queued")
            && s.iter().filter(|(_, st)| st == "downloading").count() == 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_queue, "no queue: {:?}", states(&u, &server));
    // Both finish, and with --seed-time 0 both stop seeding.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = states(&u, &server);
        if s.len() == 2 && s.iter().all(|(_, st)| st == "completed") {
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (name, _, original) in &torrents {
        let (code, body) = curl_blocking(&["-u", &u, &server.url(&format!("/Downloads/{name}"))]);
        assert_eq!(code, 200);
        assert!(body == *original, "{name} differs");
    }
    drop(seeder);
}

/// aria2c, a different BitTorrent implementation, seeding on loopback through the tracker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aria2c_seeds_to_torrentdrive() {
    if !have("curl") || !have("aria2c") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join("aria");
    // Not a multiple of the piece length: for such lengths librqbit 9.1's create_torrent
    // writes one piece hash too many, which aria2c rightly refuses.
    const LEN: usize = (5 << 20) + 12_345;
    swarm::write_files(&dir, &[("show.mkv", LEN)]);
    let original = std::fs::read(dir.join("show.mkv")).expect("read");
    let torrent = swarm::make_torrent(&dir.join("show.mkv"), &tracker.url, 256 << 10).await;
    let torrent_file = work.path().join("show.torrent");
    std::fs::write(&torrent_file, &torrent).expect("write");
    let port = free_port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _aria = Kill(
        std::process::Command::new("aria2c")
            .arg(format!("--dir={}", dir.display()))
            .args([
                "--check-integrity=true",
                "--seed-ratio=0.0",
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--bt-tracker-interval=1",
                "--quiet=true",
            ])
            .arg(format!("--listen-port={port}"))
            .arg(&torrent_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start aria2c"),
    );

    let server = Server::start();
    server.add_user("x", "aria2-password", None);
    let u = creds("x", "aria2-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/show.torrent"), &torrent),
        201
    );
    let url = server.url("/Downloads/show.mkv");
    assert!(wait_for(&u, &url, Duration::from_secs(20)));
    // The end of the file first, as a player looking for the index would.
    let (code, body) = curl_blocking(&["-u", &u, "-r", &format!("{}-", LEN - 100_000), &url]);
    assert_eq!(code, 206);
    assert!(body == original[LEN - 100_000..]);
    let (code, body) = curl_blocking(&["-u", &u, &url]);
    assert_eq!(code, 200);
    assert!(body == original, "bytes from aria2c differ");
}

/// More readers than the engine has stream slots, all waiting for pieces: none starves the
/// engine, all get their bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_readers_waiting_at_once() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    const LEN: usize = 6 << 20;
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "many.bin", LEN, &tracker.url, 64 << 10).await;
    let original = std::sync::Arc::new(original);
    let seeder = swarm::seed(work.path(), &torrent, &dir, Some(2 << 20)).await;
    let server = Server::start();
    server.add_user("r", "readers-password", None);
    let u = creds("r", "readers-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/many.torrent"), &torrent),
        201
    );
    let url = server.url("/Downloads/many.bin");
    assert!(wait_for(&u, &url, Duration::from_secs(20)));
    let readers: Vec<_> = (0..40)
        .map(|i| {
            let (u, url, original) = (u.clone(), url.clone(), original.clone());
            std::thread::spawn(move || {
                let start = (LEN - 4096) * i / 39;
                let range = format!("{start}-{}", start + 4095);
                let (code, body) = curl(&["-u", &u, "-r", &range, &url]);
                assert_eq!(code, 206, "reader {i}");
                assert!(
                    body == original[start..start + 4096],
                    "reader {i} got wrong bytes"
                );
            })
        })
        .collect();
    tokio::task::block_in_place(|| {
        for r in readers {
            r.join().expect("reader");
        }
    });
    drop(seeder);
}

/// After a restart a completed torrent is served from disk, with no peer to fetch it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completed_torrent_needs_no_peers_after_a_restart() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "keep.bin", 2 << 20, &tracker.url, 64 << 10).await;
    let seeder = swarm::seed(work.path(), &torrent, &dir, None).await;
    let data = work.path().join("data");
    let mut server = Server::start_in(&data);
    server.add_user("c", "complete-password", None);
    let u = creds("c", "complete-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/keep.torrent"), &torrent),
        201
    );
    assert!(wait_for(
        &u,
        &server.url("/Downloads/keep.bin"),
        Duration::from_secs(20)
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !states(&u, &server)
        .iter()
        .any(|(_, s)| s == "seeding" || s == "completed")
    {
        assert!(
            Instant::now() < deadline,
            "not complete: {:?}",
            states(&u, &server)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(server.stop(libc::SIGTERM).success());
    // What was downloaded counts in the user's traffic of the month.
    let list = server.cli(&["user", "list"], None);
    let list = String::from_utf8_lossy(&list.stdout);
    let row: Vec<&str> = list
        .lines()
        .find(|l| l.starts_with("c "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        row.get(7..9).map(|w| w.join(" ")),
        Some("2.0 MiB".into()),
        "{list}"
    );
    drop(seeder);
    drop(tracker);
    let started = Instant::now();
    let server = Server::start_in(&data);
    let (code, body) = curl_blocking(&["-u", &u, &server.url("/Downloads/keep.bin")]);
    assert_eq!(code, 200);
    assert!(body == original);
    eprintln!("restarted and read the file in {:?}", started.elapsed());
}

/// A `.magnet` file may hold http(s) URLs of `.torrent` files too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_link_to_a_torrent_downloads() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "linked.bin", 1 << 20, &tracker.url, 64 << 10).await;
    let seeder = swarm::seed(work.path(), &torrent, &dir, None).await;
    let link = tracker.serve_file("linked.torrent", &torrent);

    let server = Server::start();
    server.add_user("h", "http-link-password", None);
    let u = creds("h", "http-link-password");
    let lines = format!("# links\n{link}\n");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/links.magnet"), lines.as_bytes()),
        201
    );
    let url = server.url("/Downloads/linked.bin");
    assert!(
        wait_for(&u, &url, Duration::from_secs(30)),
        "the linked torrent did not appear"
    );
    let (code, body) = curl_blocking(&["-u", &u, &url]);
    assert_eq!(code, 200);
    assert!(body == original);
    // A link that leads nowhere gives an error file.
    let bad = format!(
        "{}/files/missing.torrent\n",
        tracker.url.trim_end_matches("/announce")
    );
    assert_eq!(
        put_bytes(&u, &server.url("/Add/bad.magnet"), bad.as_bytes()),
        201
    );
    assert!(wait_for(
        &u,
        &server.url("/Add/bad.magnet.error.txt"),
        Duration::from_secs(30)
    ));
    drop(seeder);
}

/// A nearly full disk pauses downloads, and they go on once space is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nearly_full_disk_pauses_downloads_until_space_is_back() {
    if !have("curl") {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let Some(small) = Tmpfs::mount(work.path(), "48m") else {
        return;
    };
    let mnt = small.path.clone();

    let tracker = swarm::Tracker::start().await;
    const LEN: usize = 16 << 20;
    let swarm::OneFile {
        dir,
        torrent,
        original,
    } = swarm::one_file(work.path(), "big.bin", LEN, &tracker.url, 256 << 10).await;
    let _seeder = swarm::seed(work.path(), &torrent, &dir, Some(4 << 20)).await;
    let server = Server::start_in_with(&mnt.join("data"), &["--min-free", "24M"]);
    server.add_user("d", "disk-password", None);
    let u = creds("d", "disk-password");
    // 20 MiB of other files: about 26 MiB stay free, 2 above the reserve.
    assert_eq!(
        put_bytes(&u, &server.url("/filler"), &vec![1u8; 20 << 20]),
        201
    );
    assert_eq!(
        put_bytes(&u, &server.url("/Add/big.torrent"), &torrent),
        201
    );
    let state = || {
        states(&u, &server)
            .into_iter()
            .find(|(name, _)| name.starts_with("big"))
            .map(|(_, s)| s)
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while state() != "queued" {
        assert!(Instant::now() < deadline, "never paused: {}", state());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, status) = curl_blocking(&["-u", &u, &server.url("/Add/status.txt")]);
    let status = String::from_utf8_lossy(&status);
    assert!(status.contains("disk is nearly full"), "{status}");
    // Paused means paused: a read does not start it again.
    let free = |p: &std::path::Path| {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(p)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = free(&mnt);
    let range = format!("{}-{}", LEN - 100, LEN - 1);
    let file_url = server.url("/Downloads/big.bin");
    let _ = curl_blocking(&["-u", &u, "--max-time", "1", "-r", &range, &file_url]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        free(&mnt) + (1 << 20) >= before,
        "still downloading while paused"
    );
    assert_eq!(state(), "queued");

    // Space back: the download resumes and completes.
    let (code, _) = curl_blocking(&["-u", &u, "-X", "DELETE", &server.url("/filler")]);
    assert_eq!(code, 204);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = state();
        if s == "seeding" || s == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "did not resume: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, body) = curl_blocking(&["-u", &u, &server.url("/Downloads/big.bin")]);
    assert_eq!(code, 200);
    assert!(body == original, "downloaded bytes differ");
}

/// Downloads that get nothing from the peers they know are restarted; those with no peer
/// connected for too long are given up on, with the reason shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stuck_downloads_are_restarted_or_given_up() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    // Trickled: 2 KB/s never completes a 256 KiB piece in the test's time.
    let slow = swarm::one_file(
        &work.path().join("a"),
        "slow.bin",
        1 << 20,
        &tracker.url,
        256 << 10,
    )
    .await;
    let _seeder = swarm::seed(&work.path().join("a"), &slow.torrent, &slow.dir, Some(2000)).await;
    // Nobody has this one.
    let lonely = swarm::one_file(
        &work.path().join("b"),
        "lonely.bin",
        1 << 20,
        &tracker.url,
        256 << 10,
    )
    .await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let server = Server::start_with(&[
        "--stall-timeout",
        "4s",
        "--no-peers-timeout",
        "12s",
        "--metrics-listen",
        &metrics,
    ]);
    server.add_user("s", "stuck-password", None);
    let u = creds("s", "stuck-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/slow.torrent"), &slow.torrent),
        201
    );
    assert_eq!(
        put_bytes(&u, &server.url("/Add/lonely.torrent"), &lonely.torrent),
        201
    );
    let restarted = || {
        let (_, body) = curl_blocking(&[&format!("http://{metrics}/metrics")]);
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| {
                l.strip_prefix("torrentdrive_stuck_downloads_total{action=\"restarted\"} ")
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while restarted() == 0 {
        assert!(
            Instant::now() < deadline,
            "the trickled download was never restarted"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = curl_blocking(&["-u", &u, &server.url("/Add/status.txt")]);
        let status = String::from_utf8_lossy(&status).into_owned();
        let line = status
            .lines()
            .find(|l| l.starts_with("lonely"))
            .unwrap_or_default()
            .to_owned();
        if line.contains("error") && line.contains("no peers for 12 s") {
            break;
        }
        assert!(Instant::now() < deadline, "not given up: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Torrents the engine still had but no drive shows (files deleted while the daemon was
/// stopped) are removed, with their data, at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torrents_no_drive_shows_are_removed_at_start() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let one = swarm::one_file(work.path(), "gone.bin", 1 << 20, &tracker.url, 64 << 10).await;
    let _seeder = swarm::seed(work.path(), &one.torrent, &one.dir, None).await;
    let data = work.path().join("data");
    let mut server = Server::start_in(&data);
    server.add_user("g", "gone-password", None);
    let u = creds("g", "gone-password");
    assert_eq!(
        put_bytes(&u, &server.url("/Add/gone.torrent"), &one.torrent),
        201
    );
    assert!(wait_for(
        &u,
        &server.url("/Downloads/gone.bin"),
        Duration::from_secs(20)
    ));
    let hash = swarm::info_hash(&one.torrent);
    assert!(data.join("torrents").join(&hash).exists());
    assert!(server.stop(libc::SIGTERM).success());
    // Offline, the user and their files go; the engine is not running to drop the torrent.
    let out = server.cli(&["user", "remove", "g"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _server = Server::start_in(&data);
    let deadline = Instant::now() + Duration::from_secs(20);
    while data.join("torrents").join(&hash).exists() {
        assert!(
            Instant::now() < deadline,
            "the orphaned torrent's data is still there"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
