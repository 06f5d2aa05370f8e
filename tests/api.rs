//! The JSON API under /api/v1/, with curl against the real binary.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// An API call: (status, JSON body or Null).
fn api(
    server: &Server,
    auth: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let url = format!("http://{}/api/v1{path}", server.addr);
    let mut args: Vec<&str> = auth.to_vec();
    args.extend(["-X", method]);
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let (code, body) = curl(&args);
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[test]
fn sign_in_tokens_account_and_files() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("ann", "ann-password", Some("10M"));
    server.add_user("bob", "bob-password", None);
    let ann = ["-u", "ann:ann-password"];

    // Signing in.
    let (code, v) = api(&server, &[], "GET", "/account", None);
    assert_eq!((code, code_of(&v)), (401, "unauthorized"));
    let (code, _) = api(
        &server,
        &["-u", "ann:wrong-password"],
        "GET",
        "/account",
        None,
    );
    assert_eq!(code, 401);
    let (code, v) = api(&server, &ann, "GET", "/account", None);
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["user"].as_str(), v["quota"].as_u64()),
        (Some("ann"), Some(10 << 20))
    );
    let (code, v) = api(&server, &ann, "GET", "/nothing", None);
    assert_eq!((code, code_of(&v)), (404, "no_such_endpoint"));
    let (code, v) = api(&server, &ann, "PUT", "/account", None);
    assert_eq!((code, code_of(&v)), (405, "method_not_allowed"));

    // Tokens: made once, usable as Bearer, listed without the secret, revoked.
    let (code, v) = api(
        &server,
        &ann,
        "POST",
        "/tokens",
        Some(r#"{"name":"backup script"}"#),
    );
    assert_eq!(code, 201, "{v}");
    let token = v["token"].as_str().expect("token").to_owned();
    let id = v["id"].as_str().expect("id").to_owned();
    let bearer = format!("Authorization: Bearer {token}");
    let (code, v) = api(&server, &["-H", &bearer], "GET", "/account", None);
    assert_eq!((code, v["user"].as_str()), (200, Some("ann")));
    let (_, v) = api(&server, &["-H", &bearer], "GET", "/tokens", None);
    assert_eq!(v["tokens"][0]["name"], "backup script");
    assert!(
        !v.to_string().contains(&token),
        "a list never shows secrets"
    );
    let listed = server.cli(&["token", "list", "--user", "ann"], None);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&id));
    assert_eq!(
        api(&server, &ann, "DELETE", &format!("/tokens/{id}"), None).0,
        200
    );
    assert_eq!(
        api(&server, &["-H", &bearer], "GET", "/account", None).0,
        401
    );
    let made = server.cli(&["token", "create", "--user", "bob"], None);
    assert!(made.status.success());
    let bob_token = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    let bob = format!("Authorization: Bearer {bob_token}");
    assert_eq!(
        api(&server, &["-H", &bob], "GET", "/account", None).1["user"],
        "bob"
    );

    // Files.
    assert_eq!(server.put("ann:ann-password", "/f.txt", b"hello"), 201);
    let (code, v) = api(&server, &ann, "GET", "/files?path=/", None);
    assert_eq!(code, 200);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["Add", "Downloads", "f.txt"]);
    let (code, v) = api(
        &server,
        &ann,
        "POST",
        "/files/mkdir",
        Some(r#"{"path":"/a b"}"#),
    );
    assert_eq!((code, v["type"].as_str()), (201, Some("folder")));
    let (code, v) = api(
        &server,
        &ann,
        "POST",
        "/files/mkdir",
        Some(r#"{"path":"/a b"}"#),
    );
    assert_eq!((code, code_of(&v)), (409, "exists"));
    let (code, _) = api(
        &server,
        &ann,
        "POST",
        "/files/move",
        Some(r#"{"from":"/f.txt","to":"/a b/g.txt"}"#),
    );
    assert_eq!(code, 200);
    let (code, v) = api(&server, &ann, "GET", "/files?path=/a%20b/g.txt", None);
    assert_eq!(code, 200);
    assert_eq!(
        (v["size"].as_u64(), v["url"].as_str()),
        (Some(5), Some("/dav/a%20b/g.txt"))
    );
    assert_eq!(
        curl(&[
            "-u",
            "ann:ann-password",
            &format!("http://{}{}", server.addr, "/dav/a%20b/g.txt")
        ]),
        (200, b"hello".to_vec())
    );
    assert_eq!(server.put("ann:ann-password", "/h.txt", b"x"), 201);
    let (code, v) = api(
        &server,
        &ann,
        "POST",
        "/files/move",
        Some(r#"{"from":"/h.txt","to":"/a b/g.txt"}"#),
    );
    assert_eq!(
        (code, code_of(&v)),
        (409, "exists"),
        "never over an existing name"
    );
    let (code, v) = api(&server, &ann, "GET", "/files?path=/../etc", None);
    assert_eq!((code, code_of(&v)), (400, "invalid_name"));
    let (code, v) = api(&server, &ann, "DELETE", "/files?path=/Add", None);
    assert_eq!(code, 403, "{v}");
    // Each user sees only their own drive.
    let (code, v) = api(&server, &["-H", &bob], "GET", "/files?path=/a%20b", None);
    assert_eq!((code, code_of(&v)), (404, "not_found"));
    let (code, _) = api(&server, &ann, "DELETE", "/files?path=/a%20b", None);
    assert_eq!(code, 200);
    let (code, v) = api(&server, &ann, "GET", "/files?path=/a%20b/g.txt", None);
    assert_eq!((code, code_of(&v)), (404, "not_found"));

    // Bad bodies.
    let (code, v) = api(
        &server,
        &ann,
        "POST",
        "/transfers",
        Some(r#"{"link":"ftp://x"}"#),
    );
    assert_eq!((code, code_of(&v)), (400, "bad_link"));
    let (code, v) = api(&server, &ann, "POST", "/files/mkdir", Some("{"));
    assert_eq!((code, code_of(&v)), (400, "bad_json"));
    let (code, v) = api(&server, &ann, "DELETE", "/transfers/xyz", None);
    assert_eq!((code, code_of(&v)), (400, "bad_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_are_added_listed_and_removed() {
    if !have("curl") {
        return;
    }
    let tracker = swarm::Tracker::start().await;
    let work = tempfile::tempdir().expect("tempdir");
    let one = swarm::one_file(work.path(), "clip.bin", 1 << 20, &tracker.url, 64 << 10).await;
    let _seeder = swarm::seed(work.path(), &one.torrent, &one.dir, None).await;
    let hash = swarm::info_hash(&one.torrent);
    let server = Server::start();
    server.add_user("t", "transfer-password", None);
    let auth = ["-u", "t:transfer-password"];
    // curl off the async threads: the seeder runs on them.
    let call = |method: &str, path: &str, body: Option<&str>| {
        tokio::task::block_in_place(|| api(&server, &auth, method, path, body))
    };
    let torrent_file = work.path().join("clip.torrent");
    std::fs::write(&torrent_file, &one.torrent).expect("write");
    let url = format!("http://{}/api/v1/transfers?name=clip", server.addr);
    let (code, body) = tokio::task::block_in_place(|| {
        curl(&[
            "-u",
            "t:transfer-password",
            "-H",
            "Content-Type: application/x-bittorrent",
            "--data-binary",
            &format!("@{}", torrent_file.display()),
            &url,
        ])
    });
    assert_eq!(code, 202, "{}", String::from_utf8_lossy(&body));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = call("GET", "/transfers", None);
        let t = v["transfers"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
            .unwrap_or_default();
        if t["id"] == hash.as_str()
            && ["seeding", "completed"].contains(&t["state"].as_str().unwrap_or_default())
        {
            assert_eq!(t["size"].as_u64(), Some(1 << 20));
            break;
        }
        assert!(Instant::now() < deadline, "not complete: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, v) = call("GET", "/files?path=/Downloads/clip.bin", None);
    assert_eq!((code, v["size"].as_u64()), (200, Some(1 << 20)));
    let (code, v) = call("DELETE", &format!("/transfers/{hash}"), None);
    assert_eq!((code, v["files"].as_u64()), (200, Some(1)));
    let (code, _) = call("GET", "/files?path=/Downloads/clip.bin", None);
    assert_eq!(code, 404);
    let (_, v) = call("GET", "/transfers", None);
    assert_eq!(v["transfers"], serde_json::json!([]));
    let (code, v) = call("DELETE", &format!("/transfers/{hash}"), None);
    assert_eq!((code, code_of(&v)), (404, "not_found"));
    // A magnet link as JSON.
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn=clip.bin&tr={}", tracker.url);
    let body = serde_json::json!({ "link": magnet }).to_string();
    let (code, v) = call("POST", "/transfers", Some(&body));
    assert_eq!(code, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, _) = call("GET", "/files?path=/Downloads/clip.bin", None);
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the magnet's file did not appear"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_openapi_document_matches_the_server() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("o", "openapi-password", None);
    let (code, doc) = api(&server, &[], "GET", "/openapi.json", None);
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(
        documented,
        [
            "/account",
            "/files",
            "/files/mkdir",
            "/files/move",
            "/openapi.json",
            "/tokens",
            "/tokens/{id}",
            "/transfers",
            "/transfers/{id}"
        ]
    );
    let auth = ["-u", "o:openapi-password"];
    for (path, ops) in paths {
        let concrete = path.replace("{id}", "0000000000000000000000000000000000000000");
        for method in ops.as_object().expect("operations").keys() {
            let method = method.to_uppercase();
            let query = if path == "/files" { "?path=/" } else { "" };
            let body = (method == "POST").then_some("{}");
            let (code, v) = api(&server, &auth, &method, &format!("{concrete}{query}"), body);
            // Served by a handler: anything but "no such endpoint" or "method not allowed".
            assert!(
                code_of(&v) != "no_such_endpoint" && code != 405,
                "{method} {path}: {code} {v}"
            );
            let documented: Vec<&String> = ops[method.to_lowercase().as_str()]["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .collect();
            assert!(
                documented.iter().any(|s| s.as_str() == code.to_string()),
                "{method} {path} answered {code}, documented {documented:?}"
            );
        }
    }
}
