//! rclone's webdav remote: a tree of a few hundred files up and back, hashes equal.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;

fn tree_hashes(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                let data = std::fs::read(&path).expect("read");
                out.push((rel, blake3_hex(&data)));
            }
        }
    }
    out.sort();
    out
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

#[test]
fn rclone_copies_a_tree_up_and_back() {
    if !have("rclone") {
        return;
    }
    let server = Server::start();
    server.add_user("r", "rclone-password", None);
    let work = tempfile::tempdir().expect("tempdir");
    let src = work.path().join("src");
    // 300 files in nested folders, sizes from empty to 3 MiB, names with spaces and unicode.
    for i in 0..300u32 {
        let dir = src
            .join(format!("dir {}", i % 7))
            .join(format!("sub-ü{}", i % 3));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let len = match i % 10 {
            0 => 0,
            1 => 3 << 20,
            2 => 70_000,
            _ => (i as usize * 37) % 20_000,
        };
        let data: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
        std::fs::write(dir.join(format!("file {i} é.bin")), data).expect("write");
    }
    let obscured = Command::new("rclone")
        .args(["obscure", "rclone-password"])
        .output()
        .expect("rclone obscure");
    let pass = String::from_utf8_lossy(&obscured.stdout).trim().to_owned();
    let conf = work.path().join("rclone.conf");
    std::fs::write(
        &conf,
        format!(
            "[td]\ntype = webdav\nurl = {}\nvendor = other\nuser = r\npass = {pass}\n",
            server.url("/")
        ),
    )
    .expect("conf");
    let rclone = |args: &[&str]| {
        let out = Command::new("rclone")
            .arg("--config")
            .arg(&conf)
            .args(args)
            .output()
            .expect("rclone");
        assert!(
            out.status.success(),
            "rclone {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let back = work.path().join("back");
    rclone(&["copy", src.to_str().expect("path"), "td:tree"]);
    rclone(&["copy", "td:tree", back.to_str().expect("path")]);
    let (a, b) = (tree_hashes(&src), tree_hashes(&back));
    assert_eq!(a.len(), 300);
    assert_eq!(a, b);
    // A second copy finds nothing to do; a check compares sizes and times.
    rclone(&[
        "check",
        src.to_str().expect("path"),
        "td:tree",
        "--size-only",
    ]);
    rclone(&["purge", "td:tree"]);
    let out = Command::new("rclone")
        .arg("--config")
        .arg(&conf)
        .args(["lsf", "td:"])
        .output()
        .expect("rclone lsf");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Add/\nDownloads/\n");
}
