//! A real browser for black-box tests: headless Chromium driven over WebDriver.
//!
//! [`with_browser`] starts Debian's `chromedriver` on a free port (one per test, so
//! tests run in parallel and nothing outlives them), opens a Chromium session shaped
//! like a phone (360×740 CSS pixels), runs the test, saves a screenshot to
//! `target/browser-screenshots/NAME.png` (`NAME-failed.png` when the test panicked),
//! closes the browser and stops the driver. Steps that wait ([`Browser::wait_text`],
//! [`Browser::wait_until`]) fail with what the page showed: its URL and visible text.
//!
//! The WebDriver protocol is a dozen JSON-over-HTTP calls, spoken here with the same
//! `reqwest` client the other tests use. `scripts/test.sh` installs `chromium` and
//! `chromium-driver` when they are missing.

use crate::{free_port, workspace_root};
use futures_util::FutureExt;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a waiting step waits before it fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// The `chromedriver` process, stopped when dropped, with a temporary folder of its own
/// (and its Chromium's), removed then.
struct ChromeDriver {
    child: Child,
    base: String,
    tmp: PathBuf,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = free_port();
        // Chromium leaves its singleton-socket folders behind in the temporary folder.
        // This one is short on purpose: the socket's path under it must fit in 107 bytes.
        let tmp = std::env::temp_dir().join(format!("otp-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("creating chromedriver's temporary folder");
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver (scripts/test.sh installs chromium-driver)");
        ChromeDriver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            tmp,
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

/// One Chromium session.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    name: String,
    _driver: ChromeDriver,
}

/// Runs `test` in a fresh browser named `name` (the screenshot's file name) with extra
/// Chromium arguments, and always closes it, also when the test panics.
pub async fn with_browser(name: &str, chromium_args: &[&str], test: impl AsyncFnOnce(&Browser)) {
    let browser = Browser::start(name, chromium_args).await;
    let result = AssertUnwindSafe(test(&browser)).catch_unwind().await;
    let label = match &result {
        Ok(()) => name.to_string(),
        Err(_) => format!("{name}-failed"),
    };
    let shot = browser.screenshot(&label).await;
    browser.close().await;
    match result {
        Ok(()) => eprintln!("screenshot: {}", shot.display()),
        Err(panic) => {
            eprintln!("screenshot of the failure: {}", shot.display());
            std::panic::resume_unwind(panic)
        }
    }
}

impl Browser {
    async fn start(name: &str, chromium_args: &[&str]) -> Browser {
        let driver = ChromeDriver::start();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
        ];
        args.extend_from_slice(chromium_args);
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": args,
                "mobileEmulation": {"deviceMetrics": {"width": 360, "height": 740, "pixelRatio": 1.0}},
            },
        }}});
        let answer = send(
            &http,
            reqwest::Method::POST,
            format!("{}/session", driver.base),
            Some(capabilities),
        )
        .await;
        let id = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"));
        Browser {
            session: format!("{}/session/{id}", driver.base),
            http,
            name: name.to_string(),
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        send(&self.http, method, format!("{}{path}", self.session), body).await
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs a script in the page (`return …`) and gives its value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Types into the element that has the focus, as a keyboard would (`\n` presses
    /// Enter, `\t` Tab).
    pub async fn keys(&self, text: &str) {
        let active = self
            .call(reqwest::Method::GET, "/element/active", None)
            .await;
        let element = element_id(&active);
        let text = text.replace('\n', "\u{E007}").replace('\t', "\u{E004}");
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The id of the focused element.
    pub async fn focused_id(&self) -> String {
        self.script(
            "return document.activeElement && document.activeElement.id",
            json!([]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// The visible text of the first element matching `css` ("" when none does).
    pub async fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : ''",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// An attribute of the first element matching `css`.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null",
            json!([css, name]),
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    /// The browser's cookies for the current page's host (HttpOnly ones included).
    pub async fn cookies(&self) -> Vec<Value> {
        match self.call(reqwest::Method::GET, "/cookie", None).await {
            Value::Array(cookies) => cookies,
            other => panic!("cookies: {other}"),
        }
    }

    /// Waits until the text of `css` contains `needle`, and returns it.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("waiting for {css} to show {needle:?}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a script (`return …`) gives `true`.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.script(script, json!([])).await != Value::Bool(true) {
            if Instant::now() >= deadline {
                self.fail(&format!("waiting until {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails the test, saying what the page showed.
    pub async fn fail(&self, step: &str) -> ! {
        let url = self.script("return location.href", json!([])).await;
        let page = self.text("body").await;
        panic!(
            "{}: {step} failed.\nThe page ({url}) showed:\n{page}",
            self.name
        );
    }

    /// Errors the page's console reported since the last call (script errors,
    /// Content-Security-Policy violations, failed loads), except the favicon's 404.
    pub async fn console_errors(&self) -> Vec<String> {
        let log = self
            .call(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await;
        log.as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["level"] == "SEVERE")
            .filter_map(|entry| entry["message"].as_str())
            .filter(|message| !message.contains("favicon.ico"))
            .map(str::to_string)
            .collect()
    }

    /// Whether everything on the page fits the (phone-sized) window: no element reaches
    /// past its right edge and no element's content overflows it (text fields, which
    /// scroll inside, aside).
    pub async fn fits_width(&self) -> bool {
        let overflowing = self
            .script(
                "const width = document.documentElement.clientWidth;
                 return [...document.querySelectorAll('body *')]
                   .filter(e => e.getBoundingClientRect().right > width + 1
                     || (e.scrollWidth > e.clientWidth + 1 && !['INPUT', 'TEXTAREA'].includes(e.tagName)))
                   .map(e => e.tagName + (e.id ? '#' + e.id : ''))",
                json!([]),
            )
            .await;
        if overflowing != json!([]) {
            eprintln!("{}: wider than the window: {overflowing}", self.name);
        }
        overflowing == json!([])
    }

    /// Saves a screenshot of the window as `target/browser-screenshots/LABEL.png`.
    pub async fn screenshot(&self, label: &str) -> PathBuf {
        use base64::Engine;
        let dir = workspace_root().join("target/browser-screenshots");
        std::fs::create_dir_all(&dir).expect("creating the screenshot folder");
        let path = dir.join(format!("{label}.png"));
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        std::fs::write(&path, png).expect("writing the screenshot");
        path
    }

    async fn close(&self) {
        let _ = self
            .http
            .delete(&self.session)
            .send()
            .await
            .and_then(|r| r.error_for_status());
    }
}

fn chromium_binary() -> String {
    std::env::var("OTP_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

/// One WebDriver call: its `value`, or a panic naming the WebDriver error.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut request = http.request(method.clone(), &url);
    if let Some(body) = body {
        request = request.json(&body);
    } else if method == reqwest::Method::POST {
        request = request.json(&json!({}));
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: {e}"));
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("WebDriver {method} {url}: not JSON: {e}"));
    assert!(
        status.is_success(),
        "WebDriver {method} {url} answered {status}: {}",
        body["value"]
    );
    body["value"].clone()
}

fn element_id(value: &Value) -> String {
    value
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("not an element: {value}"))
        .to_string()
}
