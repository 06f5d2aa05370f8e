//! A full disk and a daemon killed mid-upload: clear errors, nothing partial, nothing lost.

mod common;
use common::*;
use std::process::Command;

#[test]
fn full_disk_gives_507_and_keeps_serving() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(small) = Tmpfs::mount(dir.path(), "24m") else {
        return;
    };
    let mnt = small.path.clone();

    let server = Server::start_in(&mnt.join("data"));
    server.add_user("f", "full-password", None);
    let u = creds("f", "full-password");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![9u8; 40 << 20]).expect("write");
    let small = dir.path().join("small.txt");
    std::fs::write(&small, b"still works").expect("write");

    // Announced: refused before a byte is stored.
    let (code, _) = curl(&[
        "-u",
        &u,
        "-T",
        big.to_str().expect("path"),
        &server.url("/big"),
    ]);
    assert_eq!(code, 507);
    // Streamed (no length): fails when the disk fills.
    let (code, _) = curl(&[
        "-u",
        &u,
        "-H",
        "Transfer-Encoding: chunked",
        "-T",
        big.to_str().expect("path"),
        &server.url("/big"),
    ]);
    assert_eq!(code, 507);
    assert_eq!(curl(&["-u", &u, "-I", &server.url("/big")]).0, 404);
    assert_eq!(
        std::fs::read_dir(server.data.join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
    // The space is back and the daemon still works.
    let (code, _) = curl(&[
        "-u",
        &u,
        "-T",
        small.to_str().expect("path"),
        &server.url("/small.txt"),
    ]);
    assert_eq!(code, 201);
    assert_eq!(
        curl(&["-u", &u, &server.url("/small.txt")]).1,
        b"still works"
    );
}

#[test]
fn kill_9_mid_upload_leaves_the_old_version() {
    if !have("curl") {
        return;
    }
    let mut server = Server::start();
    server.add_user("k", "kill-password", None);
    let u = creds("k", "kill-password");
    let (code, _) = curl(&[
        "-u",
        &u,
        "--data-binary",
        "version 1",
        "-X",
        "PUT",
        &server.url("/doc"),
    ]);
    assert_eq!(code, 201);
    // Start an overwrite and a new upload that stream slowly, then kill the daemon.
    let spawn_slow = |path: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "head -c 50000000 /dev/zero | curl -s -u {u} --limit-rate 2M -T - {}",
                server.url(path)
            ))
            .spawn()
            .expect("curl")
    };
    let mut a = spawn_slow("/doc");
    let mut b = spawn_slow("/new");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.stop(libc::SIGKILL);
    let _ = a.wait();
    let _ = b.wait();
    assert!(
        std::fs::read_dir(server.data.join("tmp"))
            .expect("tmp")
            .count()
            > 0,
        "staging was in progress"
    );
    let data = server.data.clone();
    let server = Server::start_in(&data);
    assert_eq!(curl(&["-u", &u, &server.url("/doc")]).1, b"version 1");
    assert_eq!(curl(&["-u", &u, "-I", &server.url("/new")]).0, 404);
    assert_eq!(
        std::fs::read_dir(data.join("tmp")).expect("tmp").count(),
        0,
        "staging cleared at start"
    );
}
