//! `torrentdrive backup` while the daemon runs, and a restore from it.

mod common;
use common::*;

#[test]
fn a_backup_made_while_serving_restores() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("b", "backup-password", Some("1G"));
    let u = creds("b", "backup-password");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    assert_eq!(server.put(&u, "/big.bin", &big), 201);
    assert_eq!(server.put(&u, "/small.txt", b"small"), 201);
    let (code, _) = curl(&["-u", &u, "-X", "MKCOL", &server.url("/folder")]);
    assert_eq!(code, 201);

    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("backup");
    let run = |args: &[&str]| {
        let o = server.cli(args, None);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let dest_s = dest.to_str().expect("path");
    let first = run(&["backup", dest_s]);
    assert!(first.contains("1 blobs copied"), "{first}");

    // Restore: the backup's files in an empty data dir.
    let restored = work.path().join("restored");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&dest)
        .arg(&restored)
        .status()
        .expect("cp");
    assert!(status.success());
    {
        let other = Server::start_in(&restored);
        assert_eq!(
            curl(&["-u", &u, &other.url("/big.bin")]),
            (200, big.clone())
        );
        assert_eq!(
            curl(&["-u", &u, &other.url("/small.txt")]),
            (200, b"small".to_vec())
        );
        let (code, _) = curl(&[
            "-u",
            &u,
            "-X",
            "PROPFIND",
            "-H",
            "Depth: 0",
            &other.url("/folder"),
        ]);
        assert_eq!(code, 207);
    }

    // Changes since: the same folder is brought up to date.
    let (code, _) = curl(&["-u", &u, "-X", "DELETE", &server.url("/big.bin")]);
    assert_eq!(code, 204);
    assert_eq!(server.put(&u, "/new.bin", &vec![9u8; 100_000]), 201);
    let second = run(&["backup", dest_s]);
    assert!(
        second.contains("1 blobs copied") && second.contains("1 removed"),
        "{second}"
    );
    // Never into the data dir itself.
    let inside = server.data.join("backups");
    let o = server.cli(&["backup", inside.to_str().expect("path")], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("inside the data dir"));
    assert!(!inside.exists());
}
