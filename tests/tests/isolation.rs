//! Plugins that cannot hurt the server or each other, checked on the real binary: one
//! memory cap per call across all of a component's memories, stdout cut instead of a
//! trap, plugin text that cannot forge a log line, `${NAME}` limited to the variables
//! made available to plugins (never the master key), loopback reached only through an
//! IP literal or an explicit opt-in, a final action's status and error handled, and
//! per-hook call slots and pool shares: a flood of slow sends, or of components with
//! many memories, cannot take a verified user's login.

use otp_server_blackbox::webhook::{Behaviour, WebhookReceiver};
use otp_server_blackbox::{
    extra, fixture, plugin, plugins_check, scratch_dir, server_binary, Server, StatusCode,
    TEST_MASTER_KEY,
};
use std::path::PathBuf;
use std::time::Duration;

const ECHO: &str = "fixture-echo";

/// fixture-echo as validator and final action, dev-sender as sender. The validation
/// deadline is raised: writing 100 KiB line by line takes a while on a loaded machine,
/// and these tests are about what reaches the log, not about time.
fn echo_server() -> Server {
    Server::builder()
        .plugin_as(fixture(ECHO), ECHO)
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .manifest(
            ECHO,
            "[limits.credential-validation]\ndeadline_ms = 10000\n",
        )
        .start()
}

/// Creates a session for `order` (fixture-echo's JSON instructions) and verifies it
/// with the code dev-sender logged for `id`.
async fn create_and_verify(server: &Server, order: &str, id: &str) -> otp_server_blackbox::Answer {
    let a = server.create(order, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let code = server.wait_code(id, 1);
    server.verify(&code, Some(&a.cookie().unwrap())).await
}

/// A validator component whose call uses up to eight linear memories: its own, and
/// seven "ballast" core instances of one memory each, which `validate` grows by 3 MiB
/// each for as many of them as the body (a digit) says; the body `9` spins until the
/// deadline stops it, holding its eight memories. Written in WAT, since no toolchain
/// emits a component with several memories on purpose.
fn eight_memory_component() -> PathBuf {
    const BALLAST: usize = 7;
    let imports: String = (1..=BALLAST)
        .map(|i| format!("(import \"b{i}\" \"fill\" (func $fill{i} (param i32) (result i32)))\n"))
        .collect();
    let grows: String = (1..=BALLAST)
        .map(|i| {
            format!(
                "(if (i32.ge_u (local.get $k) (i32.const {i}))
                   (then (drop (call $fill{i} (i32.const 48)))))\n"
            )
        })
        .collect();
    let instances: String = (1..=BALLAST)
        .map(|i| format!("(core instance $b{i} (instantiate $ballast))\n"))
        .collect();
    let with: String = (1..=BALLAST)
        .map(|i| format!("(with \"b{i}\" (instance $b{i}))"))
        .collect();
    let wat = format!(
        r#"(component
  (import "otp:plugin/types@0.1.0" (instance $types
    (type $rc (record
      (field "client-ip" (option string))
      (field "user-agent" (option string))
      (field "accept-language" (option string))))
    (export "request-context" (type (eq $rc)))
    (type $c (record (field "id" string) (field "channel" string)))
    (export "credential" (type (eq $c)))))
  (alias export $types "request-context" (type $request-context))
  (alias export $types "credential" (type $credential))

  (core module $ballast
    (memory (export "memory") 0)
    (func (export "fill") (param $pages i32) (result i32)
      (memory.grow (local.get $pages))))
  {instances}
  (core module $main
    {imports}
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 1024))
    (data (i32.const 16) "mem")
    (data (i32.const 24) "default")
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at
        (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (global.set $next (i32.add (local.get $at) (local.get 3)))
      (local.get $at))
    (func (export "validate")
      (param $body i32) (param $len i32)
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32)
      (result i32)
      (local $k i32)
      (local.set $k (i32.sub (i32.load8_u (local.get $body)) (i32.const 48)))
      (if (i32.eq (local.get $k) (i32.const 9)) (then (loop $spin (br $spin))))
      {grows}
      ;; ok(credential {{ id: "mem", channel: "default" }}) at offset 64
      (i32.store8 (i32.const 64) (i32.const 0))
      (i32.store (i32.const 68) (i32.const 16))
      (i32.store (i32.const 72) (i32.const 3))
      (i32.store (i32.const 76) (i32.const 24))
      (i32.store (i32.const 80) (i32.const 7))
      (i32.const 64)))
  (core instance $m (instantiate $main {with}))

  (type $validate-type (func
    (param "body" string)
    (param "context" $request-context)
    (result (result $credential (error string)))))
  (func $validate (type $validate-type)
    (canon lift (core func $m "validate")
      (memory $m "memory")
      (realloc (func $m "realloc"))))
  (instance $api (export "validate" (func $validate)))
  (export "otp:plugin/credential-validation@0.1.0" (instance $api)))"#
    );
    let bytes = wat::parse_str(&wat).expect("the WAT component parses");
    let path = scratch_dir("eight-memories").join("eight-memories.wasm");
    std::fs::write(&path, bytes).expect("writing the component");
    path
}

/// Each hook owns a share of the pool's memories. A flood of validations of a component
/// with eight memories, each held until its deadline, takes its hook's share and no
/// more (the calls beyond it wait for it), so a verified user's final action still finds
/// memories to run in. With one pool for all hooks and these slot counts (4 memories per
/// slot, 8 slots: 32), four such calls took every memory, and the final action failed
/// after the session was spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_with_many_memories_exhaust_only_their_hooks_share() {
    let server = Server::builder()
        .plugin_as(eight_memory_component(), "eight-memories")
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(plugin("json-final"), "json-final")
        // Five validation slots: a share of 20 memories, room for two spinning calls.
        // One slot, and a share of eight memories, for each other hook.
        .env("OTP_MAX_CONCURRENT_PLUGIN_CALLS", "1")
        .env("OTP_VALIDATE_MAX_CONCURRENT_CALLS", "5")
        .env("OTP_VALIDATE_DEADLINE_MS", "1000")
        .start();
    let created = server.create("1", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let code = server.wait_code("mem", 1);

    let server = std::sync::Arc::new(server);
    let flood: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { server.create("9", None).await })
        })
        .collect();
    // Until all four hold a validation slot (spinning, or waiting for the hook's share).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.admin("GET", "/metrics", None).await.text();
        let in_use = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("otp_plugin_slots_in_use{hook=\"credential-validation\"} ")
            })
            .and_then(|n| n.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if in_use >= 4.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let verified = server.verify(&code, created.cookie().as_deref()).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());

    for answer in flood {
        let answer = answer.await.expect("a flood request");
        // Stopped at its deadline, or (waiting for the share) out of time: never a pool
        // that ran out.
        assert!(
            matches!(
                (answer.status, answer.error().as_str()),
                (StatusCode::INTERNAL_SERVER_ERROR, "PLUGIN:FAILED")
                    | (StatusCode::SERVICE_UNAVAILABLE, "PLUGIN:UNAVAILABLE")
            ),
            "{}",
            answer.text()
        );
    }
    assert!(
        !server.log_text().contains("maximum concurrent limit"),
        "the pool ran out:\n{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cap_holds_across_all_memories_of_a_call() {
    let server = Server::builder()
        .plugin_as(eight_memory_component(), "eight-memories")
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(plugin("json-final"), "json-final")
        // 16 MiB per call; each memory grows to 3 MiB, far under the cap on its own.
        .manifest(
            "eight-memories",
            "[limits.credential-validation]\nmemory_mib = 16\n",
        )
        .start();
    let ready = server.ready_details().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());

    // Two ballast memories (6 MiB and the main one): within the cap.
    let a = server.create("2", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // Seven (21 MiB in all): every memory under the cap, the call over it.
    let skip = server.log_len();
    let a = server.create("7", None).await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text());
    assert_eq!(a.error(), "PLUGIN:FAILED");
    let line = server
        .wait_for_log_after(skip, "plugin call failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no failure logged:\n{}", server.log_text()));
    assert!(
        line.contains("memory cap exceeded") && line.contains("eight-memories"),
        "{line}"
    );

    // The next call starts from nothing again.
    let a = server.create("5", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_past_its_bound_is_cut_and_the_call_succeeds() {
    let server = echo_server();
    let skip = server.log_len();
    let a = server
        .create(r#"{"id":"chatty","stdout":102400}"#, None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let line = server
        .wait_for_log_after(skip, "[output cut:", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no cut marker:\n{}", server.log_text()));
    assert!(line.contains(ECHO), "names the plugin: {line}");
    // 16 KiB kept, the rest (100 KiB in lines of 100 bytes) dropped and counted.
    assert!(
        line.contains(&format!("{} bytes dropped from stdout", 102_400 - 16_384)),
        "{line}"
    );
    // What was kept is bounded too: at most 64 lines from one call.
    let kept = server
        .log_lines()
        .iter()
        .skip(skip)
        .filter(|l| l.contains(&"x".repeat(99)))
        .count();
    assert!((1..=64).contains(&kept), "{kept} lines of output logged");
    assert!(server
        .wait_for_log_after(skip, "[log cut:", Duration::from_secs(1))
        .is_some());
    // The session works: the code was sent.
    server.wait_code("chatty", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_text_cannot_forge_a_log_line() {
    let server = echo_server();
    let forged = "2026-12-03T12:00:00.000000Z  INFO otp_server: FORGED";
    let skip = server.log_len();

    // A rejection reason with a newline (and an escape sequence).
    let reason = format!("no\\n{forged}-REJECT\\u001b[2J");
    let a = server
        .create(&format!(r#"{{"reject":"{reason}"}}"#), None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
    assert!(!a.text().contains("FORGED"), "reasons stay in the log");
    server
        .wait_for_log_after(skip, "FORGED-REJECT", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the reason is logged:\n{}", server.log_text()));

    // A log line with a carriage return and a newline.
    let a = server
        .create(
            &format!(r#"{{"id":"logger","log":"fine\r\n{forged}-LOG"}}"#),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server
        .wait_for_log_after(skip, "FORGED-LOG", Duration::from_secs(5))
        .unwrap();

    // A final action's error with a newline (fixture-echo turns the id's `\n` into one).
    let v = create_and_verify(
        &server,
        r#"{"id":"err:token service down\\nFORGED-FINAL"}"#,
        r"err:token service down\nFORGED-FINAL",
    )
    .await;
    assert_eq!(v.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", v.text());
    assert_eq!(v.error(), "PLUGIN:FAILED");
    let final_error = server
        .wait_for_log_after(
            skip,
            "final action returned an error",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("the error is not logged:\n{}", server.log_text()));
    assert!(
        final_error.contains(r"token service down\nFORGED-FINAL") && final_error.contains(ECHO),
        "{final_error}"
    );

    let lines = server.log_lines();
    for line in &lines[skip..] {
        if line.contains("FORGED") {
            assert!(
                !line.starts_with("2026-12-03T12:00:00") && !line.starts_with("FORGED"),
                "a forged line: {line}"
            );
            assert!(
                !line.contains('\u{1b}'),
                "escape sequences are escaped: {line:?}"
            );
        }
    }
    let reject = lines.iter().find(|l| l.contains("FORGED-REJECT")).unwrap();
    assert!(
        reject.contains("no\\n2026") && reject.contains("\\u{1b}[2J"),
        "{reject}"
    );
    let log = lines.iter().find(|l| l.contains("FORGED-LOG")).unwrap();
    assert!(log.contains("fine\\r\\n2026"), "{log}");

    // Anything past 2 KiB is cut with a marker.
    let long = "y".repeat(10_000);
    let skip = server.log_len();
    let a = server
        .create(&format!(r#"{{"reject":"{long}"}}"#), None)
        .await;
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
    let line = server
        .wait_for_log_after(skip, "bytes dropped]", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no marker:\n{}", server.log_text()));
    assert!(line.contains("[cut: 7952 bytes dropped]"), "{line}");
    assert!(line.len() < 2048 + 300, "{} bytes", line.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_action_status_outside_200_to_599_fails_and_its_error_is_logged() {
    let server = echo_server();

    let v = create_and_verify(&server, r#"{"id":"status:599"}"#, "status:599").await;
    assert_eq!(v.status.as_u16(), 599, "{}", v.text());

    let skip = server.log_len();
    let v = create_and_verify(&server, r#"{"id":"status:700"}"#, "status:700").await;
    assert_eq!(v.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", v.text());
    assert_eq!(v.error(), "PLUGIN:FAILED");
    let line = server
        .wait_for_log_after(skip, "status 700", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line:\n{}", server.log_text()));
    assert!(
        line.contains("outside 200..=599") && line.contains(ECHO),
        "{line}"
    );

    let skip = server.log_len();
    let v = create_and_verify(
        &server,
        r#"{"id":"err:the token service is down"}"#,
        "err:the token service is down",
    )
    .await;
    assert_eq!(v.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", v.text());
    assert_eq!(v.error(), "PLUGIN:FAILED");
    assert!(
        !v.text().contains("token service"),
        "the reason stays in the log"
    );
    let line = server
        .wait_for_log_after(
            skip,
            "final action returned an error: the token service is down",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("the error is not logged:\n{}", server.log_text()));
    assert!(line.contains(ECHO), "{line}");
}

/// fixture-echo with a manifest whose config reads `${variable}`.
fn manifest_reading(variable: &str) -> String {
    format!("[config]\nvalue = \"${{{variable}}}\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_never_reads_the_master_key_or_unlisted_variables() {
    let server = Server::builder()
        .plugin_as(fixture(ECHO), ECHO)
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(fixture("fixture-snoop"), "snoop")
        .manifest(ECHO, &manifest_reading("OTP_MASTER_KEY"))
        .manifest("snoop", &manifest_reading("SOME_SECRET"))
        .env("OTP_MASTER_KEY", TEST_MASTER_KEY)
        .env("SOME_SECRET", "not-for-plugins")
        .start();
    let ready = server.ready_details().await.json();
    let rejected = &ready["rejected"];
    let echo = rejected[ECHO].as_str().unwrap_or_else(|| panic!("{ready}"));
    assert!(
        echo.contains("${OTP_MASTER_KEY}") && echo.contains("never"),
        "{echo}"
    );
    let snoop = rejected["snoop"]
        .as_str()
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(
        snoop.contains("${SOME_SECRET}") && snoop.contains("plugin_env"),
        "{snoop}"
    );
    let log = server.log_text();
    assert!(log.contains("OTP_MASTER_KEY") && log.contains("plugin manifest rejected"));
    assert!(!log.contains(TEST_MASTER_KEY) && !log.contains("not-for-plugins"));
    // Without a validator the server is not ready: nothing serves with a rejected manifest.
    let a = server.create(r#"{"id":"x"}"#, None).await;
    assert_eq!(a.error(), "PLUGIN:UNAVAILABLE", "{}", a.text());

    // An OTP_PLUGIN_ variable is fine (and its absence is named as such).
    let skip = server.log_len();
    server.write_manifest(ECHO, &manifest_reading("OTP_PLUGIN_UNSET"));
    let line = server
        .wait_for_log_after(skip, "plugin manifest rejected", Duration::from_secs(5))
        .unwrap();
    assert!(line.contains("OTP_PLUGIN_UNSET is not set"), "{line}");

    // `plugins check` applies the same rule.
    let dir = scratch_dir("check-master-key");
    std::fs::copy(fixture(ECHO), dir.join("echo.wasm")).unwrap();
    std::fs::write(dir.join("echo.toml"), manifest_reading("OTP_MASTER_KEY")).unwrap();
    let (accepted, text) = plugins_check(&dir.join("echo.wasm"));
    assert!(!accepted, "{text}");
    assert!(
        text.contains("${OTP_MASTER_KEY}") && text.contains("never"),
        "{text}"
    );
    std::fs::write(dir.join("echo.toml"), manifest_reading("HOME")).unwrap();
    let (accepted, text) = plugins_check(&dir.join("echo.wasm"));
    assert!(!accepted && text.contains("${HOME}"), "{text}");
    // … unless the configuration lists it.
    let output = std::process::Command::new(server_binary())
        .args(["plugins", "check"])
        .arg(dir.join("echo.wasm"))
        .env("OTP_PLUGIN_ENV", "HOME")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_env_lists_variables_but_never_the_master_key() {
    let server = Server::builder()
        .plugin_as(fixture(ECHO), ECHO)
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .manifest(ECHO, &manifest_reading("SOME_SECRET"))
        .env("SOME_SECRET", "for-the-echo-plugin")
        .env("OTP_PLUGIN_ENV", "OTHER, SOME_SECRET")
        .start();
    let ready = server.ready_details().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    assert!(ready.json()["rejected"].as_object().unwrap().is_empty());
    assert!(!server.log_text().contains("for-the-echo-plugin"));

    // Listing the master key stops start-up, naming it.
    let output = std::process::Command::new(server_binary())
        .env("OTP_PLUGIN_ENV", "SOME_SECRET,OTP_MASTER_KEY")
        .env("OTP_PLUGINS_DIR", scratch_dir("master-key-listed"))
        .env("OTP_LISTEN", "127.0.0.1:0")
        .env("OTP_ADMIN_LISTEN", "127.0.0.1:0")
        .output()
        .expect("running otp-server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plugin_env (OTP_PLUGIN_ENV)") && stderr.contains("OTP_MASTER_KEY"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_loopback_needs_an_explicit_opt_in() {
    let receiver = WebhookReceiver::start();
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
    let manifest = |allow: &str| {
        format!(
            "hooks = [\"sending\"]\n[outbound]\nallow = [{allow}]\n\
             [config]\nurl = \"{url}\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n"
        )
    };
    let server = Server::builder()
        .plugin_as(plugin("default-credential"), "default-credential")
        .plugin_as(extra("webhook-sender"), "webhook-sender")
        .plugin_as(plugin("json-final"), "json-final")
        .manifest("webhook-sender", &manifest(&format!("\"{origin}\"")))
        .env(
            "OTP_PLUGIN_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .start();

    // Named exactly, but resolving to 127.0.0.1: refused, nothing arrives.
    let a = server.create("\"dave\"", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.error(), "SEND:UNAVAILABLE");
    let line = server
        .wait_for_log(
            "destination IP address is prohibited",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no refusal logged:\n{}", server.log_text()));
    assert!(line.contains("webhook-sender"), "{line}");
    assert_eq!(receiver.count(), 0);

    // The same entry opted in: delivered.
    let skip = server.log_len();
    server.write_manifest(
        "webhook-sender",
        &manifest(&format!("{{ url = \"{origin}\", private = true }}")),
    );
    server
        .wait_for_log_after(skip, "plugin loaded", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no reload:\n{}", server.log_text()));
    // The log line comes just before the new version is swapped in: retry briefly.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let a = server.create("\"dave\"", None).await;
        if a.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}\n{}",
            a.text(),
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(receiver.wait_for(1, Duration::from_secs(5)).is_some());

    // A wildcard cannot opt in.
    let skip = server.log_len();
    server.write_manifest(
        "webhook-sender",
        &manifest("{ url = \"http://*:*\", private = true }"),
    );
    let line = server
        .wait_for_log_after(skip, "plugin manifest rejected", Duration::from_secs(5))
        .unwrap();
    assert!(line.contains("exact host"), "{line}");
}

/// Sends that wait on a slow provider fill the sending hook's call slots; a user who
/// already has the right code still logs in, because the final action has slots of its
/// own (with one budget for all hooks the flood would take them, and the verify would
/// get 503 with the session spent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_slow_sends_does_not_cost_a_user_with_the_right_code_their_login() {
    let receiver = WebhookReceiver::start();
    let server = Server::builder()
        .plugin_as(plugin("default-credential"), "default-credential")
        .plugin_as(extra("webhook-sender"), "webhook-sender")
        .plugin_as(plugin("json-final"), "json-final")
        .manifest(
            "webhook-sender",
            &format!(
                "hooks = [\"sending\"]\n[outbound]\nallow = [\"http://127.0.0.1:*\"]\n\
                 [config]\nurl = \"{}\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n",
                receiver.url
            ),
        )
        .env(
            "OTP_PLUGIN_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .env("OTP_MAX_CONCURRENT_PLUGIN_CALLS", "2")
        .env("OTP_SEND_DEADLINE_MS", "4000")
        .start();

    let user = server.create("\"patient@example.com\"", None).await;
    assert_eq!(user.status, StatusCode::OK, "{}", user.text());
    let code = receiver
        .take_code("\"patient@example.com\"")
        .expect("the user's code reached the provider");

    // The provider slows down: every send now holds its slot for 3 s.
    receiver.behave(Behaviour::Slow(Duration::from_secs(3)));
    let server = std::sync::Arc::new(server);
    let flood: Vec<_> = (0..12)
        .map(|n| {
            let server = server.clone();
            tokio::spawn(async move { server.create(&format!("\"flood-{n}\""), None).await })
        })
        .collect();
    assert!(
        receiver.wait_for(3, Duration::from_secs(10)).is_some(),
        "two flood sends are at the provider (the user's was the first)"
    );

    let verified = server.verify(&code, user.cookie().as_deref()).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    assert_eq!(verified.json()["credential"], "\"patient@example.com\"");

    let mut unavailable = 0;
    for create in flood {
        let answer = create.await.expect("a flood request");
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            // No slot within the send deadline, or a slot with too little of the deadline
            // left for the slow provider: the waiting counts against it.
            assert!(
                ["PLUGIN:UNAVAILABLE", "SEND:UNAVAILABLE"].contains(&answer.error().as_str()),
                "{}",
                answer.text()
            );
            unavailable += 1;
        } else {
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        }
    }
    assert!(unavailable > 0, "the flood saturated the sending slots");
}
