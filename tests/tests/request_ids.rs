//! Request ids over real HTTP: every answer carries `x-request-id`; the same id is on the
//! request's log lines and access-log line and in its audit events; a proxy's id is taken
//! only from a trusted proxy; a valid `traceparent` is carried on.

use otp_server_blackbox::webhook::{verify_signature, WebhookReceiver};
use otp_server_blackbox::{Server, StatusCode, EVENTS_SECRET};
use std::time::Duration;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn create(server: &Server, credential: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = server
        .http
        .post(server.url("/api/otp/create"))
        .header("content-type", "application/json")
        .body(credential.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("a create")
}

fn request_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("an x-request-id header")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_id_is_in_the_answer_the_log_and_the_events() {
    let receiver = WebhookReceiver::start();
    let server = Server::builder()
        .default_plugins()
        .event_sink(&receiver.url, "")
        .start();

    // Untrusted peer: its x-request-id is ignored, a fresh one is made.
    let answer = create(
        &server,
        "\"traced\"",
        &[("x-request-id", "forged-id"), ("traceparent", TRACEPARENT)],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK);
    let id = request_id(&answer);
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert_eq!(
        answer
            .headers()
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap(),
        TRACEPARENT
    );
    // The access-log line, and the sender's line (inside the request span), carry it.
    let access = server
        .wait_for_log_line(
            0,
            |l| l.contains(&format!("request_id={id}")) && l.contains("otp_server::access"),
            Duration::from_secs(5),
        )
        .expect("an access-log line with the request id");
    assert!(
        access.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{access}"
    );
    let lines: Vec<String> = server
        .log_lines()
        .into_iter()
        .filter(|l| l.contains(&id))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("otp_server::access")
            && l.contains("/api/otp/create")
            && l.contains("status=200")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains("forged-id")), "{lines:#?}");

    // The audit event of the send names the same request.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut found = false;
    while !found && std::time::Instant::now() < deadline {
        found = receiver.deliveries().iter().any(|d| {
            verify_signature(EVENTS_SECRET, d).is_ok()
                && d.json()["events"].as_array().is_some_and(|events| {
                    events.iter().any(|e| {
                        e["type"] == "otp.code.sent" && e["data"]["requestId"] == id.as_str()
                    })
                })
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "no otp.code.sent event with requestId {id}");

    // Errors carry an id too.
    let bad = create(&server, "{", &[]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_ne!(request_id(&bad), id);
}

#[tokio::test]
async fn a_trusted_proxy_names_the_request_id() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_LIMITS_TRUSTED_PROXIES", "127.0.0.1")
        .start();
    let answer = create(&server, "\"proxied\"", &[("x-request-id", "edge-7f3a")]).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(request_id(&answer), "edge-7f3a");
    // An id that is not 1–128 printable ASCII characters is replaced.
    let answer = create(
        &server,
        "\"proxied2\"",
        &[("x-request-id", &"x".repeat(129))],
    )
    .await;
    assert_eq!(request_id(&answer).len(), 32);
    // A malformed traceparent is not echoed.
    let answer = create(&server, "\"proxied3\"", &[("traceparent", "00-zz-11-01")]).await;
    assert!(answer.headers().get("traceparent").is_none());
}

#[tokio::test]
async fn json_logs_carry_the_request_id_as_a_field() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_LOG_FORMAT", "json")
        .start();
    let answer = create(&server, "\"json-logged\"", &[]).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let id = request_id(&answer);
    let line = server
        .wait_for_log("otp_server::access", Duration::from_secs(5))
        .expect("an access-log line");
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(json["fields"]["route"], "/api/otp/create", "{json}");
    assert_eq!(json["fields"]["status"], 200, "{json}");
    assert_eq!(json["span"]["request_id"], id.as_str(), "{json}");
    assert!(
        !line.contains("json-logged"),
        "the access log names the credential: {line}"
    );
}

/// A plugin's log line and the access log, written without `tracing`'s formatter, carry
/// the request's span like any other line and follow the log filter as `tracing` would:
/// a directive on a field the line does not have (`plugin[{nosuch}]=off`) leaves it alone.
#[tokio::test]
async fn direct_lines_carry_the_request_span_and_follow_field_directives() {
    let server = Server::builder()
        .default_plugins()
        .env(
            "OTP_LOG",
            "info,plugin[{nosuch}]=off,otp_server::access[{nosuch}]=off",
        )
        .start();
    let answer = create(&server, "\"plugin-logged\"", &[]).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let id = request_id(&answer);
    let line = server
        .wait_for_log("OTP for \"plugin-logged\"", Duration::from_secs(5))
        .expect("the dev sender's line");
    assert!(
        line.contains(&format!(
            "  INFO request{{request_id={id}}}: plugin: OTP for \"plugin-logged\" via default: "
        )),
        "{line}"
    );
    assert!(line.ends_with(" plugin=\"dev-sender\""), "{line}");
    let access = server
        .wait_for_log("route=/api/otp/create", Duration::from_secs(5))
        .expect("the access-log line");
    assert!(
        access.contains(&format!(
            "  INFO request{{request_id={id}}}: otp_server::access: request method=POST"
        )),
        "{access}"
    );
}
