//! A headless Chromium driven over the W3C WebDriver protocol by chromedriver, both on
//! loopback, with the few commands the page tests need. The protocol is JSON over HTTP;
//! curl carries it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

/// The browser program: Debian calls it `chromium`.
pub const CHROMIUM: &str = "chromium";

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        let port = super::free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while post(&format!("{base}/status"), None).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let binary = Command::new("sh")
            .args(["-c", &format!("command -v {CHROMIUM}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    // The browser's own autoplay policy stays: the page must start its
                    // player from the click, as it must for people.
                    "--disable-default-apps", "--mute-audio",
                    "--window-size=1280,900",
                ],
            },
        }}});
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
        };
        let created = browser.raw("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        browser
    }

    fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let out = match method {
            "POST" => post(&url, Some(body.unwrap_or_else(|| json!({})))),
            _ => {
                let o = Command::new("curl")
                    .args(["-s", "-X", method, &url])
                    .output()
                    .ok()
                    .map(|o| o.stdout);
                o.and_then(|b| serde_json::from_slice(&b).ok())
            }
        };
        let value = out.unwrap_or_else(|| panic!("chromedriver did not answer {method} {path}"));
        value["value"].clone()
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let value = self.raw(method, &format!("/session/{}{path}", self.session), body);
        if let Some(err) = value.get("error") {
            panic!("WebDriver {method} {path}: {err}: {}", value["message"]);
        }
        value
    }

    pub fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// The element `css` selects; waits up to 20 s for it to exist.
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let path = format!("/session/{}/element", self.session);
            let v = self.raw(
                "POST",
                &path,
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v.get(ELEMENT).and_then(Value::as_str) {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `css` selects. The page redraws lists as they change: an element
    /// replaced between finding and clicking is found again.
    pub fn click(&self, css: &str) {
        for _ in 0..50 {
            let id = self.find(css);
            let path = format!("/session/{}/element/{id}/click", self.session);
            let v = self.raw("POST", &path, None);
            match v.get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => continue,
                Some(err) => panic!("WebDriver click on {css}: {err}: {}", v["message"]),
            }
        }
        panic!("{css} kept being replaced before it could be clicked");
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Gives a file input the file at `path` (the browser reads it as if chosen).
    pub fn choose_file(&self, css: &str, path: &str) {
        let id = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": path })),
        );
    }

    /// Sets the window's inner size.
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `script` returns something truthy; returns it.
    pub fn wait_for(&self, script: &str, timeout: Duration, what: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.eval(script);
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = Command::new("curl")
                .args([
                    "-s",
                    "-X",
                    "DELETE",
                    &format!("{}/session/{}", self.base, self.session),
                ])
                .output();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// POSTs JSON (or GETs without a body); the answer as JSON.
fn post(url: &str, body: Option<Value>) -> Option<Value> {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "120", url]);
    if let Some(body) = body {
        cmd.args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
        ]);
    }
    let out = cmd.output().ok()?;
    serde_json::from_slice(&out.stdout).ok()
}
