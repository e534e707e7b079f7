//! Hooks written in other languages than Rust, built from source by
//! `scripts/build-polyglot-plugins.sh` into `plugins/dist-polyglot/`:
//!
//! - `js-username-validator`: credential validation in JavaScript (QuickJS, componentize-qjs);
//! - `py-log-sender`: sending in Python (componentize-py);
//! - `c-json-final`: the final action in C (wit-bindgen c, zig cc).
//!
//! Each one passes `otp-server plugins check`, serves its hook in a real server over HTTP
//! with exact results, and hot-reloads in place of a default plugin.

use otp_server_blackbox::{
    fixture, install, plugin, plugins_check, workspace_root, Server, StatusCode,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const JS: &str = "js-username-validator";
const PY: &str = "py-log-sender";
const C: &str = "c-json-final";

/// Compiling the 18 MB Python component takes seconds in wasmtime (more in a debug build
/// on a busy machine, and the first time only: the server caches compiled plugins).
const LOAD_TIMEOUT: Duration = Duration::from_secs(180);

/// A polyglot plugin file (`plugins/dist-polyglot/NAME.wasm`).
fn polyglot(name: &str) -> PathBuf {
    let path = workspace_root()
        .join("plugins/dist-polyglot")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-polyglot-plugins.sh",
        path.display()
    );
    path
}

/// Starts a server with `plugins` (file, name) and waits, longer than the harness's
/// start-up timeout, until each hook is served by the plugin named for it.
///
/// The big components are installed after start-up, so a slow first compilation shows as
/// a late `/ready` rather than a failed start.
async fn start(plugins: &[(PathBuf, &str)], hooks: &[(&str, &str)]) -> Server {
    let server = Server::builder().start();
    for (file, name) in plugins {
        install(file, &server.plugins_dir, name);
    }
    wait_ready(&server, hooks).await;
    server
}

/// Waits until `/ready` says each `(hook, plugin)` pair is bound.
async fn wait_ready(server: &Server, hooks: &[(&str, &str)]) {
    let deadline = Instant::now() + LOAD_TIMEOUT;
    loop {
        let a = server.ready_details().await;
        let body = a.json();
        let bound = hooks
            .iter()
            .all(|(hook, plugin)| body["hooks"][hook]["plugin"] == *plugin);
        if a.status == StatusCode::OK && bound {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not ready with {hooks:?} after {LOAD_TIMEOUT:?}: {}\n{}",
            a.text(),
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log line the Python sender wrote for the `n`-th code of a credential (1-based).
fn sender_line(server: &Server, credential_id: &str, n: usize) -> String {
    let code = server.wait_code(credential_id, n);
    let prefix = format!("OTP for {credential_id} via ");
    server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(&prefix))
        .nth(n - 1)
        .unwrap_or_else(|| panic!("no line #{n} with code {code}"))
}

/// What follows `OTP for <id> via ` in a sender line, without the log's trailing
/// `plugin="..."` field.
fn after_prefix(line: &str, credential_id: &str) -> String {
    let prefix = format!("OTP for {credential_id} via ");
    let rest = &line[line.find(&prefix).expect("the prefix") + prefix.len()..];
    match rest.rsplit_once(" plugin=") {
        Some((message, _)) => message.to_string(),
        None => rest.to_string(),
    }
}

/// HH:MM:SS (UTC) of a time in milliseconds since the Unix epoch.
fn utc_clock(ms: u64) -> String {
    let s = (ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The `expires at <ms>` of a sender line.
fn expires_at(line: &str) -> u64 {
    let rest = &line[line.find("expires at ").expect("expires at") + "expires at ".len()..];
    rest.split(')').next().unwrap().parse().expect("a number")
}

#[test]
fn plugins_check_accepts_each_and_names_its_hook() {
    for (name, hook) in [
        (JS, "credential-validation"),
        (PY, "sending"),
        (C, "final-action"),
    ] {
        let (ok, text) = plugins_check(&polyglot(name));
        assert!(ok, "{name}: {text}");
        assert!(text.contains(&format!("hooks: {hook}\n")), "{name}: {text}");
        assert!(text.contains("result: accepted"), "{name}: {text}");
        assert!(
            text.contains(&format!("otp:plugin/{hook}@0.2.0")),
            "{name} lists its export: {text}"
        );
        assert!(
            text.contains("otp:plugin/log@0.2.0"),
            "{name} imports log: {text}"
        );
    }
    // C that does no I/O needs no WASI at all.
    let (_, text) = plugins_check(&polyglot(C));
    assert!(!text.contains("wasi:"), "{text}");
}

#[test]
fn a_plugin_whose_memory_starts_over_its_hooks_cap_is_refused_at_load() {
    // The Python interpreter's memory starts at about 12 MiB: under a sending cap of
    // 8 MiB no call could run, so it is refused up front (the other hooks' caps, and
    // so the pool's, stay at 64 MiB), not accepted to fail every send.
    let check = |mib: &str| {
        let output = std::process::Command::new(otp_server_blackbox::server_binary())
            .args(["plugins", "check"])
            .arg(polyglot(PY))
            .env("OTP_SEND_MEMORY_MIB", mib)
            .output()
            .expect("running plugins check");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (ok, text) = check("8");
    assert!(!ok, "{text}");
    assert!(
        text.contains("over the sending hook's memory cap"),
        "{text}"
    );
    let (ok, text) = check("16");
    assert!(ok, "{text}");
}

#[tokio::test]
async fn js_username_validator_accepts_and_rejects_exactly() {
    let server = start(
        &[
            (polyglot(JS), JS),
            (plugin("dev-sender"), "dev-sender"),
            (plugin("json-final"), "json-final"),
        ],
        &[("credential-validation", JS)],
    )
    .await;

    // Accepted: trimmed, lower-cased, the id is the bare name on channel "default".
    for (body, id) in [
        ("{\"username\": \"  Alice_01 \"}", "alice_01"),
        ("\"Bob\"", "bob"),
        ("{\"username\":\"abc\"}", "abc"),
        (
            "{\"username\":\"abcdefghijklmnopqrstuvwxyz012345\"}",
            "abcdefghijklmnopqrstuvwxyz012345",
        ),
    ] {
        let a = server.create(body, None).await;
        assert_eq!(a.status, StatusCode::OK, "{body}: {}", a.text());
        let line = sender_line(&server, id, 1);
        assert!(
            line.contains(&format!("OTP for {id} via default: ")),
            "{line}"
        );
    }

    // The whole flow: the verified credential is the validator's id.
    let a = server.create("{\"username\": \"CAROL\"}", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let code = server.wait_code("carol", 1);
    let ok = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.text(),
        r#"{"credential":"carol","message":"successfully verified"}"#
    );

    // Rejected: 400 CREDENTIAL:INVALID, the reason in the server log.
    for (body, reason) in [
        ("{\"username\": \"ab\"}", "invalid username \"ab\""),
        (
            "{\"username\": \"abcdefghijklmnopqrstuvwxyz0123456\"}",
            "invalid username",
        ),
        ("{\"username\": \"1abc\"}", "invalid username \"1abc\""),
        ("{\"username\": \"a-b-c\"}", "invalid username \"a-b-c\""),
        ("{\"username\": \"Ålice\"}", "invalid username"),
        ("{\"username\": \"\"}", "invalid username \"\""),
        ("{\"user\": \"alice\"}", "expected exactly one field"),
        (
            "{\"username\": \"alice\", \"admin\": true}",
            "expected exactly one field",
        ),
        ("{\"username\": 5}", "\"username\" must be a string"),
        ("42", "expected {"),
        ("[\"alice\"]", "expected {"),
        ("null", "expected {"),
    ] {
        let skip = server.log_len();
        let a = server.create(body, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text());
        assert_eq!(a.error(), "CREDENTIAL:INVALID", "{body}");
        let line = server
            .wait_for_log_after(skip, reason, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{body}: no {reason:?} in\n{}", server.log_text()));
        assert!(line.contains("credential rejected"), "{line}");
    }
    for id in ["ab", "1abc", "a-b-c", "alice"] {
        assert!(server.codes_for(id).is_empty(), "nothing was sent for {id}");
    }
}

#[tokio::test]
async fn py_log_sender_logs_the_message_in_the_clients_language() {
    let server = start(
        &[
            (plugin("default-credential"), "default-credential"),
            (polyglot(PY), PY),
            (plugin("json-final"), "json-final"),
        ],
        &[("sending", PY)],
    )
    .await;

    // No Accept-Language: English. The line is exactly the documented format.
    let a = server.create("\"dan\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();
    let line = sender_line(&server, "\"dan\"", 1);
    assert!(line.contains(PY), "tagged with the plugin name: {line}");
    let code = server.wait_code("\"dan\"", 1);
    let ms = expires_at(&line);
    // The request id (0.2.0's request-context) is the one the answer carries.
    let request_id = a.header("x-request-id").expect("a request id");
    assert_eq!(
        after_prefix(&line, "\"dan\""),
        format!(
            "default: {code} (first, expires at {ms}) \"Your one-time code is {code}. It expires at {} UTC.\" request {request_id}",
            utc_clock(ms)
        )
    );

    // A resend after the cooldown is flagged as such, and its code verifies.
    server.advance_clock(31_000).await;
    let a = server.resend(Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();
    let line = sender_line(&server, "\"dan\"", 2);
    let code = server.wait_code("\"dan\"", 2);
    assert!(
        after_prefix(&line, "\"dan\"")
            .starts_with(&format!("default: {code} (resend, expires at ")),
        "{line}"
    );
    let ok = server.verify(&code, Some(&cookie)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());

    // Accept-Language picks French or German by weight; unknown languages fall back to English.
    for (header, id, text) in [
        (
            "de-CH, fr;q=0.9, en;q=0.8",
            "\"de\"",
            "Ihr Einmalcode lautet {code}. Er läuft um {time} UTC ab.",
        ),
        (
            "en;q=0.2, fr",
            "\"fr\"",
            "Votre code à usage unique est {code}. Il expire à {time} UTC.",
        ),
        (
            "ja, ko;q=0.5",
            "\"ja\"",
            "Your one-time code is {code}. It expires at {time} UTC.",
        ),
    ] {
        let a = server
            .http
            .post(server.url("/api/otp/create"))
            .header("content-type", "application/json")
            .header("accept-language", header)
            .body(id.to_string())
            .send()
            .await
            .expect("the server answers");
        assert_eq!(a.status(), StatusCode::OK, "{header}");
        let request_id = a.headers()["x-request-id"].to_str().unwrap().to_string();
        let line = sender_line(&server, id, 1);
        let code = server.wait_code(id, 1);
        let ms = expires_at(&line);
        let expected = text
            .replace("{code}", &code)
            .replace("{time}", &utc_clock(ms));
        assert_eq!(
            after_prefix(&line, id),
            format!("default: {code} (first, expires at {ms}) \"{expected}\" request {request_id}"),
            "{header}"
        );
    }
}

#[tokio::test]
async fn py_log_sender_refuses_unknown_channels_as_undeliverable() {
    // fixture-validator-v2 puts every credential on channel "v2", which the sender has no
    // route for: undeliverable, so the client sees 400 CREDENTIAL:INVALID.
    let server = start(
        &[
            (fixture("fixture-validator-v2"), "validator"),
            (polyglot(PY), PY),
            (plugin("json-final"), "json-final"),
        ],
        &[("sending", PY)],
    )
    .await;
    let a = server.create("\"erin\"", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
    assert!(a.cookie().is_none());
    server
        .wait_for_log("no route for channel 'v2'", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", server.log_text()));
    assert!(server.codes_for("\"erin\"").is_empty());
}

#[tokio::test]
async fn c_json_final_answers_escaped_json() {
    let server = start(
        &[
            (plugin("default-credential"), "default-credential"),
            (plugin("dev-sender"), "dev-sender"),
            (polyglot(C), C),
        ],
        &[("final-action", C)],
    )
    .await;
    // default-credential's ids are compact JSON texts: quotes, backslashes and control
    // characters must come out escaped, non-ASCII text unchanged.
    for (body, id, expected_body) in [
        (
            "\"frank\"",
            "\"frank\"",
            r#"{"credential":"\"frank\"","channel":"default","verified":true}"#,
        ),
        (
            "{\"b\": \"tab\\there\", \"a\": \"back\\\\slash é\"}",
            "{\"a\":\"back\\\\slash é\",\"b\":\"tab\\there\"}",
            r#"{"credential":"{\"a\":\"back\\\\slash é\",\"b\":\"tab\\there\"}","channel":"default","verified":true}"#,
        ),
        (
            "12345",
            "12345",
            r#"{"credential":"12345","channel":"default","verified":true}"#,
        ),
    ] {
        let a = server.create(body, None).await;
        assert_eq!(a.status, StatusCode::OK, "{body}: {}", a.text());
        let code = server.wait_code(id, 1);
        let ok = server.verify(&code, a.cookie().as_deref()).await;
        assert_eq!(ok.status, StatusCode::OK, "{body}: {}", ok.text());
        assert_eq!(
            ok.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(ok.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(ok.text(), expected_body, "{body}");
        // And it is JSON whose credential is the id, character for character.
        assert_eq!(ok.json()["credential"], id, "{body}");
    }
}

#[tokio::test]
async fn three_languages_serve_one_flow_together() {
    let server = start(
        &[(polyglot(JS), JS), (polyglot(PY), PY), (polyglot(C), C)],
        &[
            ("credential-validation", JS),
            ("sending", PY),
            ("final-action", C),
        ],
    )
    .await;
    let a = server
        .create("{\"username\": \" Grace_Hopper \"}", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let line = sender_line(&server, "grace_hopper", 1);
    assert!(line.contains("(first, expires at "), "{line}");
    let code = server.wait_code("grace_hopper", 1);
    let ok = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.text(),
        r#"{"credential":"grace_hopper","channel":"default","verified":true}"#
    );
    let a = server.create("{\"username\": \"no spaces\"}", None).await;
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
}

/// The version (`/ready`'s hash of the file) of the plugin serving `hook`.
async fn version(server: &Server, hook: &str) -> String {
    server.ready_details().await.json()["hooks"][hook]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_default_plugins_for_polyglot_ones() {
    let server = Server::with_defaults();
    let body = "{\"username\": \"Heidi\"}";

    // Before: default-credential keeps the compact JSON as the id.
    let a = server.create(body, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server.wait_code("{\"username\":\"Heidi\"}", 1);

    // The JavaScript validator under the default's name: within seconds the next creates
    // follow its rules, and no create fails meanwhile.
    let replaced = Instant::now();
    install(&polyglot(JS), &server.plugins_dir, "default-credential");
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.codes_for("heidi").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the JS validator is not serving:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let a = server.create(body, None).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    eprintln!("JS validator served after {:?}", replaced.elapsed());
    let a = server.create("{\"username\": \"x\"}", None).await;
    assert_eq!(a.error(), "CREDENTIAL:INVALID", "the new rules hold");

    // The Python sender in place of dev-sender and the C final action in place of
    // json-final: once /ready reports the new versions, a whole flow uses them.
    let sending = version(&server, "sending").await;
    let final_action = version(&server, "final-action").await;
    let replaced = Instant::now();
    install(&polyglot(PY), &server.plugins_dir, "dev-sender");
    install(&polyglot(C), &server.plugins_dir, "json-final");
    let deadline = Instant::now() + LOAD_TIMEOUT;
    while version(&server, "sending").await == sending
        || version(&server, "final-action").await == final_action
    {
        assert!(
            Instant::now() < deadline,
            "not reloaded after {LOAD_TIMEOUT:?}:\n{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "Python sender and C final action loaded after {:?}",
        replaced.elapsed()
    );
    let a = server.create("{\"username\": \"Ivan\"}", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let line = sender_line(&server, "ivan", 1);
    assert!(
        line.contains("dev-sender"),
        "served under the old name: {line}"
    );
    assert!(
        line.contains("\"Your one-time code is "),
        "the Python sender: {line}"
    );
    let code = server.wait_code("ivan", 1);
    let ok = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.text(),
        r#"{"credential":"ivan","channel":"default","verified":true}"#
    );
}
