//! Contract versions side by side, and the audit events hook, over real HTTP: a folder
//! mixing a 0.1.0 validator with 0.2.0 plugins serves the whole flow; 0.1.0 plugins
//! replaced by their 0.2.0 builds under load fail no request; the `webhook-events` sink
//! receives the events of a flow, signed, in order, with no code; and a sink that hangs
//! holds up no request (its events are dropped and counted).

use otp_server_blackbox::webhook::{verify_signature, Behaviour, WebhookReceiver};
use otp_server_blackbox::{fixture, plugin, Server, StatusCode, DEFAULT_PLUGINS, EVENTS_SECRET};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_may_mix_contract_versions() {
    let server = Server::builder()
        .plugin_as(fixture("v010-default-credential"), "default-credential")
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(plugin("json-final"), "json-final")
        .start();
    let ready = server.ready_details().await.json();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(
        ready["plugins"]["default-credential"]["contract"], "0.1.0",
        "{ready}"
    );
    assert_eq!(
        ready["plugins"]["dev-sender"]["contract"], "0.2.0",
        "{ready}"
    );
    assert_eq!(ready["hooks"]["sending"]["contract"], "0.2.0", "{ready}");

    let created = server.create("\"mixed\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let code = server.wait_code("\"mixed\"", 1);
    let verified = server.verify(&code, created.cookie().as_deref()).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    assert_eq!(verified.json()["credential"], "\"mixed\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_reaches_the_event_sink_in_order_without_secrets() {
    let receiver = WebhookReceiver::start();
    let server = Server::builder()
        .default_plugins()
        .event_sink(&receiver.url, "")
        .start();
    let ready = server.ready_details().await.json();
    assert_eq!(
        ready["hooks"]["events"]["plugin"], "webhook-events",
        "{ready}"
    );

    let created = server.create("\"audited\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let code = server.wait_code("\"audited\"", 1);
    let wrong = server
        .verify(&"0".repeat(code.len()), created.cookie().as_deref())
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.text());
    let verified = server.verify(&code, wrong.cookie().as_deref()).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());

    // The plugins loaded at start-up are announced once the events plugin is bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut loaded: Vec<String> = Vec::new();
    while std::time::Instant::now() < deadline {
        loaded = receiver
            .deliveries()
            .iter()
            .flat_map(|d| d.json()["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["type"] == "plugin.loaded")
            .filter_map(|e| e["subject"].as_str().map(str::to_string))
            .collect();
        if loaded.len() > DEFAULT_PLUGINS.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loaded.sort();
    let mut expected: Vec<String> = DEFAULT_PLUGINS.iter().map(|p| p.to_string()).collect();
    expected.push("webhook-events".into());
    expected.sort();
    assert_eq!(loaded, expected);

    let wanted = [
        "otp.code.sent",
        "otp.verification.failed",
        "otp.verification.succeeded",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut events: Vec<serde_json::Value> = Vec::new();
    while std::time::Instant::now() < deadline {
        events = receiver
            .deliveries()
            .iter()
            .flat_map(|d| {
                verify_signature(EVENTS_SECRET, d).expect("every batch is signed");
                d.json()["events"].as_array().cloned().unwrap_or_default()
            })
            .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("otp.")))
            .collect();
        if events.len() >= wanted.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, wanted, "{events:?}");
    for event in &events {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/otp-server");
        let subject = event["subject"].as_str().unwrap();
        assert!(subject.starts_with("cred_"), "hashed subject: {event}");
        assert!(event["data"]["requestId"].is_string(), "{event}");
        let text = event.to_string();
        assert!(!text.contains(&code), "an event carries the code: {text}");
        assert!(
            !text.contains("audited"),
            "an event names the credential: {text}"
        );
    }
    assert_eq!(events[0]["subject"], events[2]["subject"]);
}

/// A 0.1.0 build of a plugin, in the folder of a server under load, replaced by its
/// 0.2.0 build: every request before, during and after the swap succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_0_1_0_plugins_by_their_0_2_0_builds_under_load_fails_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    let server = Arc::new(
        Server::builder()
            .plugin_as(fixture("v010-default-credential"), "default-credential")
            .plugin_as(fixture("v010-dev-sender"), "dev-sender")
            .plugin_as(fixture("v010-json-final"), "json-final")
            .start(),
    );
    let contracts = |ready: &serde_json::Value| -> Vec<String> {
        DEFAULT_PLUGINS
            .iter()
            .map(|p| {
                ready["plugins"][p]["contract"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    };
    let ready = server.ready_details().await.json();
    assert_eq!(contracts(&ready), ["0.1.0"; 3], "{ready}");

    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (server, stop, completed, failures) = (
            server.clone(),
            stop.clone(),
            completed.clone(),
            failures.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = format!("\"load-{worker}-{n}\"");
                let created = server.create(&id, None).await;
                if created.status != StatusCode::OK {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("create {id}: {}", created.text()));
                    continue;
                }
                let code = tokio::task::block_in_place(|| server.wait_code(&id, 1));
                let verified = server.verify(&code, created.cookie().as_deref()).await;
                if verified.status != StatusCode::OK || verified.json()["credential"] != id {
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("verify {id}: {}", verified.text()));
                    continue;
                }
                completed.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let wait_for_flows = |at_least: usize| {
        let completed = completed.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while completed.load(Ordering::SeqCst) < at_least {
                assert!(std::time::Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_flows(20).await;
    let before = completed.load(Ordering::SeqCst);

    let current = otp_server_blackbox::workspace_root().join("plugins/dist");
    for name in DEFAULT_PLUGINS {
        otp_server_blackbox::install(
            &current.join(format!("{name}.wasm")),
            &server.plugins_dir,
            name,
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = server.ready_details().await.json();
        if contracts(&ready) == ["0.2.0"; 3] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the 0.2.0 builds were not swapped in: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let swapped = completed.load(Ordering::SeqCst);
    wait_for_flows(swapped + 20).await;
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("a load worker");
    }

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(before >= 20 && completed.load(Ordering::SeqCst) >= swapped + 20);
}

/// The audit sink hangs: events pile up to the queue bound and are dropped (counted),
/// while every request goes on as if there were no sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_event_sink_holds_up_no_request() {
    let receiver = WebhookReceiver::start();
    receiver.behave(Behaviour::Slow(Duration::from_secs(30)));
    let server = Server::builder()
        .default_plugins()
        .event_sink(
            &receiver.url,
            "total_timeout_ms = 60000\nfirst_byte_timeout_ms = 60000\n",
        )
        .env("OTP_EVENTS_QUEUE", "4")
        .env("OTP_EVENTS_DEADLINE_MS", "30000")
        .start();

    for n in 0..12 {
        let id = format!("\"hung-{n}\"");
        let created = server.create(&id, None).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
        let code = server.wait_code(&id, 1);
        let verified = server.verify(&code, created.cookie().as_deref()).await;
        assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    }
    assert!(
        receiver.wait_for(1, Duration::from_secs(10)).is_some(),
        "the sink was called"
    );
    let events = &server.ready_details().await.json()["events"];
    // 24 events; the sink holds the first batch (however many had arrived when it was
    // taken), the queue at most 4 more: the rest are dropped, none delivered.
    assert_eq!(events["delivered"], 0, "{events}");
    let dropped = events["dropped"].as_u64().unwrap();
    assert!((1..=23).contains(&dropped), "{events}");
}
