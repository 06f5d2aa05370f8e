//! litmus, all five suites, run by two users at the same time against one daemon: locks and
//! dead properties must not leak between users.

mod common;
use common::*;

fn run_litmus(url: String, user: &'static str, password: &'static str) -> String {
    // litmus writes debug.log and child.log into its working directory.
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("litmus")
        .current_dir(cwd.path())
        .args([url.as_str(), user, password])
        .env("TESTS", "basic copymove props locks http")
        .output()
        .expect("run litmus");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn litmus_passes_for_two_users_at_once() {
    if !have("litmus") {
        return;
    }
    let server = Server::start();
    server.add_user("alice", "alice-password", None);
    server.add_user("bob", "bob-password", None);
    let (a, b) = (server.url("/"), server.url("/"));
    let alice = std::thread::spawn(move || run_litmus(a, "alice", "alice-password"));
    let bob = std::thread::spawn(move || run_litmus(b, "bob", "bob-password"));
    for (who, report) in [
        ("alice", alice.join().expect("alice")),
        ("bob", bob.join().expect("bob")),
    ] {
        for suite in ["basic", "copymove", "props", "locks", "http"] {
            let line = report
                .lines()
                .find(|l| l.starts_with(&format!("<- summary for `{suite}'")))
                .unwrap_or_else(|| panic!("{who}: no summary for {suite}:\n{report}"));
            assert!(line.contains(" 0 failed"), "{who}: {line}\n{report}");
        }
    }
}
