//! Contract versions side by side, and the audit events hook, over real HTTP: a folder
//! mixing a 0.1.0 validator with 0.2.0 plugins serves the whole flow; the
//! `webhook-events` sink receives the events of a flow, signed, in order, with no code.

use otp_server_blackbox::webhook::{verify_signature, WebhookReceiver};
use otp_server_blackbox::{extra, fixture, plugin, Server, StatusCode};
use std::time::Duration;

const EVENTS_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_may_mix_contract_versions() {
    let server = Server::builder()
        .plugin_as(fixture("v010-default-credential"), "default-credential")
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(plugin("json-final"), "json-final")
        .start();
    let ready = server.get("/ready").await.json();
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
    let manifest = format!(
        "hooks = [\"events\"]\n[outbound]\nallow = [\"http://127.0.0.1:*\"]\n\
         [config]\nurl = \"{}\"\nsecret = \"${{OTP_PLUGIN_EVENTS_SECRET}}\"\n",
        receiver.url
    );
    let server = Server::builder()
        .default_plugins()
        .plugin_as(extra("webhook-events"), "webhook-events")
        .manifest("webhook-events", &manifest)
        .env("OTP_PLUGIN_EVENTS_SECRET", EVENTS_SECRET)
        .start();
    let ready = server.get("/ready").await.json();
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
