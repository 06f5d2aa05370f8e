//! The web page in a real headless Chromium: sign in, paste a magnet of a video seeded on
//! loopback, watch the transfer, and play the video while it is still downloading.

mod common;
#[path = "common/swarm.rs"]
mod swarm;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use webdriver::{Browser, CHROMIUM};

/// A 20 s H.264 test pattern in MP4, index first (`+faststart`) so it plays from the start.
fn make_video(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=640x360:rate=25:duration=20"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-b:v", "1200k", "-maxrate", "1200k", "-bufsize", "2400k"])
        .args(["-movflags", "+faststart"])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn page_ready(b: &Browser) {
    b.wait_for(
        "return !document.getElementById('drive-view').hidden",
        Duration::from_secs(20),
        "the drive view after signing in",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_paste_a_magnet_and_play_while_downloading() {
    if !(have(CHROMIUM) && have("chromedriver") && have("ffmpeg") && have("curl")) {
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let seed_dir = work.path().join("seed");
    std::fs::create_dir_all(&seed_dir).expect("mkdir");
    let video = seed_dir.join("clip.mp4");
    tokio::task::block_in_place(|| make_video(&video));
    let original = std::fs::read(&video).expect("read video");
    // Slow enough that the download outlasts the first seconds of playing.
    let swarm::SeededMagnet {
        seeder,
        hash,
        link: magnet,
        ..
    } = swarm::magnet_of(work.path(), &video, Some(256 << 10)).await;

    let server = Server::start();
    server.add_user("viewer", "viewer-password", Some("1G"));
    let page = format!("http://{}/", server.addr);

    tokio::task::block_in_place(|| {
        let b = Browser::start();
        b.go(&page);

        // A wrong password is refused on the page.
        b.type_into("#user", "viewer");
        b.type_into("#password", "wrong-password");
        b.click("#sign-in button[type=submit]");
        b.wait_for(
            "return document.getElementById('sign-in-error').textContent",
            Duration::from_secs(20),
            "the sign-in error",
        );
        // The keyboard alone: Enter in the password field signs in.
        b.type_into("#password", "viewer-password\u{E007}");
        page_ready(&b);
        let who = b.eval("return document.getElementById('who').textContent");
        assert_eq!(who, "viewer");
        // The cookie is HttpOnly: the page's script can't read it.
        let cookies = b.eval("return document.cookie");
        assert_eq!(cookies, "", "the session cookie is visible to script");

        // Paste the magnet.
        b.type_into("#link", &magnet);
        b.click("#add-form button[type=submit]");
        let progress = b.wait_for(
            &format!(
                "const li = document.querySelector('#transfer-list li[data-id=\"{hash}\"]');
                 if (!li) return null;
                 const p = Number(li.querySelector('progress').value);
                 return p > 0 ? p : null;"
            ),
            Duration::from_secs(60),
            "the transfer to show progress",
        );
        let progress = progress.as_f64().expect("progress");
        assert!(progress < 100.0, "downloaded before it could be watched");

        // Its file is in the drive already: open it and play.
        b.go(&format!("{page}#/Downloads"));
        b.click("button[aria-label=\"Play clip.mp4\"]");
        let seen = b.wait_for(
            &format!(
                "const v = document.querySelector('#player-media video');
                 if (!v) return null;
                 if (v.error) return 'error ' + v.error.code + ' ' + v.error.message;
                 if (v.currentTime < 2) return null;
                 const li = document.querySelector('#transfer-list li[data-id=\"{hash}\"]');
                 return {{ time: v.currentTime, width: v.videoWidth,
                          progress: li ? Number(li.querySelector('progress').value) : -1,
                          state: li ? li.dataset.state : '' }};"
            ),
            Duration::from_secs(60),
            "the video to play for 2 s",
        );
        assert!(seen.is_object(), "the video did not play: {seen}");
        eprintln!("playing while downloading: {seen}");
        assert_eq!(seen["width"], 640, "{seen}");
        let at = seen["progress"].as_f64().expect("progress");
        assert!(
            (0.0..100.0).contains(&at) && seen["state"] == "downloading",
            "the video played only after the download: {seen}"
        );
        // It keeps playing.
        b.wait_for(
            "const v = document.querySelector('#player-media video'); return v.currentTime > 4 && !v.paused",
            Duration::from_secs(60),
            "the video to go on playing",
        );

        // The stream URL for VLC/mpv works without the cookie.
        let stream = b.eval("return document.getElementById('stream-url').value");
        let stream = stream.as_str().expect("stream url").to_owned();
        assert!(stream.starts_with(&page), "{stream}");

        // The transfer completes, the page says so, and the bytes are the video's.
        b.wait_for(
            &format!(
                "const li = document.querySelector('#transfer-list li[data-id=\"{hash}\"]');
                 return li && (li.dataset.state === 'seeding' || li.dataset.state === 'completed');"
            ),
            Duration::from_secs(120),
            "the transfer to complete",
        );
        let (code, body) = curl(&[&stream]);
        assert_eq!(code, 200);
        assert!(body == original, "the stream URL served other bytes");

        // Quota and use are shown.
        let usage = b.eval("return document.getElementById('usage-text').textContent");
        assert!(
            usage
                .as_str()
                .is_some_and(|u| u.contains("of 1.0 GiB used")),
            "{usage}"
        );

        // Sign out: back to the form, and the session no longer works.
        b.click("#sign-out");
        b.wait_for(
            "return !document.getElementById('sign-in-view').hidden",
            Duration::from_secs(20),
            "the sign-in form after signing out",
        );
        b.go(&page);
        b.wait_for(
            "return !document.getElementById('sign-in-view').hidden",
            Duration::from_secs(20),
            "the sign-in form after reloading",
        );
    });
    drop(seeder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_upload_rename_move_delete_with_the_keyboard_and_mouse() {
    if !(have(CHROMIUM) && have("chromedriver") && have("curl")) {
        return;
    }
    let server = Server::start();
    server.add_user("files", "files-password", None);
    let u = creds("files", "files-password");
    assert_eq!(server.put(&u, "/notes.txt", b"hello from WebDAV\n"), 201);
    let page = format!("http://{}/", server.addr);
    let work = tempfile::tempdir().expect("tempdir");
    let upload = work.path().join("report.pdf");
    std::fs::write(&upload, vec![7u8; 300_000]).expect("write");
    // A torrent nobody seeds: it stays downloading until cancelled.
    let lonely = work.path().join("lonely.iso");
    std::fs::write(&lonely, vec![9u8; 200_000]).expect("write");
    let torrent = swarm::make_torrent(&lonely, "http://127.0.0.1:9/announce", 16 << 10).await;
    let torrent_file = work.path().join("lonely.torrent");
    std::fs::write(&torrent_file, &torrent).expect("write");
    let hash = swarm::info_hash(&torrent);
    let garbage = work.path().join("broken.torrent");
    std::fs::write(&garbage, b"d8:announce3:abc4:infoi1ee-not-bencode").expect("write");

    tokio::task::block_in_place(|| {
        let b = Browser::start();
        // A phone-sized window.
        b.resize(390, 844);
        b.go(&page);
        b.type_into("#user", "files");
        b.type_into("#password", "files-password");
        b.click("#sign-in button[type=submit]");
        page_ready(&b);
        b.find("tr[data-name=\"notes.txt\"]");

        // New folder, through the dialog.
        b.click("#new-folder");
        b.type_into("#ask-input", "Docs");
        b.click("#ask-ok");
        b.find("tr[data-name=\"Docs\"]");

        // Upload into it, through the file input.
        b.go(&format!("{page}#/Docs"));
        b.wait_for(
            "return document.querySelector('#crumbs li:last-child a')?.textContent === 'Docs'",
            Duration::from_secs(20),
            "the Docs folder",
        );
        b.choose_file("#upload-files", upload.to_str().expect("path"));
        b.find("tr[data-name=\"report.pdf\"]");
        let (code, body) = curl(&["-u", &u, &server.url("/Docs/report.pdf")]);
        assert_eq!(code, 200);
        assert_eq!(body.len(), 300_000);

        // Rename, confirmed with Enter.
        b.click("button[aria-label=\"Rename report.pdf\"]");
        b.type_into("#ask-input", "final.pdf\u{E007}");
        b.find("tr[data-name=\"final.pdf\"]");

        // Move to the root.
        b.click("button[aria-label=\"Move final.pdf\"]");
        b.type_into("#ask-input", "/");
        b.click("#ask-ok");
        b.wait_for(
            "return !document.querySelector('tr[data-name=\"final.pdf\"]')",
            Duration::from_secs(20),
            "final.pdf to leave Docs",
        );
        assert_eq!(curl(&["-u", &u, "-I", &server.url("/final.pdf")]).0, 200);

        // Delete the folder.
        b.go(&format!("{page}#/"));
        b.click("button[aria-label=\"Delete Docs\"]");
        b.click("#ask-ok");
        b.wait_for(
            "return !document.querySelector('tr[data-name=\"Docs\"]')",
            Duration::from_secs(20),
            "Docs to go",
        );
        assert_eq!(curl(&["-u", &u, "-I", &server.url("/Docs/")]).0, 404);

        // Download link: same bytes, as an attachment.
        let href =
            b.eval("return document.querySelector('a[aria-label=\"Download notes.txt\"]').href");
        assert!(href
            .as_str()
            .is_some_and(|h| h.contains("/api/v1/files/content?path=%2Fnotes.txt")));

        // A .torrent chosen on the page starts a transfer; Cancel removes it and its file.
        b.choose_file("#torrent-file", torrent_file.to_str().expect("path"));
        b.find(&format!("#transfer-list li[data-id=\"{hash}\"]"));
        b.find("tr[data-name=\"Downloads\"]");
        assert_eq!(
            curl(&["-u", &u, "-I", &server.url("/Downloads/lonely.iso")]).0,
            200
        );
        b.click("button[aria-label=\"Cancel lonely.iso\"]");
        b.click("#ask-ok");
        b.wait_for(
            &format!("return !document.querySelector('#transfer-list li[data-id=\"{hash}\"]')"),
            Duration::from_secs(20),
            "the cancelled transfer to go",
        );
        assert_eq!(
            curl(&["-u", &u, "-I", &server.url("/Downloads/lonely.iso")]).0,
            404
        );

        // A link still fetching metadata (its tracker never answers) can be cancelled too.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in silent.incoming().flatten() {
                held.push(conn);
            }
        });
        b.type_into(
            "#link",
            &format!(
                "magnet:?xt=urn:btih:{}&dn=Slow+One&tr=http%3A%2F%2F127.0.0.1%3A{port}%2Fannounce",
                "cd".repeat(20)
            ),
        );
        b.click("#add-form button[type=submit]");
        b.click("button[aria-label=\"Cancel Slow One\"]");
        b.click("#ask-ok");
        b.wait_for(
            "return ![...document.querySelectorAll('#transfer-list .t-name')].some(e => e.textContent === 'Slow One')",
            Duration::from_secs(20),
            "the cancelled link to go",
        );

        // A malformed .torrent: shown as failed, with the reason, until dismissed.
        b.choose_file("#torrent-file", garbage.to_str().expect("path"));
        let reason = b.wait_for(
            "const li = document.querySelector('#transfer-list li[data-state=failed]');
             return li && li.querySelector('.t-error').textContent;",
            Duration::from_secs(20),
            "the failed drop",
        );
        assert!(
            reason.as_str().is_some_and(|r| !r.is_empty()),
            "no reason shown: {reason}"
        );
        b.click("button[aria-label=\"Dismiss broken.torrent\"]");
        b.wait_for(
            "return !document.querySelector('#transfer-list li[data-state=failed]')",
            Duration::from_secs(20),
            "the failed drop to be dismissed",
        );
        let (_, add) = curl(&[
            "-u",
            &u,
            "-X",
            "PROPFIND",
            "-H",
            "Depth: 1",
            &server.url("/Add/"),
        ]);
        assert!(
            !String::from_utf8_lossy(&add).contains("broken"),
            "dismissing left the drop or its error file"
        );

        // API tokens: made on the page (shown once, and it works), listed, revoked.
        b.click("#tokens summary");
        b.type_into("#token-name", "phone script");
        b.click("#token-form button[type=submit]");
        let token = b.wait_for(
            "return document.getElementById('new-token-value').value",
            Duration::from_secs(20),
            "the new token",
        );
        let token = token.as_str().expect("token").to_owned();
        assert!(token.starts_with("td_"), "{token}");
        let account = format!("http://{}/api/v1/account", server.addr);
        let bearer = format!("Authorization: Bearer {token}");
        assert_eq!(curl(&["-H", &bearer, &account]).0, 200);
        b.click("button[aria-label=\"Revoke token phone script\"]");
        b.wait_for(
            "return !document.querySelector('button[aria-label=\"Revoke token phone script\"]')",
            Duration::from_secs(20),
            "the token to go from the list",
        );
        assert_eq!(curl(&["-H", &bearer, &account]).0, 401);

        // Nothing sticks out sideways on a phone.
        let fits = b.eval("return document.documentElement.scrollWidth <= window.innerWidth");
        assert_eq!(fits, true, "the page is wider than a phone's screen");
        // Every control is reachable with Tab: each action is a real button or link with a name.
        let unnamed = b.eval(
            "return [...document.querySelectorAll('#drive-view button, #drive-view a')]
               .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim())).length",
        );
        assert_eq!(unnamed, 0);
    });
}
