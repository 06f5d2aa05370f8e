//! WebDAV behaviour over HTTP, driven with curl against the real binary.

mod common;
use common::*;

const PW: &str = "password-1";

fn setup() -> Option<(Server, String)> {
    if !have("curl") {
        return None;
    }
    let server = Server::start();
    server.add_user("u", PW, None);
    Some((server, creds("u", PW)))
}

fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn put_get_ranges_and_conditions() {
    let Some((s, u)) = setup() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("movie.mp4");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data).expect("write");
    let url = s.url("/movie.mp4");
    let (code, _) = curl(&["-u", &u, "-T", file.to_str().expect("path"), &url]);
    assert_eq!(code, 201);
    let (code, _) = curl(&["-u", &u, "-T", file.to_str().expect("path"), &url]);
    assert_eq!(code, 204, "overwrite");

    let (code, head) = curl(&["-u", &u, "-I", &url]);
    assert_eq!(code, 200);
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_eq!(header(&head, "content-type"), Some("video/mp4"));
    assert_eq!(header(&head, "content-length"), Some("300000"));
    assert!(header(&head, "last-modified").is_some());
    let etag = header(&head, "etag").expect("etag").to_owned();

    let (code, body) = curl(&["-u", &u, &url]);
    assert_eq!((code, body.len()), (200, data.len()));
    assert!(body == data);

    let (code, body) = curl(&["-u", &u, "-r", "1000-1999", &url]);
    assert_eq!(code, 206);
    assert!(body == data[1000..2000]);
    let (code, body) = curl(&["-u", &u, "-r", "-100", &url]);
    assert_eq!(code, 206);
    assert!(body == data[data.len() - 100..], "suffix range");
    let (code, body) = curl(&["-u", &u, "-r", "0-9,100-109", &url]);
    assert_eq!(code, 206);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("Content-Range: bytes 0-9/300000"),
        "multipart: {text}"
    );
    assert!(text.contains("Content-Range: bytes 100-109/300000"));
    let (code, _) = curl(&["-u", &u, "-r", "400000-", &url]);
    assert_eq!(code, 416);

    // If-Range with the current ETag gives the range, with a stale one the whole file.
    let (code, _) = curl(&[
        "-u",
        &u,
        "-r",
        "0-9",
        "-H",
        &format!("If-Range: {etag}"),
        &url,
    ]);
    assert_eq!(code, 206);
    let (code, body) = curl(&["-u", &u, "-r", "0-9", "-H", "If-Range: \"stale\"", &url]);
    assert_eq!((code, body.len()), (200, data.len()));
    // Conditional GET and PUT.
    let (code, _) = curl(&["-u", &u, "-H", &format!("If-None-Match: {etag}"), &url]);
    assert_eq!(code, 304);
    let (code, _) = curl(&[
        "-u",
        &u,
        "-H",
        "If-Match: \"stale\"",
        "-T",
        "/dev/null",
        &url,
    ]);
    assert_eq!(code, 412);
    let (code, _) = curl(&["-u", &u, "-H", "If-None-Match: *", "-T", "/dev/null", &url]);
    assert_eq!(code, 412);
    let (code, _) = curl(&[
        "-u",
        &u,
        "-H",
        &format!("If-Match: {etag}"),
        "-T",
        "/dev/null",
        &url,
    ]);
    assert_eq!(code, 204);
    let (code, head) = curl(&["-u", &u, "-I", &url]);
    assert_eq!(code, 200);
    let head = String::from_utf8_lossy(&head).into_owned();
    assert_ne!(
        header(&head, "etag"),
        Some(etag.as_str()),
        "ETag changes with content"
    );
}

#[test]
fn propfind_depths_quota_and_listing() {
    let Some((s, u)) = setup() else { return };
    s.cli(&["user", "quota", "u", "1M"], None);
    let (code, _) = curl(&["-u", &u, "-X", "MKCOL", &s.url("/dir")]);
    assert_eq!(code, 201);
    let (code, _) = curl(&[
        "-u",
        &u,
        "--data-binary",
        "hello",
        "-X",
        "PUT",
        &s.url("/dir/a.txt"),
    ]);
    assert_eq!(code, 201);

    let (code, body) = curl(&["-u", &u, "-X", "PROPFIND", "-H", "Depth: 1", &s.url("/")]);
    assert_eq!(code, 207);
    let body = String::from_utf8_lossy(&body);
    for href in ["/dav/", "/dav/Add/", "/dav/Downloads/", "/dav/dir/"] {
        assert!(
            body.contains(&format!("<D:href>{href}</D:href>")),
            "{href} in {body}"
        );
    }
    assert!(!body.contains("a.txt"), "depth 1 only");
    let (code, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        &s.url("/dir/"),
    ]);
    assert_eq!(code, 207);
    assert_eq!(
        String::from_utf8_lossy(&body)
            .matches("<D:response>")
            .count(),
        1
    );
    let (code, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: infinity",
        &s.url("/"),
    ]);
    assert_eq!(code, 403);
    assert!(String::from_utf8_lossy(&body).contains("propfind-finite-depth"));

    // RFC 4331 quota on every collection, for this user.
    let query = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/><D:quota-available-bytes/></D:prop></D:propfind>"#;
    for path in ["/", "/dir/", "/Downloads/"] {
        let (code, body) = curl(&[
            "-u",
            &u,
            "-X",
            "PROPFIND",
            "-H",
            "Depth: 0",
            "--data",
            query,
            &s.url(path),
        ]);
        assert_eq!(code, 207);
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("<D:quota-used-bytes>5</D:quota-used-bytes>"),
            "{path}: {body}"
        );
        assert!(
            body.contains(&format!(
                "<D:quota-available-bytes>{}</D:quota-available-bytes>",
                (1 << 20) - 5
            )),
            "{path}: {body}"
        );
    }

    // A browser gets an HTML listing of a folder.
    let (code, body) = curl(&["-u", &u, "-H", "Accept: text/html", &s.url("/dir/")]);
    assert_eq!(code, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("<html") && body.contains("a.txt"), "{body}");

    // Malformed XML: 400, and the server keeps serving.
    let (code, _) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "--data",
        "<D:propfind xmlns:D=\"DAV:\"><D:prop>",
        &s.url("/"),
    ]);
    assert_eq!(code, 400);
    let (code, _) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPPATCH",
        "--data",
        "<<<not xml",
        &s.url("/dir/a.txt"),
    ]);
    assert_eq!(code, 400);
    let (code, _) = curl(&["-u", &u, "-X", "PROPFIND", "-H", "Depth: 0", &s.url("/")]);
    assert_eq!(code, 207);
}

#[test]
fn auth_and_isolation() {
    let Some((s, u)) = setup() else { return };
    s.add_user("other", "other-password", None);
    let (code, _) = curl(&[
        "--data-binary",
        "mine",
        "-u",
        &u,
        "-X",
        "PUT",
        &s.url("/secret.txt"),
    ]);
    assert_eq!(code, 201);
    let (c1, b1) = curl(&["-u", "u:wrong-password", &s.url("/")]);
    let (c2, b2) = curl(&["-u", "nobody:wrong-password", &s.url("/")]);
    let (c3, _) = curl(&[&s.url("/")]);
    assert_eq!((c1, c2, c3), (401, 401, 401));
    assert_eq!(b1, b2, "a wrong user and a wrong password look the same");
    let o = creds("other", "other-password");
    let (code, _) = curl(&["-u", &o, &s.url("/secret.txt")]);
    assert_eq!(code, 404, "users see only their own drive");
    let (code, body) = curl(&["-u", &o, "-X", "PROPFIND", "-H", "Depth: 1", &s.url("/")]);
    assert_eq!(code, 207);
    assert!(!String::from_utf8_lossy(&body).contains("secret"));
    // `/` is the web page, open to all: it signs in through the API.
    let (code, body) = curl(&[&format!("http://{}/", s.addr)]);
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("<title>torrentdrive</title>"));
    let (code, _) = curl(&[&format!("http://{}/elsewhere", s.addr)]);
    assert_eq!(code, 404);
}

#[test]
fn hostile_paths_never_escape() {
    let Some((s, u)) = setup() else { return };
    let long = "x".repeat(300);
    for (path, expected) in [
        ("/../etc/passwd", &[403][..]),
        ("/%2e%2e/%2e%2e/etc/passwd", &[403]),
        ("/a/../../../etc/passwd", &[403]),
        ("/a%2fb", &[400]),
        ("/a%2Fb", &[400]),
        ("/a%00b", &[400]),
        ("/ctl%01char", &[400, 403]),
        (&format!("/{long}"), &[400, 403]),
    ] {
        let (code, _) = curl(&["-u", &u, "--data-binary", "x", "-X", "PUT", &s.url(path)]);
        assert!(expected.contains(&code), "PUT {path}: {code}");
    }
    // Nothing odd was created, and nothing outside the drive is served.
    let (_, body) = curl(&["-u", &u, "-X", "PROPFIND", "-H", "Depth: 1", &s.url("/")]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(body.matches("<D:response>").count(), 3, "{body}");
    let (code, body) = curl(&["-u", &u, &format!("http://{}/dav/../../etc/passwd", s.addr)]);
    assert_ne!(code, 200);
    assert!(!String::from_utf8_lossy(&body).contains("root:"));
    // MOVE to a destination outside the drive.
    curl(&["-u", &u, "--data-binary", "x", "-X", "PUT", &s.url("/f")]);
    let (code, _) = curl(&[
        "-u",
        &u,
        "-X",
        "MOVE",
        "-H",
        &format!("Destination: http://{}/etc/f", s.addr),
        &s.url("/f"),
    ]);
    assert!(code >= 400, "MOVE out of the drive: {code}");
    let (code, _) = curl(&["-u", &u, &s.url("/f")]);
    assert_eq!(code, 200);
}

#[test]
fn over_quota_and_dropped_uploads_leave_nothing() {
    let Some((s, u)) = setup() else { return };
    s.cli(&["user", "quota", "u", "100K"], None);
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![1u8; 150_000]).expect("write");
    let (code, _) = curl(&["-u", &u, "-T", big.to_str().expect("path"), &s.url("/big")]);
    assert_eq!(code, 507, "announced size over quota");
    let (code, _) = curl(&[
        "-u",
        &u,
        "-H",
        "Transfer-Encoding: chunked",
        "-T",
        big.to_str().expect("path"),
        &s.url("/big"),
    ]);
    assert_eq!(code, 507, "streamed past the quota");
    let (code, _) = curl(&["-u", &u, "-I", &s.url("/big")]);
    assert_eq!(code, 404, "nothing partial left");

    // An overwrite that fails keeps the old version.
    let (code, _) = curl(&[
        "-u",
        &u,
        "--data-binary",
        "old version",
        "-X",
        "PUT",
        &s.url("/keep"),
    ]);
    assert_eq!(code, 201);
    let (code, _) = curl(&["-u", &u, "-T", big.to_str().expect("path"), &s.url("/keep")]);
    assert_eq!(code, 507);
    assert_eq!(curl(&["-u", &u, &s.url("/keep")]).1, b"old version");

    // A client that goes away mid-PUT leaves nothing, and the old version where there was one.
    s.cli(&["user", "quota", "u", "none"], None);
    for path in ["/dropped", "/keep"] {
        let mut stream = std::net::TcpStream::connect(s.addr).expect("connect");
        use base64_free::encode;
        use std::io::Write;
        let req = format!(
            "PUT /dav{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\nContent-Length: 5000000\r\n\r\n",
            encode(&u)
        );
        stream.write_all(req.as_bytes()).expect("send");
        stream.write_all(&vec![7u8; 2_000_000]).expect("send");
        drop(stream);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(curl(&["-u", &u, "-I", &s.url("/dropped")]).0, 404);
    assert_eq!(curl(&["-u", &u, &s.url("/keep")]).1, b"old version");
    let tmp = std::fs::read_dir(s.data.join("tmp")).expect("tmp").count();
    assert_eq!(tmp, 0, "staging files are cleaned up");
}

/// Enough base64 for a Basic header, to keep test dependencies small.
mod base64_free {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &c)| n | (c as u32) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[test]
fn large_transfers_keep_memory_flat() {
    let Some((s, u)) = setup() else { return };
    const SIZE: u64 = 1 << 30;
    let before = s.peak_rss_kib();
    // Upload 1 GiB streamed from a generator, then download it to a hash.
    let up = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c {SIZE} /dev/zero | tr '\\0' 'z' | curl -s -f -u {u} -T - {}",
            s.url("/big.bin")
        ))
        .status()
        .expect("upload");
    assert!(up.success());
    let down = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("curl -s -f -u {u} {} | wc -c", s.url("/big.bin")))
        .output()
        .expect("download");
    assert_eq!(
        String::from_utf8_lossy(&down.stdout).trim(),
        SIZE.to_string()
    );
    let after = s.peak_rss_kib();
    eprintln!("daemon peak RSS: {before} KiB before, {after} KiB after 1 GiB up and down");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[test]
fn dead_properties_and_propfind_details() {
    let Some((s, u)) = setup() else { return };
    s.add_user("v", "v-password", None);
    let v = creds("v", "v-password");
    for who in [&u, &v] {
        assert_eq!(
            curl(&["-u", who, "-X", "MKCOL", &s.url("/shared-name")]).0,
            201
        );
    }
    let set = r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:example"><D:set><D:prop><Z:color>blue &amp; green</Z:color></D:prop></D:set></D:propertyupdate>"#;
    let (code, _) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPPATCH",
        "--data",
        set,
        &s.url("/shared-name"),
    ]);
    assert_eq!(code, 207);
    let ask = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><Z:color xmlns:Z="urn:example"/><D:getetag/><Q:nothing xmlns:Q="urn:q"/></D:prop></D:propfind>"#;
    let (code, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "--data",
        ask,
        &s.url("/shared-name"),
    ]);
    assert_eq!(code, 207);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(body.contains("blue &amp; green"), "{body}");
    assert!(body.contains("<D:getetag>\""), "quoted entity tag: {body}");
    assert!(
        body.contains("404 Not Found") && body.contains("nothing"),
        "{body}"
    );
    // The other user's folder of the same name has no such property.
    let (_, body) = curl(&[
        "-u",
        &v,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "--data",
        ask,
        &s.url("/shared-name"),
    ]);
    assert!(!String::from_utf8_lossy(&body).contains("blue"));
    // propname lists it; allprop includes it.
    let names = r#"<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:propname/></D:propfind>"#;
    let (_, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        "--data",
        names,
        &s.url("/shared-name"),
    ]);
    assert!(String::from_utf8_lossy(&body).contains("color"));
    let (_, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        &s.url("/shared-name"),
    ]);
    assert!(String::from_utf8_lossy(&body).contains("blue &amp; green"));
    // The PROPFIND ETag is the one GET sends.
    curl(&[
        "-u",
        &u,
        "--data-binary",
        "x",
        "-X",
        "PUT",
        &s.url("/f.txt"),
    ]);
    let (_, head) = curl(&["-u", &u, "-I", &s.url("/f.txt")]);
    let head = String::from_utf8_lossy(&head).into_owned();
    let etag = header(&head, "etag").expect("etag").to_owned();
    let (_, body) = curl(&[
        "-u",
        &u,
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 0",
        &s.url("/f.txt"),
    ]);
    assert!(String::from_utf8_lossy(&body).contains(&format!("<D:getetag>{etag}</D:getetag>")));
    // Names that need escaping come back percent-encoded in hrefs.
    assert_eq!(
        curl(&["-u", &u, "-X", "MKCOL", &s.url("/a%20%26%20b")]).0,
        201
    );
    let (_, body) = curl(&["-u", &u, "-X", "PROPFIND", "-H", "Depth: 1", &s.url("/")]);
    assert!(String::from_utf8_lossy(&body).contains("<D:href>/dav/a%20%26%20b/</D:href>"));
}
