//! The plugin platform over HTTP: readiness, hot reload (replace, corrupt, delete,
//! re-add) under a loop of calls, faults, and `otp-server plugins check`.

use otp_server_blackbox::{
    fixture, install, plugin, plugins_check, scratch_dir, server_binary, Server, StatusCode,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn ready_before_and_after_the_plugins_load() {
    let server = Server::builder().start();
    let a = server.ready_details().await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = a.json();
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["missing"],
        serde_json::json!(["credential-validation", "sending", "final-action"])
    );
    // A request that needs an unbound hook: 503 PLUGIN:UNAVAILABLE.
    let a = server.create("\"u\"", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.error(), "PLUGIN:UNAVAILABLE");

    for name in ["default-credential", "dev-sender", "json-final"] {
        install(&plugin(name), &server.plugins_dir, name);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let a = server.ready_details().await;
        if a.status == StatusCode::OK {
            break a.json();
        }
        assert!(Instant::now() < deadline, "never ready: {}", a.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["hooks"]["credential-validation"]["plugin"],
        "default-credential"
    );
    assert_eq!(body["hooks"]["sending"]["plugin"], "dev-sender");
    assert_eq!(body["hooks"]["final-action"]["plugin"], "json-final");
    assert_eq!(
        body["hooks"]["sending"]["version"].as_str().unwrap().len(),
        12
    );
}

#[tokio::test]
async fn ambiguous_hooks_need_configuration() {
    let server = Server::builder()
        .default_plugins()
        .plugin_as(plugin("email-phone-credential"), "email-phone-credential")
        .start();
    let a = server.ready_details().await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    let problems = a.json()["problems"].to_string();
    assert!(problems.contains("credential-validation"), "{problems}");

    let server = Server::builder()
        .default_plugins()
        .plugin_as(plugin("email-phone-credential"), "email-phone-credential")
        .env("OTP_HOOK_CREDENTIAL_VALIDATION", "email-phone-credential")
        .start();
    let a = server.ready_details().await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = server
        .create("{\"email\": \"  Bob@Example.COM \"}", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let line = server
        .wait_for_log(
            "OTP for Bob@example.com via email: ",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{}", server.log_text()));
    assert!(
        line.contains("dev-sender"),
        "tagged with the plugin name: {line}"
    );
    let a = server.create("\"+1 (415) 555-0100\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server.wait_code("+14155550100", 1);
    let a = server.create("{\"fax\": \"123\"}", None).await;
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
}

/// Creates in a loop until stopped; counts answers that are not 200.
fn call_loop(
    server: Arc<Server>,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU32>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut calls = 0;
        while !stop.load(Ordering::SeqCst) {
            let a = server.create(&format!("\"loop{calls}\""), None).await;
            if a.status != StatusCode::OK {
                failures.fetch_add(1, Ordering::SeqCst);
                eprintln!("failed call: {} {}", a.status, a.text());
            }
            calls += 1;
        }
        calls
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_replace_corrupt_delete_readd() {
    let server = Arc::new(Server::with_defaults());
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU32::new(0));
    let calls = call_loop(server.clone(), stop.clone(), failures.clone());

    // Replace the validator with a version whose channel is "v2": the new behaviour
    // shows within 2 s and no call fails meanwhile.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let skip = server.log_len();
    let replaced = Instant::now();
    install(
        &fixture("fixture-validator-v2"),
        &server.plugins_dir,
        "default-credential",
    );
    let line = server
        .wait_for_log_after(skip, " via v2: ", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("v2 not serving within 2 s:\n{}", server.log_text()));
    assert!(line.contains("OTP for"));
    eprintln!("new version served after {:?}", replaced.elapsed());

    // A corrupt file under the same name: logged, the previous version keeps serving.
    let skip = server.log_len();
    std::fs::write(server.plugins_dir.join(".tmp-corrupt"), b"\0asm garbage").unwrap();
    std::fs::rename(
        server.plugins_dir.join(".tmp-corrupt"),
        server.plugins_dir.join("default-credential.wasm"),
    )
    .unwrap();
    let error = server
        .wait_for_log_after(skip, "plugin rejected", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("corrupt file not reported:\n{}", server.log_text()));
    assert!(error.contains("default-credential.wasm"), "{error}");
    let skip = server.log_len();
    server
        .wait_for_log_after(skip, " via v2: ", Duration::from_secs(5))
        .expect("v2 still serving after the corrupt file");
    stop.store(true, Ordering::SeqCst);
    let total = calls.await.unwrap();
    assert!(total > 5, "the loop ran ({total} calls)");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "no call failed during reloads"
    );
    let ready = server.ready_details().await.json();
    assert!(
        ready["rejected"]["default-credential"].is_string(),
        "{ready}"
    );

    // Delete: the hook is unbound.
    std::fs::remove_file(server.plugins_dir.join("default-credential.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = server.create("\"gone\"", None).await;
        if a.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(a.error(), "PLUGIN:UNAVAILABLE");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still served after delete: {}",
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Re-add: served again.
    install(
        &plugin("default-credential"),
        &server.plugins_dir,
        "default-credential",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let a = server.create("\"back\"", None).await;
        if a.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served after re-add: {}",
            a.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The log line may reach the log reader just after the answer: wait for it.
    server
        .wait_for_log("OTP for \"back\" via default: ", Duration::from_secs(5))
        .expect("the re-added validator served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_one_request_cleanly() {
    for (fixture_name, body, reason) in [
        ("fixture-trap", "\"f\"", "plugin call failed"),
        ("fixture-loop", "\"f\"", "deadline exceeded"),
        ("fixture-alloc", "\"f\"", "memory cap exceeded"),
        // Host memory a plugin holds through WASI resources (a million header sets of
        // 1 KiB, a gigabyte, unless the resource table's bound stops it).
        (
            "fixture-alloc",
            "\"fields\"",
            "resource table has no free keys",
        ),
    ] {
        let server = Server::builder()
            .plugin_as(fixture(fixture_name), "validator")
            .plugin_as(plugin("dev-sender"), "dev-sender")
            .plugin_as(plugin("json-final"), "json-final")
            // A small cap and a generous deadline, so the memory bomb hits the cap (not
            // the clock) even on a loaded machine; the endless loop still stops at 2 s.
            .env("OTP_VALIDATE_MEMORY_MIB", "16")
            .env("OTP_VALIDATE_DEADLINE_MS", "2000")
            .start();
        let started = Instant::now();
        let a = server.create(body, None).await;
        let took = started.elapsed();
        assert_eq!(
            a.status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{fixture_name}: {}",
            a.text()
        );
        assert_eq!(a.error(), "PLUGIN:FAILED");
        assert!(a.cookie().is_none());
        let line = server
            .wait_for_log(reason, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "{fixture_name}: no {reason:?} in the log:\n{}",
                    server.log_text()
                )
            });
        assert!(
            line.contains("validator"),
            "the log names the plugin: {line}"
        );
        eprintln!("{fixture_name}: failed after {took:?}");
        // The server is unharmed: health answers, and swapping in a working validator
        // serves the next request normally.
        assert_eq!(server.get("/health").await.status, StatusCode::OK);
        install(
            &plugin("default-credential"),
            &server.plugins_dir,
            "validator",
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let a = server.create("\"next\"", None).await;
            if a.status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{fixture_name}: not recovered: {}",
                a.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn sender_errors_map_to_the_api() {
    // fixture-all exports all three hooks; its sender fails on purpose for some ids.
    let server = Server::builder()
        .plugin_as(fixture("fixture-all"), "all")
        .start();
    assert_eq!(server.ready_details().await.status, StatusCode::OK);
    let a = server.create("\"unavailable\"", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.error(), "SEND:UNAVAILABLE");
    assert!(a.cookie().is_none(), "nothing changes");
    let a = server.create("\"undeliverable\"", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert_eq!(a.error(), "CREDENTIAL:INVALID");
    // A session whose next credential is unavailable keeps its cookie working.
    let a = server.create("\"fine\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();
    let b = server.create("\"unavailable2\"", Some(&cookie)).await;
    assert_eq!(b.error(), "SEND:UNAVAILABLE");
    let code = server.wait_code("\"fine\"", 1);
    let ok = server.verify(&code, Some(&cookie)).await;
    assert_eq!(
        ok.status.as_u16(),
        201,
        "the final action's status: {}",
        ok.text()
    );
    assert_eq!(ok.text(), "done:\"fine\"");
}

#[test]
fn plugins_check_good_and_bad_files() {
    let (ok, text) = plugins_check(&plugin("dev-sender"));
    assert!(ok, "{text}");
    assert!(text.contains("hooks: sending"), "{text}");
    assert!(
        text.contains("otp:plugin/log@0.2.0"),
        "lists imports: {text}"
    );
    assert!(text.contains("contract: otp:plugin@0.2.0"), "{text}");
    let (ok, text) = plugins_check(&fixture("v010-dev-sender"));
    assert!(ok, "{text}");
    assert!(text.contains("contract: otp:plugin@0.1.0"), "{text}");
    assert!(text.contains("result: accepted"), "{text}");

    let (ok, text) = plugins_check(&fixture("fixture-all"));
    assert!(ok, "{text}");
    assert!(
        text.contains("hooks: credential-validation, sending, final-action"),
        "{text}"
    );

    let (ok, text) = plugins_check(&fixture("fixture-empty"));
    assert!(!ok, "{text}");
    assert!(
        text.contains("exports no otp:plugin hook of a supported version (0.1.0, 0.2.0)"),
        "{text}"
    );

    let dir = scratch_dir("check");
    let corrupt = dir.join("corrupt.wasm");
    std::fs::write(&corrupt, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let (ok, text) = plugins_check(&corrupt);
    assert!(!ok, "{text}");
    assert!(text.contains("not a valid WebAssembly component"), "{text}");

    // A manifest's memory is judged against the configured cap, as the server judges it.
    let sender = dir.join("sender.wasm");
    std::fs::copy(plugin("dev-sender"), &sender).unwrap();
    std::fs::write(
        dir.join("sender.toml"),
        "[limits.sending]\nmemory_mib = 100\n",
    )
    .unwrap();
    let check_with_cap = |mib: &str| {
        let output = std::process::Command::new(server_binary())
            .args(["plugins", "check"])
            .arg(&sender)
            .env("OTP_SEND_MEMORY_MIB", mib)
            .output()
            .expect("running plugins check");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    };
    let (ok, text) = check_with_cap("128");
    assert!(ok, "within a configured 128 MiB: {text}");
    let (ok, text) = check_with_cap("64");
    assert!(!ok && text.contains("memory_mib"), "{text}");
}

#[test]
fn a_bad_setting_stops_start_up_with_its_name() {
    for (name, value) in [
        ("OTP_LISTEN", "not-an-address"),
        ("OTP_MAX_ATTEMPTS", "-1"),
        ("OTP_ENV", "prod"),
    ] {
        let output = std::process::Command::new(server_binary())
            .env(name, value)
            .env("OTP_PLUGINS_DIR", scratch_dir("badconfig"))
            .output()
            .expect("running otp-server");
        assert!(!output.status.success(), "{name}={value} started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let dir = scratch_dir("sigterm");
    let mut child = std::process::Command::new(server_binary())
        .env("OTP_LISTEN", "127.0.0.1:0")
        .env("OTP_ADMIN_LISTEN", "127.0.0.1:0")
        .env("OTP_PLUGINS_DIR", &dir)
        .env("OTP_CACHE_DIR", "")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting otp-server");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("otp-server listening")));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    assert!(lines
        .map_while(Result::ok)
        .any(|l| l.contains("otp-server stopped")));
}
