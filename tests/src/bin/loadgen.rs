//! `loadgen`: a load generator for otp-server over real HTTP/1.1 keep-alive
//! connections. It starts the server itself (release binary, default plugins) unless
//! given `--url`, runs each endpoint for a fixed time with N connections, and prints
//! requests per second, p50 and p99 per endpoint, and each endpoint's ratio to
//! `/health` in the same run. The endpoints take turns (`--rounds`, 5 by default: the
//! list runs five times, each endpoint for a fifth of `--seconds` each time), so every
//! endpoint meets the same spells of a noisy machine's speed and the ratios hold from
//! one run to the next; `--rounds 1` runs each endpoint once, whole.
//!
//! An A/B of two builds: `--binary OLD,NEW --repeat 5` starts each build in turn (OLD,
//! NEW, OLD, NEW, ...) with the same settings and prints, per build, the median and
//! range over its five runs of each endpoint's req/s, share of `/health` and server CPU
//! per request; the comparison with the first then uses the medians.
//!
//! ```text
//! cargo run --release -p otp-server-blackbox --bin loadgen -- --connections 64 --seconds 10 [--prefill 1000000]
//! cargo run --release -p otp-server-blackbox --bin loadgen -- --stores memory,redis --endpoints health,create,verify
//! cargo run --release -p otp-server-blackbox --bin loadgen -- --connections 64 --seconds 10 --endpoints flow
//! ```
//!
//! The `flow` endpoint is the whole passwordless login: create, take the code from
//! where the sender delivered it, verify, and expect the session token. With it the
//! spawned server runs `session-token-final` and, by `--senders` (one run each, compared
//! with the first):
//! - `webhook` (the default): `default-credential` and `webhook-sender`, posting to a
//!   receiver that loadgen runs itself on 127.0.0.1;
//! - `twilio-sms`, `sendgrid-email`, `postmark-email`, `ses-email`: `email-phone-credential`
//!   and that provider plugin, speaking the provider's API to the same local fake the
//!   provider tests use (it checks every request, SES signatures included).
//!
//! `--stores memory,redis,sentinel,cluster,cluster-replicated` runs the same phases
//! against a server on each store (it starts its own `redis-server` on a free port; for
//! `sentinel` a master with one replica behind three Sentinels, the single-master
//! deployment that survives a crash; for `cluster` a Redis Cluster of 3 masters; for
//! `cluster-replicated` 3 masters and 3 replicas) and prints each mode as a share of the
//! first. Compare like with like: `redis` and `cluster` make every write once,
//! `sentinel` and `cluster-replicated` twice (a replica on the same machine replays it).
//!
//! `--sinks none,hanging,failing,trapping` does the same for the audit-events hook:
//! `hanging` binds `webhook-events` to a receiver that never answers within the sink's
//! deadline, `failing` to one that answers 500 at once, and `trapping` binds the
//! `fixture-trap` component, whose every delivery traps. Each run is compared with the
//! first in req/s and p99, so "a sink that hangs or traps costs requests nothing" is a
//! figure, not a hope.
//!
//! `--ops on,off` runs with the operations features as shipped (the admin listener, so
//! metrics are recorded, and the access log; the default) and with both off. The spawned
//! server's log goes to a file whose path is printed; it is removed with the server's
//! scratch folder at the end of a run that succeeded, unless `--keep-log`.
//!
//! The spawned server allows many resends and attempts per session and a long session
//! age (`OTP_RESEND_COOLDOWN_SECS=0`, `OTP_MAX_RESENDS=250`, `OTP_MAX_ATTEMPTS=250`,
//! `OTP_SESSION_MAX_AGE_SECS=3600`) so each connection can keep one session busy; none
//! of these change the work a request does. When a session's 250 resends are used up,
//! its next resend is refused (400 `OTP:RESENT_NOT_ALLOWED`, counted as expected) and
//! the connection takes the next session made by the creates.
//!
//! The spawned server runs with the abuse controls on but every budget raised far above
//! what a run can use (`--limits on`, the default; the global circuit breaker stays off,
//! as it is by default), so they cost what they cost without refusing anything. `--limits off,on` runs every store twice in the same run: with the abuse controls
//! switched off (`OTP_LIMITS_ENABLED=false`) and on with every budget raised so that
//! nothing is refused (the fraud guard in `record` mode with high floors), and prints
//! "on" as a share of "off" per endpoint: what the limits cost.
//!
//! When loadgen starts the server it also reports the server's CPU time per request
//! (user + system, from `/proc/PID/stat`), loadgen its own and, on a Redis store, that
//! of every `redis-server` it started: they share the machine, so the ratios to
//! `/health` depend on all of them, and the columns tell them apart. `--store-cpus 1`
//! runs the store's processes on CPU 1 and the server and loadgen on the others (as a
//! Redis on machines of its own would not take the server's CPU), so a comparison shows
//! what a mode costs the server apart from what it costs Redis. `--env KEY=VALUE`
//! passes more settings.

use otp_server_blackbox::providers::{FakeProvider, Provider};
use otp_server_blackbox::redis_cluster::{RedisCluster, RedisSentinel};
use otp_server_blackbox::webhook::{Behaviour, WebhookReceiver};
use otp_server_blackbox::{
    extra, fixture, install_manifest, plugin, scratch_dir, workspace_root, RedisServer,
    DEFAULT_PLUGINS, TEST_MASTER_KEY,
};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Options {
    url: Option<String>,
    binaries: Vec<String>,
    repeat: usize,
    connections: usize,
    seconds: u64,
    rounds: u32,
    prefill: u64,
    env: Vec<(String, String)>,
    endpoints: Vec<String>,
    stores: Vec<String>,
    sinks: Vec<String>,
    limits: Vec<String>,
    ops: Vec<String>,
    senders: Vec<String>,
    store_cpus: Option<Vec<usize>>,
    keep_log: bool,
}

/// What `--help` prints (and an unknown argument, to stderr).
const USAGE: &str = "\
usage: loadgen [OPTIONS]
  --url URL              measure a running server instead of starting one
  --binary LIST          the server binaries to start (default: target/release/otp-server);
                         with two or more, an A/B: each runs in turn against the same settings
  --repeat N             run every combination N times in turn (A, B, A, B, ...) and print
                         each one's median and range over its N runs (default 1)
  --connections N        keep-alive connections (default 64)
  --seconds N            seconds per endpoint (default 10)
  --rounds N             interleave the endpoints: run the list N times, each endpoint
                         for its N-th of --seconds per round (default 5; 1 runs each
                         endpoint once, whole)
  --prefill N            live sessions to create before measuring (default 0)
  --endpoints LIST       health,create,resend,verify (default) or flow
  --stores LIST          memory (default), redis, sentinel, cluster, cluster-replicated
  --limits LIST          on (default), off
  --ops LIST             on (default), off
  --sinks LIST           none (default), hanging, failing, trapping
  --senders LIST         webhook (default), twilio-sms, sendgrid-email, postmark-email, ses-email
  --env KEY=VALUE        one more setting for the started server (repeatable)
  --store-cpus LIST      run the store's processes on these CPUs (e.g. 1), the server and
                         loadgen on the others: a Redis that does not share their cores
  --keep-log             keep the started server's folder and log after a run that
                         succeeded (a failed run keeps them always)
Each LIST runs once per item, compared with the first.";

fn parse_options() -> Options {
    let mut o = Options {
        url: None,
        binaries: Vec::new(),
        repeat: 1,
        connections: 64,
        seconds: 10,
        rounds: 5,
        prefill: 0,
        env: Vec::new(),
        endpoints: vec![
            "health".into(),
            "create".into(),
            "resend".into(),
            "verify".into(),
        ],
        stores: vec!["memory".into()],
        sinks: vec!["none".into()],
        limits: vec!["on".into()],
        ops: vec!["on".into()],
        senders: vec!["webhook".into()],
        store_cpus: None,
        keep_log: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => o.url = Some(value()),
            "--binary" => o.binaries = value().split(',').map(str::to_string).collect(),
            "--repeat" => {
                o.repeat = value().parse().expect("--repeat N");
                assert!(o.repeat > 0, "--repeat N needs N of at least 1");
            }
            "--connections" => o.connections = value().parse().expect("--connections N"),
            "--seconds" => o.seconds = value().parse().expect("--seconds N"),
            "--rounds" => {
                o.rounds = value().parse().expect("--rounds N");
                assert!(o.rounds > 0, "--rounds N needs N of at least 1");
            }
            "--prefill" => o.prefill = value().parse().expect("--prefill N"),
            "--endpoints" => o.endpoints = value().split(',').map(str::to_string).collect(),
            "--stores" => o.stores = value().split(',').map(str::to_string).collect(),
            "--sinks" => o.sinks = value().split(',').map(str::to_string).collect(),
            "--limits" => o.limits = value().split(',').map(str::to_string).collect(),
            "--ops" => o.ops = value().split(',').map(str::to_string).collect(),
            "--senders" => o.senders = value().split(',').map(str::to_string).collect(),
            "--store-cpus" => {
                o.store_cpus = Some(
                    value()
                        .split(',')
                        .map(|c| c.parse().expect("--store-cpus: CPU numbers, e.g. 1"))
                        .collect(),
                )
            }
            "--env" => {
                let kv = value();
                let (k, v) = kv.split_once('=').expect("--env KEY=VALUE");
                o.env.push((k.to_string(), v.to_string()));
            }
            "--keep-log" => o.keep_log = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    o
}

/// The server process, stopped on drop. Its scratch folder (plugins and log; the log
/// of an info-level run grows by a line per create, hundreds of MB a run) goes with it
/// unless the run failed or `--keep-log` keeps it.
struct Spawned {
    child: Child,
    folder: Option<PathBuf>,
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(folder) = &self.folder {
            if std::thread::panicking() {
                println!("server log kept: {}", folder.display());
            } else {
                let _ = std::fs::remove_dir_all(folder);
            }
        }
    }
}

/// Where the flow's codes go, and where loadgen reads them back (`--senders`).
enum FlowSender {
    /// `webhook-sender`, posting to this receiver.
    Webhook(WebhookReceiver),
    /// A provider plugin, speaking to this fake of the provider's API.
    Provider(Provider, FakeProvider),
}

impl FlowSender {
    fn start(name: &str) -> FlowSender {
        let provider = match name {
            "webhook" => return FlowSender::Webhook(WebhookReceiver::start_for_load(2)),
            "twilio-sms" => Provider::Twilio,
            "sendgrid-email" => Provider::Sendgrid,
            "postmark-email" => Provider::Postmark,
            "ses-email" => Provider::Ses,
            other => panic!(
                "unknown sender {other}: use webhook, twilio-sms, sendgrid-email, postmark-email or ses-email"
            ),
        };
        FlowSender::Provider(provider, FakeProvider::start_for_load(provider, 2))
    }

    /// Installs the validator and the sender with their manifests; returns the secrets the
    /// server needs in its environment.
    fn install(&self, dir: &std::path::Path) -> Vec<(String, String)> {
        let install = otp_server_blackbox::install;
        match self {
            FlowSender::Webhook(receiver) => {
                install_manifest(
                    dir,
                    "webhook-sender",
                    &format!(
                        "[outbound]\nallow = [\"http://127.0.0.1:{}\"]\n[config]\nurl = \"{}\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n",
                        receiver.port, receiver.url
                    ),
                );
                install(&plugin("default-credential"), dir, "default-credential");
                install(&extra("webhook-sender"), dir, "webhook-sender");
                Vec::new()
            }
            FlowSender::Provider(provider, fake) => {
                // The code in brackets, so it can be read back from the message.
                let templates = if provider.is_sms() {
                    "\"template.en\" = \"Acme code [{code}] valid {minutes} min\"\n"
                } else {
                    "\"template.en.subject\" = \"Your {app} code\"\n\"template.en.body\" = \"Code [{code}], valid {minutes} minutes.\"\n"
                };
                install_manifest(
                    dir,
                    provider.plugin(),
                    &format!(
                        "hooks = [\"sending\"]\n[outbound]\nallow = [\"http://127.0.0.1:{}\"]\n[config]\n{}app_name = \"Acme\"\n{templates}",
                        fake.port,
                        provider.config(&fake.url)
                    ),
                );
                install(
                    &plugin("email-phone-credential"),
                    dir,
                    "email-phone-credential",
                );
                install(&extra(provider.plugin()), dir, provider.plugin());
                provider
                    .secrets()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            }
        }
    }

    /// The create body of login number `n`, and the key its code is read back by.
    fn credential(&self, n: u64) -> (String, String) {
        match self {
            FlowSender::Webhook(_) => {
                let id = format!("\"flow{n}@example.com\"");
                (id.clone(), id)
            }
            FlowSender::Provider(provider, _) => {
                let to = provider.destination(n);
                (provider.credential(&to), to)
            }
        }
    }

    /// The code the sender delivered for `key`, taken out.
    fn take_code(&self, key: &str) -> Option<String> {
        match self {
            FlowSender::Webhook(receiver) => receiver.take_code(key),
            FlowSender::Provider(_, fake) => {
                let text = fake.take_text(key)?;
                let (_, rest) = text.split_once('[')?;
                Some(rest.split_once(']')?.0.to_string())
            }
        }
    }
}

/// The audit-events sink a spawned server gets (`--sinks`).
enum EventSink {
    /// `webhook-events`, posting to this receiver.
    Webhook(WebhookReceiver),
    /// `fixture-trap`, whose every delivery traps.
    Trapping,
}

fn spawn_server(
    o: &Options,
    binary: Option<&str>,
    extra_env: &[(String, String)],
    flow: Option<&FlowSender>,
    sink: Option<&EventSink>,
) -> (Spawned, String) {
    let binary = binary.map(str::to_string).unwrap_or_else(|| {
        workspace_root()
            .join("target/release/otp-server")
            .display()
            .to_string()
    });
    let folder = scratch_dir("loadgen");
    let dir = folder.join("plugins");
    std::fs::create_dir_all(&dir).expect("plugins folder");
    let mut secrets = Vec::new();
    match flow {
        None => {
            for name in DEFAULT_PLUGINS {
                otp_server_blackbox::install(&plugin(name), &dir, name);
            }
        }
        Some(flow) => {
            secrets = flow.install(&dir);
            install_manifest(
                &dir,
                "session-token-final",
                "[config]\nsecret = \"${OTP_PLUGIN_SESSION_SECRET}\"\nissuer = \"loadgen\"\n",
            );
            otp_server_blackbox::install(
                &extra("session-token-final"),
                &dir,
                "session-token-final",
            );
        }
    }
    match sink {
        None => {}
        Some(EventSink::Webhook(sink)) => {
            install_manifest(
                &dir,
                "webhook-events",
                &format!(
                    "hooks = [\"events\"]\n[outbound]\nallow = [\"http://127.0.0.1:{}\"]\n[config]\nurl = \"{}\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n",
                    sink.port, sink.url
                ),
            );
            otp_server_blackbox::install(&extra("webhook-events"), &dir, "webhook-events");
        }
        Some(EventSink::Trapping) => {
            install_manifest(&dir, "fixture-trap", "hooks = [\"events\"]\n");
            otp_server_blackbox::install(&fixture("fixture-trap"), &dir, "fixture-trap");
        }
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("an address").port()
    };
    // The server's log (access lines included) goes to a file, as it would in production.
    let log_path = dir.with_file_name(format!("server-{port}.log"));
    let log = std::fs::File::create(&log_path).expect("a server log file");
    println!("server log: {}", log_path.display());
    let mut command = Command::new(&binary);
    command
        .env("OTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("OTP_PLUGINS_DIR", &dir)
        .env("OTP_LOG", "warn")
        .env("OTP_RESEND_COOLDOWN_SECS", "0")
        .env("OTP_MAX_RESENDS", "250")
        .env("OTP_MAX_ATTEMPTS", "250")
        .env("OTP_SESSION_MAX_AGE_SECS", "3600")
        .env("OTP_MAX_CONCURRENT_PLUGIN_CALLS", "1024")
        .env(
            "OTP_PLUGIN_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .env(
            "OTP_PLUGIN_SESSION_SECRET",
            "loadgen-session-secret-0123456789abcdef",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    // `--env` last: what the command line says wins over a mode's settings.
    for (k, v) in extra_env.iter().chain(&secrets).chain(&o.env) {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
    let folder = (!o.keep_log).then_some(folder);
    (Spawned { child, folder }, format!("127.0.0.1:{port}"))
}

/// One HTTP/1.1 keep-alive connection with just enough of a client for this job.
struct Connection {
    stream: BufReader<TcpStream>,
    address: String,
}

struct Reply {
    status: u16,
    cookie: Option<String>,
    body: Vec<u8>,
}

impl Connection {
    async fn open(address: &str) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            address: address.to_string(),
        })
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        cookie: Option<&str>,
    ) -> std::io::Result<Reply> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.address,
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if let Some(c) = cookie {
            head.push_str(&format!("Cookie: o={c}\r\n"));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        self.stream.get_mut().write_all(&request).await?;

        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        let mut cookie = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("set-cookie") {
                let pair = value.split(';').next().unwrap_or("");
                if let Some(v) = pair.strip_prefix("o=") {
                    if !v.is_empty() {
                        cookie = Some(v.to_string());
                    }
                }
            }
        }
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await?;
        Ok(Reply {
            status,
            cookie,
            body,
        })
    }
}

/// Cookies of live sessions made by the creates, taken by the resends and verifies after them.
type CookiePool = Arc<Mutex<VecDeque<String>>>;

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Health,
    Create,
    Resend,
    Verify,
    Flow,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Health => "GET /health",
            Endpoint::Create => "POST /api/otp/create",
            Endpoint::Resend => "POST /api/otp/resend",
            Endpoint::Verify => "POST /api/otp/verify (wrong code)",
            Endpoint::Flow => "flow: create + send + verify",
        }
    }
}

/// What each endpoint measured in one run against one server, in `--endpoints` order.
type Run = Vec<(Endpoint, EndpointResult)>;

/// What one endpoint measured over a run.
struct EndpointResult {
    requests: u64,
    unexpected: u64,
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    /// The server's CPU time (user + system) per request, when loadgen knows its pid.
    server_cpu_us: Option<f64>,
    /// loadgen's own CPU time per request: its share of the machine the server did not get.
    loadgen_cpu_us: Option<f64>,
    /// The store's processes' CPU time per request (every `redis-server` loadgen
    /// started for the run), when there are any.
    store_cpu_us: Option<f64>,
}

/// CPU time a process has used so far (user + system, all threads), from
/// `/proc/PID/stat`; `None` where that is not readable.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // The kernel reports USER_HZ ticks, 100 per second on every Linux platform we run on.
    Some(Duration::from_millis(ticks * 10))
}

/// A process's resident memory (`VmRSS` of `/proc/PID/status`), in bytes.
fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Whether `needle` occurs in a response body.
fn contains(body: &[u8], needle: &[u8]) -> bool {
    body.windows(needle.len()).any(|w| w == needle)
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

async fn one_request(
    conn: &mut Connection,
    endpoint: Endpoint,
    current: &mut Option<String>,
    pool: &CookiePool,
    keep: bool,
    flow: Option<&FlowSender>,
) -> std::io::Result<bool> {
    match endpoint {
        Endpoint::Health => Ok(conn.call("GET", "/health", None, b"", None).await?.status == 200),
        Endpoint::Create => {
            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
            let body = format!("\"user{n}@example.com\"");
            let reply = conn
                .call(
                    "POST",
                    "/api/otp/create",
                    Some("application/json"),
                    body.as_bytes(),
                    None,
                )
                .await?;
            if let (true, Some(cookie)) = (keep, reply.cookie) {
                pool.lock().unwrap().push_back(cookie);
            }
            Ok(reply.status == 200)
        }
        Endpoint::Flow => {
            let flow = flow.expect("the flow runs with a sender");
            let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
            let (credential, key) = flow.credential(n);
            let created = conn
                .call(
                    "POST",
                    "/api/otp/create",
                    Some("application/json"),
                    credential.as_bytes(),
                    None,
                )
                .await?;
            let (200, Some(cookie)) = (created.status, created.cookie) else {
                return Ok(false);
            };
            // The sender posts before create answers, so the code is already there.
            let Some(code) = flow.take_code(&key) else {
                return Ok(false);
            };
            let verified = conn
                .call(
                    "POST",
                    "/api/otp/verify",
                    Some("application/x-www-form-urlencoded"),
                    format!("otp={code}").as_bytes(),
                    Some(&cookie),
                )
                .await?;
            // The session token's answer, not just any 200.
            Ok(verified.status == 200 && contains(&verified.body, b"\"token\":"))
        }
        Endpoint::Resend | Endpoint::Verify => {
            if current.is_none() {
                *current = pool.lock().unwrap().pop_front();
            }
            let Some(cookie) = current.clone() else {
                return Err(std::io::Error::other(
                    "the cookie pool ran dry: put create before resend and verify in --endpoints, or run longer",
                ));
            };
            let (reply, expected) = if endpoint == Endpoint::Resend {
                (
                    conn.call("POST", "/api/otp/resend", None, b"", Some(&cookie))
                        .await?,
                    200,
                )
            } else {
                let form = b"otp=0000000000";
                (
                    conn.call(
                        "POST",
                        "/api/otp/verify",
                        Some("application/x-www-form-urlencoded"),
                        form,
                        Some(&cookie),
                    )
                    .await?,
                    403,
                )
            };
            // A session whose resend allowance is used up answers 400
            // OTP:RESENT_NOT_ALLOWED without a new cookie; that is the server doing its
            // job, and the connection moves on to the next session from the pool.
            let allowance_used_up = endpoint == Endpoint::Resend
                && reply.status == 400
                && contains(&reply.body, b"OTP:RESENT_NOT_ALLOWED");
            *current = reply.cookie;
            Ok(reply.status == expected || allowance_used_up)
        }
    }
}

/// One endpoint's measurements, summed over its slices of a run.
struct Tally {
    latencies: Vec<u32>,
    unexpected: u64,
    elapsed: Duration,
    server_cpu: Option<Duration>,
    loadgen_cpu: Option<Duration>,
    store_cpu: Option<Duration>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latencies: Vec::new(),
            unexpected: 0,
            elapsed: Duration::ZERO,
            server_cpu: Some(Duration::ZERO),
            loadgen_cpu: Some(Duration::ZERO),
            store_cpu: Some(Duration::ZERO),
        }
    }

    fn result(mut self) -> EndpointResult {
        let requests = self.latencies.len() as u64;
        let per_request = |cpu: Option<Duration>| match cpu {
            Some(cpu) if requests > 0 => Some(cpu.as_secs_f64() * 1e6 / requests as f64),
            _ => None,
        };
        self.latencies.sort_unstable();
        let all = &self.latencies;
        let pick = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0) as u64
        };
        EndpointResult {
            requests,
            unexpected: self.unexpected,
            rate: requests as f64 / self.elapsed.as_secs_f64(),
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            server_cpu_us: per_request(self.server_cpu),
            loadgen_cpu_us: per_request(self.loadgen_cpu),
            store_cpu_us: per_request(self.store_cpu),
        }
    }
}

/// Runs `endpoints` in `rounds` rounds, each endpoint for its share of `duration` per
/// round, and sums each one's slices. Interleaved slices meet the same spells of this
/// machine's speed (it swings by a fifth from one minute to the next), so the ratios
/// between endpoints hold better than those of whole phases run one after another.
async fn measure(
    address: &str,
    endpoints: &[Endpoint],
    o: &Options,
    pool: &CookiePool,
    flow: Option<Arc<FlowSender>>,
    processes: &Processes,
) -> Run {
    let slice = Duration::from_secs(o.seconds) / o.rounds;
    let mut tallies: Vec<Tally> = endpoints.iter().map(|_| Tally::new()).collect();
    for _ in 0..o.rounds {
        for (endpoint, tally) in endpoints.iter().zip(&mut tallies) {
            slice_of(
                address,
                *endpoint,
                o.connections,
                slice,
                pool,
                flow.clone(),
                processes,
                tally,
            )
            .await;
        }
    }
    endpoints
        .iter()
        .copied()
        .zip(tallies.into_iter().map(Tally::result))
        .collect()
}

/// One slice of an endpoint: `connections` connections sending requests for `duration`,
/// added to `tally`.
#[allow(clippy::too_many_arguments)]
async fn slice_of(
    address: &str,
    endpoint: Endpoint,
    connections: usize,
    duration: Duration,
    pool: &CookiePool,
    flow: Option<Arc<FlowSender>>,
    processes: &Processes,
    tally: &mut Tally,
) {
    let server_pid = processes.server;
    let cpu_before = server_pid.and_then(process_cpu);
    let store_before = stores_cpu(&processes.store);
    let own_before = process_cpu(std::process::id());
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let address = address.to_string();
        let flow = flow.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&address).await.expect("connecting");
            let mut latencies: Vec<u32> = Vec::with_capacity(100_000);
            let mut unexpected = 0u64;
            let mut current = None;
            while Instant::now() < deadline {
                let started = Instant::now();
                match one_request(
                    &mut conn,
                    endpoint,
                    &mut current,
                    &pool,
                    true,
                    flow.as_deref(),
                )
                .await
                {
                    Ok(true) => {}
                    Ok(false) => unexpected += 1,
                    Err(e) => panic!("{}: {e}", endpoint.name()),
                }
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            (latencies, unexpected)
        }));
    }
    let started = Instant::now();
    for t in tasks {
        let (l, u) = t.await.expect("a connection task");
        tally.latencies.extend(l);
        tally.unexpected += u;
    }
    tally.elapsed += started.elapsed().max(duration);
    let add = |sum: Option<Duration>, before: Option<Duration>, after: Option<Duration>| {
        sum.zip(before.zip(after)).map(|(s, (b, a))| s + (a - b))
    };
    tally.server_cpu = add(
        tally.server_cpu,
        cpu_before,
        server_pid.and_then(process_cpu),
    );
    tally.loadgen_cpu = add(
        tally.loadgen_cpu,
        own_before,
        process_cpu(std::process::id()),
    );
    tally.store_cpu = add(tally.store_cpu, store_before, stores_cpu(&processes.store));
}

/// The processes loadgen started and measures (none with `--url`).
#[derive(Default)]
struct Processes {
    server: Option<u32>,
    /// Every `redis-server` of the run's store.
    store: Vec<u32>,
}

/// `--store-cpus`: the CPUs the store runs on, and the others, where the server and
/// loadgen run. Production Redis rarely shares the server's cores; on a small machine
/// this shows what a mode costs the server apart from what it costs Redis.
struct Placement {
    store: String,
    rest: String,
}

impl Placement {
    fn of(store: &[usize]) -> Placement {
        let allowed = allowed_cpus();
        for cpu in store {
            assert!(
                allowed.contains(cpu),
                "--store-cpus: CPU {cpu} is not one this process may use ({allowed:?})"
            );
        }
        let rest: Vec<String> = allowed
            .iter()
            .filter(|c| !store.contains(c))
            .map(|c| c.to_string())
            .collect();
        assert!(
            !rest.is_empty(),
            "--store-cpus leaves no CPU for the server and loadgen"
        );
        let list = |cpus: Vec<String>| cpus.join(",");
        Placement {
            store: list(store.iter().map(usize::to_string).collect()),
            rest: list(rest),
        }
    }

    /// Moves every thread of `pid` to `cpus` (`taskset`, from util-linux).
    fn pin(pid: u32, cpus: &str) {
        let status = Command::new("taskset")
            .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("running taskset (util-linux)");
        assert!(
            status.success(),
            "taskset could not pin process {pid} to CPUs {cpus}"
        );
    }
}

/// The CPUs this process may run on (`Cpus_allowed_list` of `/proc/self/status`, e.g.
/// `0-3,8`), which a cpuset may make other than 0 to n-1.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim();
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let (first, last) = part.split_once('-').unwrap_or((part, part));
        let (first, last): (usize, usize) = (
            first.parse().expect("a CPU number"),
            last.parse().expect("a CPU number"),
        );
        cpus.extend(first..=last);
    }
    cpus
}

/// The CPU time of the store's processes together; `None` without any.
fn stores_cpu(pids: &[u32]) -> Option<Duration> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| process_cpu(pid)).sum()
}

/// Creates `count` sessions as fast as possible (not measured), to fill the id store.
async fn prefill(address: &str, count: u64, connections: usize) {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let address = address.to_string();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&address).await.expect("connecting");
            let pool: CookiePool = Arc::default();
            while done.fetch_add(1, Ordering::Relaxed) < count {
                let ok = one_request(&mut conn, Endpoint::Create, &mut None, &pool, false, None)
                    .await
                    .expect("prefill");
                assert!(ok, "prefill create failed");
            }
        }));
    }
    for t in tasks {
        t.await.expect("prefill task");
    }
    eprintln!(
        "prefilled {count} sessions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `rate` as a percentage of `/health`'s rate in the same run, if `/health` ran.
fn share_of_health(run: &[(Endpoint, EndpointResult)], rate: f64) -> Option<f64> {
    let (_, health) = run.iter().find(|(e, _)| *e == Endpoint::Health)?;
    Some(100.0 * rate / health.rate)
}

fn print_table(results: &[(Endpoint, EndpointResult)]) {
    println!(
        "{:<36} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>12} {:>13} {:>12}",
        "endpoint",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "vs health",
        "unexpected",
        "server µs/req",
        "loadgen µs/req",
        "store µs/req"
    );
    for (endpoint, r) in results {
        let ratio = share_of_health(results, r.rate)
            .map(|share| format!("{share:.0} %"))
            .unwrap_or_else(|| "-".into());
        let micros = |us: Option<f64>| {
            us.map(|us| format!("{us:.1}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{:<36} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>10} {:>12} {:>13} {:>12}",
            endpoint.name(),
            r.requests,
            r.rate,
            r.p50_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0,
            ratio,
            r.unexpected,
            micros(r.server_cpu_us),
            micros(r.loadgen_cpu_us),
            micros(r.store_cpu_us)
        );
    }
}

async fn wait_ready(address: &str) {
    let ready_by = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = Connection::open(address).await {
            if let Ok(r) = c.call("GET", "/ready", None, b"", None).await {
                if r.status == 200 {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < ready_by,
            "the server at {address} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn endpoint_named(name: &str) -> Endpoint {
    match name {
        "health" => Endpoint::Health,
        "create" => Endpoint::Create,
        "resend" => Endpoint::Resend,
        "verify" => Endpoint::Verify,
        "flow" => Endpoint::Flow,
        other => panic!("unknown endpoint {other}"),
    }
}

/// Measures every endpoint against one server; then, with `--prefill`, fills the store
/// and measures `/health` and create again.
async fn run_against(
    o: &Options,
    address: &str,
    flow: Option<Arc<FlowSender>>,
    processes: &Processes,
) -> Run {
    let server_pid = processes.server;
    wait_ready(address).await;
    if let Some(pid) = server_pid {
        // Settled: plugins loaded and compiled, no request served yet.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(rss) = process_rss(pid) {
            println!("idle RSS: {:.1} MB", rss as f64 / 1e6);
        }
    }
    let pool: CookiePool = Arc::default();
    let endpoints: Vec<Endpoint> = o.endpoints.iter().map(|n| endpoint_named(n)).collect();
    let results = measure(address, &endpoints, o, &pool, flow, processes).await;
    for (endpoint, r) in &results {
        if *endpoint == Endpoint::Flow {
            println!(
                "flow: {:.0} logins/s = {:.0} HTTP requests/s (create + verify), p50 {:.2} ms, p99 {:.2} ms per login",
                r.rate,
                2.0 * r.rate,
                r.p50_us as f64 / 1000.0,
                r.p99_us as f64 / 1000.0
            );
        }
    }
    print_table(&results);
    if o.prefill > 0 {
        let rss_before = server_pid.and_then(process_rss);
        prefill(address, o.prefill, o.connections).await;
        let rss_after = server_pid.and_then(process_rss);
        if let (Some(before), Some(after)) = (rss_before, rss_after) {
            println!(
                "RSS {:.1} MB → {:.1} MB: {:.0} bytes per live session (store entry, limiter and fraud-guard state of a new credential, allocator overhead)",
                before as f64 / 1e6,
                after as f64 / 1e6,
                after.saturating_sub(before) as f64 / o.prefill as f64
            );
        }
        let after = measure(
            address,
            &[Endpoint::Health, Endpoint::Create],
            o,
            &pool,
            None,
            processes,
        )
        .await;
        println!("after prefilling {} more live sessions:", o.prefill);
        print_table(&after);
        let before = results
            .iter()
            .find(|(e, _)| *e == Endpoint::Create)
            .map(|(_, r)| r.rate);
        let now = after
            .iter()
            .find(|(e, _)| *e == Endpoint::Create)
            .map(|(_, r)| r.rate);
        if let (Some(b), Some(n)) = (before, now) {
            println!(
                "create throughput with the prefilled store: {:.0} % of before",
                100.0 * n / b
            );
        }
    }
    results
}

/// The settings of a `--limits` mode: `off`, `on` (every budget far above what a run
/// can use, so the cost is measured without refusals; the global breaker off, its
/// default) or `default` (the server's own).
/// Warnings, plus the access-log line and the `request` span it sits in (so the line
/// carries the request id, as with the default `info`), but not the development sender's
/// per-code line.
const ACCESS_LOG_FILTER: &str = "warn,otp_server::access=info,otp_server::http::observe=info";

/// `--ops`: `on` is the shipped default — the admin listener on (so metrics are
/// recorded; on a free loopback port here) and one access-log line per request, written
/// with the rest of the server's log to a file; `off` switches both off; `metrics` and
/// `access` switch on one of them. Every mode logs the `request` span (the request id on
/// every line of a request), which is not what is compared.
fn ops_env(mode: &str) -> Vec<(String, String)> {
    let (admin, access) = match mode {
        "on" => ("127.0.0.1:0", "true"),
        "off" => ("", "false"),
        "metrics" => ("127.0.0.1:0", "false"),
        "access" => ("", "true"),
        other => panic!("unknown --ops mode {other}: use on, off, metrics or access"),
    };
    [
        ("OTP_ADMIN_LISTEN", admin),
        ("OTP_ACCESS_LOG", access),
        ("OTP_LOG", ACCESS_LOG_FILTER),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn limits_env(mode: &str) -> Vec<(String, String)> {
    let set = |k: &str, v: &str| (k.to_string(), v.to_string());
    match mode {
        "default" => Vec::new(),
        "off" => vec![set("OTP_LIMITS_ENABLED", "false")],
        "on" => {
            let huge = "50000000/1d";
            let mut env: Vec<_> = [
                "SENDS_PER_CREDENTIAL",
                "SENDS_PER_CREDENTIAL_DAILY",
                "SENDS_PER_NETWORK",
                "REQUESTS_PER_NETWORK",
                "FAILED_VERIFIES_PER_NETWORK",
                "FAILED_VERIFIES_PER_CREDENTIAL_NETWORK",
            ]
            .iter()
            .map(|k| set(&format!("OTP_LIMITS_{k}"), huge))
            .collect();
            env.push(set("OTP_LIMITS_ENABLED", "true"));
            env.push(set("OTP_LIMITS_FRAUD_GUARD", "record"));
            env.push(set("OTP_LIMITS_FRAUD_HOURLY_FLOOR", "1000000000"));
            env.push(set("OTP_LIMITS_FRAUD_DAILY_FLOOR", "1000000000"));
            env
        }
        other => panic!("unknown --limits mode {other}: use off, on or default"),
    }
}

#[tokio::main]
async fn main() {
    let o = parse_options();
    let flows = o.endpoints.iter().any(|e| e == "flow");
    if flows && o.url.is_some() {
        panic!("the flow endpoint needs a server that loadgen starts itself (no --url)");
    }
    if !flows && o.senders != ["webhook"] {
        panic!("--senders applies to the flow endpoint: add --endpoints flow");
    }
    if let Some(url) = &o.url {
        let address = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        println!(
            "otp-server at {address}: {} connections, {} s per endpoint",
            o.connections, o.seconds
        );
        run_against(&o, &address, None, &Processes::default()).await;
        return;
    }
    let placement = o.store_cpus.as_deref().map(Placement::of);
    if let Some(placement) = &placement {
        Placement::pin(std::process::id(), &placement.rest);
    }
    let mut runs = Vec::new();
    for store in &o.stores {
        for sink_mode in &o.sinks {
            let shared = |url: String| {
                vec![
                    ("OTP_STORE".to_string(), url),
                    ("OTP_MASTER_KEY".to_string(), TEST_MASTER_KEY.to_string()),
                ]
            };
            // The store's processes, stopped when dropped after this run.
            let (_store, env, store_pids): (Option<Box<dyn std::any::Any>>, _, _) = match store
                .as_str()
            {
                "memory" => (None, Vec::new(), Vec::new()),
                "redis" => {
                    let redis = RedisServer::start();
                    let env = shared(redis.url());
                    let pids = redis.pid().into_iter().collect();
                    (Some(Box::new(redis)), env, pids)
                }
                "sentinel" => {
                    let sentinel = RedisSentinel::start();
                    let env = shared(sentinel.url());
                    let pids = sentinel.pids();
                    (Some(Box::new(sentinel)), env, pids)
                }
                "cluster" | "cluster-replicated" => {
                    let cluster = if store == "cluster" {
                        RedisCluster::unreplicated()
                    } else {
                        RedisCluster::start()
                    };
                    let env = shared(cluster.url());
                    let pids = cluster.pids();
                    (Some(Box::new(cluster)), env, pids)
                }
                other => panic!(
                    "unknown store {other}: use memory, redis, sentinel, cluster or cluster-replicated"
                ),
            };
            if let Some(placement) = &placement {
                for &pid in &store_pids {
                    Placement::pin(pid, &placement.store);
                }
            }
            let sink = match sink_mode.as_str() {
                "none" => None,
                "hanging" => {
                    let sink = WebhookReceiver::start_for_load(1);
                    sink.behave(Behaviour::Slow(Duration::from_secs(3600)));
                    Some(EventSink::Webhook(sink))
                }
                "failing" => {
                    let sink = WebhookReceiver::start_for_load(1);
                    sink.behave(Behaviour::Status(500));
                    Some(EventSink::Webhook(sink))
                }
                "trapping" => Some(EventSink::Trapping),
                other => panic!("unknown sink {other}: use none, hanging, failing or trapping"),
            };
            let binaries: Vec<Option<&str>> = match o.binaries.as_slice() {
                [] => vec![None],
                list => list.iter().map(|b| Some(b.as_str())).collect(),
            };
            let mut combinations = Vec::new();
            for sender in &o.senders {
                for limits in &o.limits {
                    for ops in &o.ops {
                        for binary in &binaries {
                            combinations.push((sender, limits, ops, *binary));
                        }
                    }
                }
            }
            let repeated = (0..o.repeat).flat_map(|_| combinations.iter().copied());
            for (sender, limits, ops, binary) in repeated {
                let flow = flows.then(|| Arc::new(FlowSender::start(sender)));
                let mut env = env.clone();
                env.extend(limits_env(limits));
                env.extend(ops_env(ops));
                let (_server, address) =
                    spawn_server(&o, binary, &env, flow.as_deref(), sink.as_ref());
                let cpus = match &placement {
                    Some(placement) => {
                        Placement::pin(_server.child.id(), &placement.rest);
                        format!(
                            ", store on CPUs {}, server and loadgen on {}",
                            placement.store, placement.rest
                        )
                    }
                    None => String::new(),
                };
                let sender = if flows {
                    format!(", {sender} sender")
                } else {
                    String::new()
                };
                let binary = match (binaries.len(), binary) {
                    (2.., Some(path)) => format!(", {path}"),
                    _ => String::new(),
                };
                let label = format!(
                    "{store} store, {sink_mode} sink{sender}, limits {limits}, ops {ops}{cpus}{binary}"
                );
                println!(
                    "\n{label} — otp-server at {address}: {} connections, {} s per endpoint",
                    o.connections, o.seconds
                );
                let results = run_against(
                    &o,
                    &address,
                    flow.clone(),
                    &Processes {
                        server: Some(_server.child.id()),
                        store: store_pids.clone(),
                    },
                )
                .await;
                runs.push((label, results));
            }
        }
    }
    let runs = compared(runs);
    if let [(first, base), rest @ ..] = runs.as_slice() {
        for (label, results) in rest {
            println!("\n{label} as a share of {first} (req/s, p99):");
            for (endpoint, rate, p99_us) in results {
                if let Some((_, b_rate, b_p99)) = base.iter().find(|(e, _, _)| e == endpoint) {
                    println!(
                        "  {:<36} {:>5.0} % {:>7.0} %",
                        endpoint.name(),
                        100.0 * rate / b_rate,
                        100.0 * p99_us / b_p99.max(1.0)
                    );
                }
            }
        }
    }
}

/// An endpoint's req/s and p99 (µs): what runs are compared by.
type Compared = (Endpoint, f64, f64);

/// What the runs are compared by: each endpoint's req/s and p99 (µs) per label. With
/// `--repeat`, a label's runs are first summed up: their medians, and a table of the
/// median and range of req/s, share of `/health` and server CPU per request.
fn compared(runs: Vec<(String, Run)>) -> Vec<(String, Vec<Compared>)> {
    let mut groups: Vec<(String, Vec<Run>)> = Vec::new();
    for (label, results) in runs {
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, group)) => group.push(results),
            None => groups.push((label, vec![results])),
        }
    }
    let mut out = Vec::new();
    for (label, group) in groups {
        let repeated = group.len() > 1;
        if repeated {
            println!("\n{label}: median (range) over {} runs", group.len());
            println!(
                "{:<36} {:>24} {:>14} {:>20}",
                "endpoint", "req/s", "vs health", "server µs/req"
            );
        }
        let mut medians = Vec::new();
        for (i, (endpoint, _)) in group[0].iter().enumerate() {
            let of = |f: &dyn Fn(&Run) -> Option<f64>| -> Vec<f64> {
                group.iter().filter_map(f).collect()
            };
            let rates = of(&|run| Some(run[i].1.rate));
            let p99s = of(&|run| Some(run[i].1.p99_us as f64));
            let shares = of(&|run| share_of_health(run, run[i].1.rate));
            let cpus = of(&|run| run[i].1.server_cpu_us);
            if repeated {
                let spread = |values: &[f64], decimals: usize| match summary(values) {
                    Some((median, low, high)) => {
                        format!("{median:.decimals$} ({low:.decimals$}–{high:.decimals$})")
                    }
                    None => "-".into(),
                };
                println!(
                    "{:<36} {:>24} {:>14} {:>20}",
                    endpoint.name(),
                    spread(&rates, 0),
                    spread(&shares, 0),
                    spread(&cpus, 1)
                );
            }
            let median = |values: &[f64]| summary(values).map_or(0.0, |(m, _, _)| m);
            medians.push((*endpoint, median(&rates), median(&p99s)));
        }
        out.push((label, medians));
    }
    out
}

/// The median, least and greatest of `values`; `None` when there are none.
fn summary(values: &[f64]) -> Option<(f64, f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    Some((median, sorted[0], sorted[n - 1]))
}
