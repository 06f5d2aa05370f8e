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
    // curl waits for a body after `-X HEAD`; `-I` knows better.
    if method == "HEAD" {
        args.push("-I");
    } else {
        args.extend(["-X", method]);
    }
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
            "/files/content",
            "/files/mkdir",
            "/files/move",
            "/openapi.json",
            "/session",
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
            let query = if path.starts_with("/files") && !path.contains("/m") {
                "?path=/"
            } else {
                ""
            };
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

/// Headers of a curl `-D` dump, lower-cased names.
fn header(dump: &str, name: &str) -> Option<String> {
    dump.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// curl with response headers: (status, headers, body).
fn curl_headers(args: &[&str]) -> (u16, String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dump = dir.path().join("headers");
    let mut all = vec!["-D", dump.to_str().expect("path")];
    all.extend_from_slice(args);
    let (code, body) = curl(&all);
    let headers = std::fs::read_to_string(&dump).unwrap_or_default();
    (code, headers, body)
}

#[test]
fn the_page_signs_in_with_a_cookie_and_guards_changes() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("pat", "pat-password", Some("2M"));
    server.add_user("quinn", "quinn-password", None);
    let base = format!("http://{}", server.addr);
    let work = tempfile::tempdir().expect("tempdir");
    let jar = work.path().join("cookies");
    let jar = jar.to_str().expect("path");

    // The page itself: no assets from elsewhere, no inline script, revalidated by ETag.
    let (code, head, body) = curl_headers(&[&format!("{base}/")]);
    assert_eq!(code, 200);
    let policy = header(&head, "content-security-policy").expect("CSP");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"));
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("<script src=\"/app.js\""));
    assert!(!html.contains("http://") && !html.contains("https://"));
    let etag = header(&head, "etag").expect("etag");
    let (code, _, _) = curl_headers(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        &format!("{base}/app.js"),
    ]);
    assert_eq!(code, 200, "another file has another ETag");
    let (code, _, _) =
        curl_headers(&["-H", &format!("If-None-Match: {etag}"), &format!("{base}/")]);
    assert_eq!(code, 304);
    for asset in ["/app.js", "/app.css"] {
        let (code, body) = curl(&[&format!("{base}{asset}")]);
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset} loads from another host"
        );
    }
    assert_eq!(curl(&["-X", "POST", &format!("{base}/")]).0, 405);

    // Signing in: JSON only, a wrong password refused, then the cookie.
    let sign_in = |user: &str, password: &str| {
        api(
            &server,
            &["-c", jar],
            "POST",
            "/session",
            Some(&format!(r#"{{"user":"{user}","password":"{password}"}}"#)),
        )
    };
    let (code, v) = sign_in("pat", "wrong");
    assert_eq!((code, code_of(&v)), (401, "bad_credentials"));
    let url = format!("{base}/api/v1/session");
    let (code, _) = curl(&[
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        r#"{"user":"pat","password":"pat-password"}"#,
        &url,
    ]);
    assert_eq!(code, 415, "a cross-site form could sign the browser in");
    let (code, head, body) = curl_headers(&[
        "-c",
        jar,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        r#"{"user":"pat","password":"pat-password"}"#,
        &url,
    ]);
    assert_eq!(code, 201);
    let cookie = header(&head, "set-cookie").expect("cookie");
    assert!(cookie.starts_with("td_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP can't keep a Secure cookie"
    );
    let v: Value = serde_json::from_slice(&body).expect("json");
    let csrf = v["csrf"].as_str().expect("csrf").to_owned();
    let page = ["-b", jar];
    let (code, v) = api(&server, &page, "GET", "/session", None);
    assert_eq!(
        (code, v["user"].as_str(), v["csrf"].as_str()),
        (200, Some("pat"), Some(csrf.as_str()))
    );
    let (code, v) = api(&server, &page, "GET", "/account", None);
    assert_eq!((code, v["user"].as_str()), (200, Some("pat")));

    // Changes need the CSRF token.
    let (code, v) = api(
        &server,
        &page,
        "POST",
        "/files/mkdir",
        Some(r#"{"path":"/Films"}"#),
    );
    assert_eq!((code, code_of(&v)), (403, "csrf"));
    let wrong = ["-b", jar, "-H", "X-CSRF-Token: 00"];
    let (code, _) = api(
        &server,
        &wrong,
        "POST",
        "/files/mkdir",
        Some(r#"{"path":"/Films"}"#),
    );
    assert_eq!(code, 403);
    let csrf_header = format!("X-CSRF-Token: {csrf}");
    let page = ["-b", jar, "-H", csrf_header.as_str()];
    let (code, v) = api(
        &server,
        &page,
        "POST",
        "/files/mkdir",
        Some(r#"{"path":"/Films"}"#),
    );
    assert_eq!(code, 201, "{v}");

    // Upload: all or nothing, never over a file unless asked, within the quota.
    let file = work.path().join("clip.mp4");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let file = file.to_str().expect("path");
    let content = |path: &str| format!("{base}/api/v1/files/content?path={path}");
    let put = |extra: &str, data_file: &str| {
        curl(&[
            "-b",
            jar,
            "-H",
            &csrf_header,
            "-T",
            data_file,
            &format!("{}{extra}", content("/Films/clip.mp4")),
        ])
        .0
    };
    assert_eq!(put("", file), 201);
    assert_eq!(
        put("", file),
        409,
        "over an existing file without overwrite=1"
    );
    // Path tricks and hostile names: refused, nothing written anywhere.
    for (path, want) in [
        ("/../escape", 400),
        ("/Films/..%2F..%2Fescape", 400),
        ("/Films/a%0Ab", 400),
        ("/", 403),
        ("/nowhere/x", 404),
    ] {
        let (code, v) = curl(&["-b", jar, "-H", &csrf_header, "-T", file, &content(path)]);
        let v: Value = serde_json::from_slice(&v).unwrap_or(Value::Null);
        assert_eq!(code, want, "PUT {path}: {v}");
        assert!(!code_of(&v).is_empty(), "PUT {path}: no error code");
    }
    assert_eq!(put("&overwrite=1", file), 201);
    let big = work.path().join("big");
    std::fs::write(&big, vec![1u8; 3 << 20]).expect("write");
    assert_eq!(
        curl(&[
            "-b",
            jar,
            "-H",
            &csrf_header,
            "-T",
            big.to_str().expect("path"),
            &content("/Films/big")
        ])
        .0,
        507
    );
    let (code, v) = api(&server, &page, "GET", "/files?path=/Films", None);
    assert_eq!(code, 200);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["clip.mp4"],
        "a refused upload left something behind"
    );

    // Reading: whole, ranges, HEAD, conditional.
    let (code, head, body) = curl_headers(&["-b", jar, &content("/Films/clip.mp4")]);
    assert_eq!(code, 200);
    assert!(body == data);
    assert_eq!(header(&head, "content-type").as_deref(), Some("video/mp4"));
    assert!(header(&head, "content-disposition").is_some_and(|d| d.starts_with("inline")));
    assert!(header(&head, "content-security-policy").is_some_and(|p| p.contains("sandbox")));
    assert_eq!(header(&head, "accept-ranges").as_deref(), Some("bytes"));
    let etag = header(&head, "etag").expect("etag");
    let (code, head, body) =
        curl_headers(&["-b", jar, "-r", "1000-1999", &content("/Films/clip.mp4")]);
    assert_eq!(code, 206);
    assert!(body == data[1000..2000]);
    assert_eq!(
        header(&head, "content-range").as_deref(),
        Some("bytes 1000-1999/1000000")
    );
    let (code, _, body) = curl_headers(&["-b", jar, "-r", "-10", &content("/Films/clip.mp4")]);
    assert_eq!((code, body.as_slice()), (206, &data[999_990..]));
    let (code, head, _) = curl_headers(&["-b", jar, "-r", "2000000-", &content("/Films/clip.mp4")]);
    assert_eq!(code, 416);
    assert_eq!(
        header(&head, "content-range").as_deref(),
        Some("bytes */1000000")
    );
    let (code, _, _) = curl_headers(&[
        "-b",
        jar,
        "-H",
        &format!("If-None-Match: {etag}"),
        &content("/Films/clip.mp4"),
    ]);
    assert_eq!(code, 304);
    // If-Range with an old version: the whole file, not a piece of a different one.
    let (code, _, body) = curl_headers(&[
        "-b",
        jar,
        "-r",
        "0-9",
        "-H",
        "If-Range: \"old\"",
        &content("/Films/clip.mp4"),
    ]);
    assert_eq!((code, body.len()), (200, 1_000_000));
    let (code, head, _) = curl_headers(&["-b", jar, "-I", &content("/Films/clip.mp4")]);
    assert_eq!(
        (code, header(&head, "content-length").as_deref()),
        (200, Some("1000000"))
    );
    let (code, _) = api(&server, &page, "GET", "/files/content?path=/Films", None);
    assert_eq!(code, 409, "a folder has no content");
    let (code, _) = api(&server, &page, "GET", "/files/content?path=/nothing", None);
    assert_eq!(code, 404);
    // A page from a torrent can't run in ours: downloaded, never shown.
    assert_eq!(
        server.put(
            "pat:pat-password",
            "/evil.html",
            b"<script>alert(1)</script>"
        ),
        201
    );
    let (_, head, _) = curl_headers(&["-b", jar, &content("/evil.html")]);
    assert!(
        header(&head, "content-disposition").is_some_and(|d| d.starts_with("attachment")),
        "{head}"
    );

    // A stream URL works without signing in, for that file only, until the password changes.
    let (_, v) = api(&server, &page, "GET", "/files?path=/Films/clip.mp4", None);
    let stream = format!("{base}{}", v["stream_url"].as_str().expect("stream_url"));
    let (code, body) = curl(&["-r", "0-99", &stream]);
    assert_eq!((code, body.as_slice()), (206, &data[..100]));
    let (code, _) = curl(&[&stream.replace("clip.mp4", "big")]);
    assert_eq!(code, 403, "a ticket for another file");
    let ticket = stream.split("ticket=").nth(1).expect("ticket");
    let (code, _) = api(
        &server,
        &[],
        "GET",
        &format!("/files?path=/&ticket={ticket}"),
        None,
    );
    assert_eq!(code, 401, "a ticket only reads content");

    // Users see only their own drive, whatever they ask.
    let quinn_jar = work.path().join("quinn");
    let quinn = quinn_jar.to_str().expect("path");
    let (code, _) = api(
        &server,
        &["-c", quinn],
        "POST",
        "/session",
        Some(r#"{"user":"quinn","password":"quinn-password"}"#),
    );
    assert_eq!(code, 201);
    let (code, _) = api(
        &server,
        &["-b", quinn],
        "GET",
        "/files/content?path=/Films/clip.mp4",
        None,
    );
    assert_eq!(code, 404);
    let (code, _) = api(&server, &["-b", quinn], "GET", "/files?path=/Films", None);
    assert_eq!(code, 404);

    // Sign out: the cookie is cleared and the session is over, on the server too.
    let stolen = std::fs::read_to_string(jar).expect("jar");
    let (code, head, _) = curl_headers(&[
        "-b",
        jar,
        "-c",
        jar,
        "-H",
        &csrf_header,
        "-X",
        "DELETE",
        &url,
    ]);
    assert_eq!(code, 200);
    assert!(header(&head, "set-cookie").is_some_and(|c| c.contains("Max-Age=0")));
    let old = work.path().join("stolen");
    std::fs::write(&old, stolen).expect("write");
    let (code, v) = api(
        &server,
        &["-b", old.to_str().expect("path")],
        "GET",
        "/account",
        None,
    );
    assert_eq!((code, code_of(&v)), (401, "session_ended"));

    // A new password ends sessions and stream URLs.
    let out = server.cli(
        &["user", "passwd", "quinn", "--password-stdin"],
        Some("another-password"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _) = api(&server, &["-b", quinn], "GET", "/account", None);
    assert_eq!(code, 401);
    let out = server.cli(
        &["user", "passwd", "pat", "--password-stdin"],
        Some("new-pat-password"),
    );
    assert!(out.status.success());
    let (code, _) = curl(&[&stream]);
    assert_eq!(code, 403);
}

#[test]
fn failed_page_sign_ins_are_held_back() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("sam", "sam-password", None);
    let mut last = 0;
    for _ in 0..21 {
        last = api(
            &server,
            &[],
            "POST",
            "/session",
            Some(r#"{"user":"sam","password":"nope"}"#),
        )
        .0;
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "no limit on failed sign-ins");
    // The right password from that address waits too; WebDAV shares the record.
    let (code, v) = api(
        &server,
        &[],
        "POST",
        "/session",
        Some(r#"{"user":"sam","password":"sam-password"}"#),
    );
    assert_eq!((code, code_of(&v)), (429, "too_many_attempts"));
    assert_eq!(curl(&["-u", "sam:sam-password", &server.url("/")]).0, 429);
}

#[test]
fn a_link_still_fetching_metadata_is_cancelled_by_deleting_its_drop() {
    if !have("curl") {
        return;
    }
    let server = Server::start();
    server.add_user("cat", "cat-password", None);
    let auth = ["-u", "cat:cat-password"];
    // A tracker that takes connections and never answers: the metadata fetch waits (up to
    // 300 s) until cancelled.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            held.push(conn);
        }
    });
    let link = format!(
        r#"{{"link":"magnet:?xt=urn:btih:{}&dn=Never+Seen&tr=http%3A%2F%2F127.0.0.1%3A{port}%2Fannounce"}}"#,
        "ab".repeat(20)
    );
    let (code, v) = api(&server, &auth, "POST", "/transfers", Some(&link));
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["added"], "/Add/Never Seen.magnet");
    let deadline = Instant::now() + Duration::from_secs(20);
    let pending = loop {
        let (_, v) = api(&server, &auth, "GET", "/transfers", None);
        if let Some(t) = v["transfers"].as_array().and_then(|l| l.first()) {
            break t.clone();
        }
        assert!(Instant::now() < deadline, "the link never showed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(pending["state"], "fetching metadata", "{pending}");
    assert_eq!(pending["id"], "");
    assert_eq!(pending["drop"], "/Add/Never Seen.magnet");

    let drop = pending["drop"].as_str().expect("drop");
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("path", drop)
        .finish();
    let (code, v) = api(&server, &auth, "DELETE", &format!("/files?{query}"), None);
    assert_eq!(code, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = api(&server, &auth, "GET", "/transfers", None);
        if v["transfers"].as_array().is_some_and(|l| l.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "still fetching: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Cancelled, not failed: no error file appears.
    std::thread::sleep(Duration::from_secs(1));
    let (_, v) = api(&server, &auth, "GET", "/files?path=/Add", None);
    let names: Vec<&str> = v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["status.txt"], "{v}");
}
