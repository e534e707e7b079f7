//! Black-box test support: starts the real `otp-server` binary with real plugins in a
//! folder of its own, talks to it over real HTTP, and reads codes from what the
//! `dev-sender` plugin writes to the server's log.
//!
//! The binary is `target/debug/otp-server` (or `$OTP_SERVER_BIN`) and the plugins are
//! `plugins/dist`, `plugins/dist-extra` and `plugins/dist-fixtures`; the README's test
//! command builds all of them before the tests run. [`webhook`] is a receiver for the
//! `webhook-sender` plugin (codes are then read from what it receives), [`providers`]
//! fakes the APIs of the provider sender plugins, [`serve`] runs such fakes,
//! [`redis_cluster`] starts Redis Cluster and Sentinel deployments, and [`browser`]
//! drives headless Chromium.
//!
//! `OTP_BLACKBOX_STORE` picks the store of every server a test does not give one:
//! `memory` (default), `redis` (a `redis-server` per server) or `cluster` (a Redis
//! Cluster: the one at `OTP_BLACKBOX_CLUSTER_URL`, each server under a key prefix of
//! its own, else a cluster per server).

pub mod browser;
pub mod providers;
pub mod redis_cluster;
pub mod serve;
pub mod webhook;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use reqwest::StatusCode;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OTP_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join("otp-server");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build -p otp-server`, done by scripts/test.sh)",
        path.display()
    );
    path
}

/// Runs `otp-server plugins check FILE`: whether the file would be accepted, and
/// everything the command printed.
pub fn plugins_check(file: &Path) -> (bool, String) {
    let output = Command::new(server_binary())
        .args(["plugins", "check"])
        .arg(file)
        .output()
        .expect("running plugins check");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// A default plugin file (`plugins/dist/NAME.wasm`). With `OTP_BLACKBOX_CONTRACT=0.1.0`,
/// the default validator, sender and final action are their builds for contract 0.1.0
/// (`plugins/dist-fixtures/v010-NAME.wasm`), so a suite proves 0.1.0 plugins still work.
pub fn plugin(name: &str) -> PathBuf {
    if contract_0_1_0() && DEFAULT_PLUGINS.contains(&name) {
        return fixture(&format!("v010-{name}"));
    }
    built_component("plugins/dist", name)
}

/// Whether the suite runs the default plugins as their contract 0.1.0 builds.
pub fn contract_0_1_0() -> bool {
    std::env::var("OTP_BLACKBOX_CONTRACT").as_deref() == Ok("0.1.0")
}

/// A test fixture plugin file (`plugins/dist-fixtures/NAME.wasm`).
pub fn fixture(name: &str) -> PathBuf {
    built_component("plugins/dist-fixtures", name)
}

fn built_component(folder: &str, name: &str) -> PathBuf {
    let path = workspace_root().join(folder).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// A plugin that needs a manifest (`plugins/dist-extra/NAME.wasm`).
pub fn extra(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("plugins/dist-extra")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

pub const DEFAULT_PLUGINS: [&str; 3] = ["default-credential", "dev-sender", "json-final"];

/// A unique, empty scratch folder under `target/`.
pub fn scratch_dir(label: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = workspace_root().join("target/blackbox").join(format!(
        "{label}-{}-{n}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a scratch folder");
    dir
}

/// Copies a plugin file into a folder under `name`, atomically (write, then rename),
/// as the README tells operators to.
pub fn install(file: &Path, dir: &Path, name: &str) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::copy(file, &tmp).expect("copying a plugin");
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).expect("renaming a plugin into place");
}

/// The Standard Webhooks secret of the audit sink [`ServerBuilder::event_sink`] binds.
pub const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The master key every test server uses in Redis mode (base64 of 32 bytes).
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW9mLTMyLWJ5dGVzLWxvbmc=";

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `redis-server` of the test's own, on a free port, without persistence. Stopped
/// when dropped. `scripts/test.sh` installs redis-server when it is missing.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
        };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process's id while it runs (loadgen reads its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts it again on the same port (after [`RedisServer::stop`]).
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the suite runs in Redis mode (`OTP_BLACKBOX_STORE=redis`): every server
/// that does not name a store then gets a Redis of its own.
pub fn redis_mode() -> bool {
    std::env::var("OTP_BLACKBOX_STORE").is_ok_and(|v| v == "redis")
}

/// Whether the suite runs on a Redis Cluster (`OTP_BLACKBOX_STORE=cluster`).
pub fn cluster_mode() -> bool {
    std::env::var("OTP_BLACKBOX_STORE").is_ok_and(|v| v == "cluster")
}

/// A key prefix no other server of this test run uses.
pub fn unique_prefix() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("t{}-{n}:", std::process::id())
}

/// Writes the manifest `NAME.toml` into a folder atomically (write, then rename), as
/// the README tells operators to.
pub fn install_manifest(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.toml.tmp"));
    std::fs::write(&tmp, text).expect("writing a manifest");
    std::fs::rename(&tmp, dir.join(format!("{name}.toml")))
        .expect("renaming a manifest into place");
}

/// The server's log, filled by a reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

pub struct ServerBuilder {
    plugins: Vec<(PathBuf, String)>,
    manifests: Vec<(String, String)>,
    env: Vec<(String, String)>,
    plugins_dir: Option<PathBuf>,
    store_named: bool,
}

impl ServerBuilder {
    /// Adds a plugin file under a name of its own.
    pub fn plugin_as(mut self, file: PathBuf, name: &str) -> Self {
        self.plugins.push((file, name.to_string()));
        self
    }

    /// Adds the manifest `NAME.toml` for plugin `name`.
    pub fn manifest(mut self, name: &str, text: &str) -> Self {
        self.manifests.push((name.to_string(), text.to_string()));
        self
    }

    /// Binds `webhook-events` as the audit sink, posting to `url` (on 127.0.0.1), signed
    /// with [`EVENTS_SECRET`]; `outbound` adds lines to its `[outbound]` table.
    pub fn event_sink(self, url: &str, outbound: &str) -> Self {
        let manifest = format!(
            "hooks = [\"events\"]\n[outbound]\nallow = [\"http://127.0.0.1:*\"]\n{outbound}\
             [config]\nurl = \"{url}\"\nsecret = \"${{OTP_PLUGIN_EVENTS_SECRET}}\"\n"
        );
        self.plugin_as(extra("webhook-events"), "webhook-events")
            .manifest("webhook-events", &manifest)
            .env("OTP_PLUGIN_EVENTS_SECRET", EVENTS_SECRET)
    }

    pub fn default_plugins(mut self) -> Self {
        for name in DEFAULT_PLUGINS {
            self.plugins.push((plugin(name), name.to_string()));
        }
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        if key == "OTP_STORE" {
            self.store_named = true;
        }
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Shares a Redis (several servers on one store).
    pub fn redis(self, redis: &RedisServer) -> Self {
        self.env("OTP_STORE", &redis.url())
            .env("OTP_MASTER_KEY", TEST_MASTER_KEY)
            .env("OTP_STORE_TIMEOUT_MS", "300")
    }

    /// Uses the store at `url` (a cluster or Sentinel URL) with the test master key.
    pub fn store_url(self, url: &str) -> Self {
        self.env("OTP_STORE", url)
            .env("OTP_MASTER_KEY", TEST_MASTER_KEY)
            .env("OTP_STORE_TIMEOUT_MS", "1000")
    }

    /// Uses an existing plugins folder instead of a fresh one (to restart a server on
    /// the same plugins, or run two servers on one folder).
    pub fn plugins_dir(mut self, dir: &Path) -> Self {
        self.plugins_dir = Some(dir.to_path_buf());
        self
    }

    pub fn start(mut self) -> Server {
        let own_redis = (redis_mode() && !self.store_named).then(RedisServer::start);
        if let Some(redis) = &own_redis {
            self = self.redis(redis);
        }
        let mut own_cluster = None;
        if cluster_mode() && !self.store_named {
            let url = match std::env::var("OTP_BLACKBOX_CLUSTER_URL") {
                Ok(url) => url,
                Err(_) => own_cluster
                    .insert(redis_cluster::RedisCluster::start())
                    .url(),
            };
            self = self
                .store_url(&url)
                .env("OTP_STORE_PREFIX", &unique_prefix());
        }
        let plugins_dir = match &self.plugins_dir {
            Some(dir) => dir.clone(),
            None => scratch_dir("server").join("plugins"),
        };
        std::fs::create_dir_all(&plugins_dir).expect("creating the plugins folder");
        for (name, text) in &self.manifests {
            install_manifest(&plugins_dir, name, text);
        }
        for (file, name) in &self.plugins {
            install(file, &plugins_dir, name);
        }
        let cache = workspace_root().join("target/blackbox-wasm-cache");
        let mut command = Command::new(server_binary());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OTP_LISTEN", "127.0.0.1:0")
            .env("OTP_ADMIN_LISTEN", "127.0.0.1:0")
            .env("OTP_PLUGINS_DIR", &plugins_dir)
            .env("OTP_CACHE_DIR", &cache)
            .env("OTP_LOG", "info")
            .env("OTP_TEST_CLOCK", "1")
            // The abuse controls would refuse the many requests other suites make from one
            // address; the limits suite switches them on (`OTP_LIMITS_ENABLED=true`).
            .env("OTP_LIMITS_ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("starting otp-server");
        let log = Arc::new(Log::default());
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("OTP_TEST_ECHO").is_some() {
                    eprintln!("[server] {line}");
                }
                sink.lines.lock().unwrap().push(line);
                sink.grew.notify_all();
            }
        });
        let mut server = Server {
            child,
            _redis: own_redis,
            _cluster: own_cluster,
            log,
            base: String::new(),
            admin_base: None,
            plugins_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
        };
        let line = server
            .wait_for_log("otp-server listening", Duration::from_secs(60))
            .unwrap_or_else(|| panic!("the server did not start:\n{}", server.log_text()));
        let address = log_field(&line, "address").expect("the listening line names the address");
        server.base = format!("http://{address}");
        // Logged before the "listening" line when the admin listener is on.
        server.admin_base = server
            .log_lines()
            .iter()
            .find(|l| l.contains("admin listener"))
            .and_then(|l| log_field(l, "address"))
            .map(|address| format!("http://{address}"));
        server
    }
}

/// A field of a log line: `name=value` in text logs, `"name":"value"` in JSON logs.
fn log_field(line: &str, name: &str) -> Option<String> {
    let text = line
        .split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next());
    let json = || {
        line.split(&format!("\"{name}\":\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
    };
    text.or_else(json).map(str::to_string)
}

pub struct Server {
    child: Child,
    _redis: Option<RedisServer>,
    _cluster: Option<redis_cluster::RedisCluster>,
    log: Arc<Log>,
    pub base: String,
    /// The admin listener (`/metrics`, the detailed `/ready`): a free loopback port unless
    /// the test sets `OTP_ADMIN_LISTEN` itself; `None` when it is off.
    pub admin_base: Option<String>,
    pub plugins_dir: PathBuf,
    pub http: reqwest::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP answer, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (status {})",
                String::from_utf8_lossy(&self.body),
                self.status
            )
        })
    }

    /// The `error` field of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// All `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The value of the session cookie set by this answer (development name `o`),
    /// if it sets a non-empty one.
    pub fn cookie(&self) -> Option<String> {
        self.cookie_named("o")
    }

    pub fn cookie_named(&self, name: &str) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
    }

    /// Whether this answer deletes the session cookie.
    pub fn deletes_cookie(&self, name: &str) -> bool {
        self.set_cookies()
            .iter()
            .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("1970"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    }
}

/// A request body and its content type.
pub enum Body<'a> {
    None,
    Json(&'a str),
    Form(&'a str),
    Typed(&'a str, Vec<u8>),
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            plugins: Vec::new(),
            manifests: Vec::new(),
            env: Vec::new(),
            plugins_dir: None,
            store_named: false,
        }
    }

    /// A server with the three default plugins on the in-memory store.
    pub fn with_defaults() -> Server {
        Server::builder().default_plugins().start()
    }

    /// Replaces (or adds) the manifest of plugin `name` in the running server's folder.
    pub fn write_manifest(&self, name: &str, text: &str) {
        install_manifest(&self.plugins_dir, name, text);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Body<'_>,
        cookie: Option<&str>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.http.request(method, self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("o={cookie}"));
        }
        request = match body {
            Body::None => request,
            Body::Json(text) => request
                .header("content-type", "application/json")
                .body(text.to_string()),
            Body::Form(text) => request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(text.to_string()),
            Body::Typed(content_type, bytes) => {
                request.header("content-type", content_type).body(bytes)
            }
        };
        let response = request.send().await.expect("the server answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("reading the body").to_vec(),
        }
    }

    pub async fn create(&self, credential_json: &str, cookie: Option<&str>) -> Answer {
        self.request(
            "POST",
            "/api/otp/create",
            Body::Json(credential_json),
            cookie,
        )
        .await
    }

    pub async fn resend(&self, cookie: Option<&str>) -> Answer {
        self.request("POST", "/api/otp/resend", Body::None, cookie)
            .await
    }

    pub async fn verify(&self, code: &str, cookie: Option<&str>) -> Answer {
        let form = format!("otp={code}");
        self.request("POST", "/api/otp/verify", Body::Form(&form), cookie)
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, Body::None, None).await
    }

    /// A request to the admin listener, with an optional bearer token.
    pub async fn admin(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        let base = self.admin_base.as_ref().expect("the admin listener is on");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the admin listener answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("reading the body").to_vec(),
        }
    }

    /// The detailed readiness report (the admin listener's `/ready`).
    pub async fn ready_details(&self) -> Answer {
        self.admin("GET", "/ready", None).await
    }

    /// Moves the server's clock forward (the server runs with `OTP_TEST_CLOCK=1`).
    pub async fn advance_clock(&self, ms: u64) {
        let answer = self
            .request("POST", &format!("/test/clock?ms={ms}"), Body::None, None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "advancing the clock: {}",
            answer.text()
        );
    }

    /// Sends the server SIGTERM (a graceful shutdown, as on a deploy); its log stays
    /// readable.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
    }

    pub fn log_text(&self) -> String {
        self.log.lines.lock().unwrap().join("\n")
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_log_after(0, needle, timeout)
    }

    /// Like [`Server::wait_for_log`], only looking at lines after the first `skip`.
    pub fn wait_for_log_after(
        &self,
        skip: usize,
        needle: &str,
        timeout: Duration,
    ) -> Option<String> {
        self.wait_for_log_line(skip, |line| line.contains(needle), timeout)
    }

    /// Waits for a log line after the first `skip` that `wanted` accepts. Lines from different
    /// parts of the server (a plugin, the access log) arrive in their own time: wait for the
    /// line a test is about, not for a sibling of it.
    pub fn wait_for_log_line(
        &self,
        skip: usize,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().skip(skip).find(|l| wanted(l)) {
                return Some(line.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.log.grew.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn log_len(&self) -> usize {
        self.log.lines.lock().unwrap().len()
    }

    /// Every code the dev sender logged for a credential id, oldest first.
    pub fn codes_for(&self, credential_id: &str) -> Vec<String> {
        let prefix = format!("OTP for {credential_id} via ");
        self.log
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| {
                let rest = &line[line.find(&prefix)? + prefix.len()..];
                let (_, after) = rest.split_once(": ")?;
                after.split_whitespace().next().map(str::to_string)
            })
            .collect()
    }

    /// Waits until the dev sender has logged `n` codes for a credential and returns
    /// the `n`-th (1-based).
    pub fn wait_code(&self, credential_id: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let codes = self.codes_for(credential_id);
            if codes.len() >= n {
                return codes[n - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no code #{n} for {credential_id} in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
