//! Plugins that reach the world, over real HTTP: the webhook sender (signed deliveries,
//! allow-listing, loopback refusal, timeouts, receiver answers), the session-token final
//! action (a full passwordless login checked down to the JWT signature), per-plugin
//! config isolation, manifest hot reload, hook restriction and channel routing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use otp_server_blackbox::webhook::{verify_signature, Behaviour, WebhookReceiver};
use otp_server_blackbox::{extra, fixture, plugin, Server, StatusCode};
use sha2::Sha256;
use std::time::{Duration, Instant};

/// A Standard Webhooks secret (`whsec_` + base64 of 24 bytes).
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SESSION_SECRET: &str = "a-session-signing-secret-of-40-bytes-long";

fn webhook_manifest(url: &str, allow: &str) -> String {
    format!(
        "hooks = [\"sending\"]\n\
         [outbound]\nallow = [{allow}]\n\
         [config]\nurl = \"{url}\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n"
    )
}

fn token_manifest(extra_config: &str) -> String {
    format!(
        "[config]\nsecret = \"${{OTP_PLUGIN_SESSION_SECRET}}\"\nissuer = \"https://login.example.com\"\nttl = 600\n{extra_config}"
    )
}

/// default-credential, webhook-sender (with `manifest`) and session-token-final.
fn server_with_webhook(manifest: &str, env: &[(&str, &str)]) -> Server {
    let mut builder = Server::builder()
        .plugin_as(plugin("default-credential"), "default-credential")
        .plugin_as(extra("webhook-sender"), "webhook-sender")
        .plugin_as(extra("session-token-final"), "session-token-final")
        .manifest("webhook-sender", manifest)
        .manifest(
            "session-token-final",
            &token_manifest("cookie = \"session\"\n"),
        )
        .env("OTP_PLUGIN_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("OTP_PLUGIN_SESSION_SECRET", SESSION_SECRET);
    for (k, v) in env {
        builder = builder.env(k, v);
    }
    builder.start()
}

fn b64json(part: &str) -> serde_json::Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// Verifies an HS256 JWT with `secret` and returns its claims.
fn verify_jwt(token: &str, secret: &str) -> serde_json::Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWT: {token}");
    assert_eq!(b64json(parts[0])["alg"], "HS256");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
        .expect("the JWT signature verifies with the configured secret");
    b64json(parts[1])
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwordless_login_through_a_signed_webhook_and_a_session_token() {
    let receiver = WebhookReceiver::start();
    let server = server_with_webhook(
        &webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\""),
        &[("OTP_RESEND_COOLDOWN_SECS", "0")],
    );
    assert_eq!(server.ready_details().await.status, StatusCode::OK);

    let a = server.create("\"alice@example.com\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let first = receiver
        .wait_for(1, Duration::from_secs(5))
        .expect("a webhook");
    verify_signature(WEBHOOK_SECRET, &first).expect("a valid Standard Webhooks signature");
    assert!(verify_signature("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &first).is_err());
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert!(first.header("webhook-id").unwrap().starts_with("msg_"));
    let ts: u64 = first.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!(unix_now().abs_diff(ts) < 60);
    let body = first.json();
    assert_eq!(body["credential"], "\"alice@example.com\"");
    assert_eq!(body["channel"], "default");
    assert_eq!(body["kind"], "first");
    assert!(body["expires_at"].as_u64().unwrap() > unix_now() * 1000);
    let code1 = body["code"].as_str().unwrap().to_string();
    assert_eq!(code1.len(), 10);

    // A resend: a new code, a new message id, kind "resend".
    let cookie = a.cookie().unwrap();
    let r = server.resend(Some(&cookie)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let second = receiver
        .wait_for(2, Duration::from_secs(5))
        .expect("a second webhook");
    verify_signature(WEBHOOK_SECRET, &second).unwrap();
    assert_ne!(first.header("webhook-id"), second.header("webhook-id"));
    assert_eq!(second.json()["kind"], "resend");
    let code = second.json()["code"].as_str().unwrap().to_string();

    // Verify with the code from the webhook: the final action answers a session token.
    let v = server.verify(&code, Some(&r.cookie().unwrap())).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
    assert_eq!(
        v.header("content-type").as_deref(),
        Some("application/json")
    );
    let answer = v.json();
    assert_eq!(answer["credential"], "\"alice@example.com\"");
    let token = answer["token"].as_str().unwrap();
    let claims = verify_jwt(token, SESSION_SECRET);
    assert_eq!(claims["sub"], "\"alice@example.com\"");
    assert_eq!(claims["iss"], "https://login.example.com");
    let iat = claims["iat"].as_u64().unwrap();
    assert!(unix_now().abs_diff(iat) < 60);
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 600);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    // The token as a cookie too, and the OTP session cookie deleted.
    let session = v
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("session="))
        .expect("the session cookie");
    assert_eq!(
        session,
        format!("session={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=600")
    );
    assert!(v.deletes_cookie("o"));

    // Neither the codes nor the secrets ever reach the server log.
    let log = server.log_text();
    for secret in [
        code1.as_str(),
        code.as_str(),
        WEBHOOK_SECRET,
        SESSION_SECRET,
        token,
    ] {
        assert!(!log.contains(secret), "the log leaks a secret:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_outside_the_allow_list_never_receive_anything() {
    let receiver = WebhookReceiver::start();
    for (allow, reason) in [
        // Another host entirely.
        (
            "\"https://hooks.example.com\"",
            "not in the manifest's allow-list",
        ),
        // The right host on another port.
        ("\"http://127.0.0.1:1\"", "not in the manifest's allow-list"),
        // Wildcards never reach loopback: only an explicit 127.0.0.1 / localhost does.
        ("\"http://*:*\"", "destination IP address is prohibited"),
        // A name that resolves to loopback, matched by a wildcard only.
        ("\"http://*:*\"", "destination IP address is prohibited"),
        // No [outbound] at all.
        ("", "not in the manifest's allow-list"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (allow, reason))| {
        // The fourth case sends to `localhost` rather than 127.0.0.1.
        let url = if i == 3 {
            receiver.url.replace("127.0.0.1", "localhost")
        } else {
            receiver.url.clone()
        };
        (webhook_manifest(&url, allow), reason)
    }) {
        let server = server_with_webhook(&allow, &[]);
        let started = Instant::now();
        let a = server.create("\"bob\"", None).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{allow}: {}",
            a.text()
        );
        assert_eq!(a.error(), "SEND:UNAVAILABLE");
        assert!(a.cookie().is_none());
        assert!(started.elapsed() < Duration::from_secs(2), "fails fast");
        let line = server
            .wait_for_log(reason, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{allow}: no {reason:?} in the log:\n{}", server.log_text()));
        assert!(line.contains("webhook-sender"), "names the plugin: {line}");
        assert!(!line.contains("/hook"), "never logs the path: {line}");
        // The plugin saw the refusal as its own error.
        server
            .wait_for_log("not delivered", Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "{allow}: the plugin did not log its error:\n{}",
                    server.log_text()
                )
            });
    }
    assert_eq!(receiver.count(), 0, "no request reached the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_answers_and_timeouts_map_to_the_api() {
    let receiver = WebhookReceiver::start();
    let manifest = webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\"")
        .replace("[config]", "total_timeout_ms = 500\n[config]");
    let server = server_with_webhook(&manifest, &[]);

    receiver.behave(Behaviour::Status(422));
    let a = server.create("\"nobody\"", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert_eq!(a.error(), "CREDENTIAL:INVALID");

    // The receiver refusing the signature (a rotated secret) or a wrong URL is not the
    // user's doing: unavailable, like a 5xx.
    for status in [401, 404, 502] {
        receiver.behave(Behaviour::Status(status));
        let a = server.create("\"later\"", None).await;
        assert_eq!(
            a.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{status}: {}",
            a.text()
        );
        assert_eq!(a.error(), "SEND:UNAVAILABLE");
    }

    // A receiver slower than the manifest's total timeout.
    receiver.behave(Behaviour::Slow(Duration::from_secs(3)));
    let started = Instant::now();
    let a = server.create("\"slow\"", None).await;
    let took = started.elapsed();
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(a.error(), "SEND:UNAVAILABLE");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "{took:?}"
    );
    server
        .wait_for_log("HTTP response timeout", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no timeout in the log:\n{}", server.log_text()));
    assert_eq!(receiver.count(), 5);

    // Without a manifest timeout, the hook's deadline bounds the request, and the
    // plugin still answers in time: 503, not a failed plugin.
    let server = server_with_webhook(
        &webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\""),
        &[("OTP_SEND_DEADLINE_MS", "800")],
    );
    let started = Instant::now();
    let a = server.create("\"slow2\"", None).await;
    let took = started.elapsed();
    assert_eq!(
        a.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}\n{}",
        a.text(),
        server.log_text()
    );
    assert_eq!(a.error(), "SEND:UNAVAILABLE");
    assert!(took < Duration::from_millis(1500), "{took:?}");
}

/// A webhook receiver and a server whose sender gives up on it after 800 ms: once the
/// receiver is told to stall, a send is under way long enough to hang up mid-request.
fn server_with_a_sender_giving_up_after_800ms(env: &[(&str, &str)]) -> (WebhookReceiver, Server) {
    let receiver = WebhookReceiver::start();
    let manifest = webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\"")
        .replace("[config]", "total_timeout_ms = 800\n[config]");
    let server = server_with_webhook(&manifest, env);
    (receiver, server)
}

/// Sends `request` (a raw HTTP/1.1 request) and hangs up once the receiver has its
/// `nth` delivery: the request's call is then sending.
async fn hang_up_while_sending(
    server: &Server,
    receiver: &WebhookReceiver,
    request: &str,
    nth: usize,
) {
    use tokio::io::AsyncWriteExt;
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    receiver
        .wait_for(nth, Duration::from_secs(5))
        .expect("the request reached the sender");
}

/// A raw `POST /api/otp/create` of credential `body`.
fn raw_create(body: &str) -> String {
    format!(
        "POST /api/otp/create HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_resend_keeps_its_session() {
    let (receiver, server) =
        server_with_a_sender_giving_up_after_800ms(&[("OTP_RESEND_COOLDOWN_SECS", "0")]);
    let a = server.create("\"dana\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();

    // The provider stalls, so this resend's send fails after 800 ms and the session id
    // it retired is given back: also when the client has hung up by then.
    receiver.behave(Behaviour::Slow(Duration::from_millis(1500)));
    let request = format!(
        "POST /api/otp/resend HTTP/1.1\r\nHost: t\r\nCookie: o={cookie}\r\nContent-Length: 0\r\n\r\n"
    );
    hang_up_while_sending(&server, &receiver, &request, 2).await;
    // Past the send's timeout and the receiver's stall.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    receiver.behave(Behaviour::Accept);
    let again = server.resend(Some(&cookie)).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "the session survived the hang-up: {}",
        again.text()
    );
    assert_eq!(receiver.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlives_its_connection_still_counts_against_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (receiver, server) =
        server_with_a_sender_giving_up_after_800ms(&[("OTP_MAX_CONNECTIONS_PER_CLIENT", "1")]);
    let address = server.base.trim_start_matches("http://").to_string();
    receiver.behave(Behaviour::Slow(Duration::from_millis(1500)));
    // A create whose client hangs up while its code is being sent.
    hang_up_while_sending(&server, &receiver, &raw_create("\"erin\""), 1).await;
    let health = async || {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let _ = stream
            .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        answer.starts_with(b"HTTP/1.1 200")
    };
    // The call still runs, holding the client's one connection place.
    assert!(
        !health().await,
        "a second connection was served while the call ran"
    );
    // Once it ends (the send times out after 800 ms), the place is free.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !health().await {
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_call_whose_client_hung_up() {
    let (receiver, server) = server_with_a_sender_giving_up_after_800ms(&[]);
    receiver.behave(Behaviour::Slow(Duration::from_millis(1500)));
    hang_up_while_sending(&server, &receiver, &raw_create("\"fay\""), 1).await;
    // A deploy stops the server while the send is under way: the call still ends (the
    // sender's request times out and the plugin says so) before the server stops.
    server.terminate();
    server
        .wait_for_log("otp-server stopped", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("did not stop:\n{}", server.log_text()));
    let log = server.log_text();
    let ended = log
        .find("not delivered")
        .unwrap_or_else(|| panic!("the call was cut short:\n{log}"));
    assert!(ended < log.find("otp-server stopped").unwrap(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_only_its_own_config_and_no_environment() {
    let receiver = WebhookReceiver::start();
    let server = Server::builder()
        .plugin_as(plugin("default-credential"), "default-credential")
        .plugin_as(extra("webhook-sender"), "webhook-sender")
        .plugin_as(fixture("fixture-snoop"), "snoop")
        .manifest(
            "webhook-sender",
            &webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\"").replace(
                "[config]",
                "[config]\nissuer = \"webhook-only\"\nttl = \"7\"",
            ),
        )
        .manifest("snoop", "[config]\nmine = \"mine\"\n")
        .env("OTP_PLUGIN_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("HOME", "/home/otp")
        .start();
    let a = server.create("\"carol\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let code = receiver.wait_for(1, Duration::from_secs(5)).unwrap().json()["code"]
        .as_str()
        .unwrap()
        .to_string();
    let v = server.verify(&code, Some(&a.cookie().unwrap())).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
    let seen = v.json();
    assert_eq!(
        seen["config"],
        serde_json::json!({"mine": "mine"}),
        "{seen}"
    );
    for (key, value) in seen["probes"].as_object().unwrap() {
        assert!(value.is_null(), "snoop read {key}: {seen}");
    }
    assert_eq!(seen["env"], serde_json::json!([]), "no environment: {seen}");
    assert_eq!(seen["args"], serde_json::json!([]), "no arguments: {seen}");
    assert!(
        !v.text().contains("MfKQ9r8G"),
        "no secret of another plugin: {seen}"
    );
}

async fn wait_until(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_changes_reload_the_plugin() {
    let a_side = WebhookReceiver::start();
    let b_side = WebhookReceiver::start();
    let allow = "\"http://127.0.0.1:*\"";
    let server = server_with_webhook(&webhook_manifest(&a_side.url, allow), &[]);
    assert_eq!(server.create("\"u0\"", None).await.status, StatusCode::OK);
    assert_eq!(a_side.count(), 1);

    // A config change: deliveries go to the new URL within 2 s.
    server.write_manifest("webhook-sender", &webhook_manifest(&b_side.url, allow));
    let mut n = 0;
    let took = wait_until("the new url", Duration::from_secs(2), async || {
        n += 1;
        server.create(&format!("\"u{n}\""), None).await.status == StatusCode::OK
            && b_side.count() > 0
    })
    .await;
    eprintln!("config change served after {took:?}");
    let before = server.ready_details().await.json();
    let digest = before["plugins"]["webhook-sender"]["manifest"].clone();
    assert!(digest.is_string(), "{before}");

    // A broken manifest: logged, reported by /ready, and the previous version serves on.
    let skip = server.log_len();
    server.write_manifest("webhook-sender", "[outbound\nallow = ");
    let line = server
        .wait_for_log_after(skip, "plugin manifest rejected", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("not reported:\n{}", server.log_text()));
    assert!(line.contains("webhook-sender.toml"), "{line}");
    let ready = server.ready_details().await.json();
    assert!(
        ready["rejected"]["webhook-sender"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{ready}"
    );
    assert_eq!(
        ready["plugins"]["webhook-sender"]["manifest"], digest,
        "still the previous manifest"
    );
    let count = b_side.count();
    assert_eq!(
        server.create("\"still\"", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        b_side.count(),
        count + 1,
        "the previous version keeps serving"
    );

    // A manifest naming a variable the server does not have is rejected with its name.
    let skip = server.log_len();
    server.write_manifest(
        "webhook-sender",
        &webhook_manifest(&b_side.url, allow)
            .replace("OTP_PLUGIN_WEBHOOK_SECRET", "OTP_PLUGIN_NOT_SET"),
    );
    let line = server
        .wait_for_log_after(skip, "plugin manifest rejected", Duration::from_secs(5))
        .unwrap();
    assert!(line.contains("OTP_PLUGIN_NOT_SET is not set"), "{line}");

    // An allow-list change: the same URL is now refused, within 2 s; the error is gone.
    server.write_manifest(
        "webhook-sender",
        &webhook_manifest(&b_side.url, "\"https://hooks.example.com\""),
    );
    let took = wait_until("the new allow-list", Duration::from_secs(2), async || {
        server.create("\"denied\"", None).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    eprintln!("allow-list change served after {took:?}");
    let ready = server.ready_details().await.json();
    assert!(ready["rejected"].as_object().unwrap().is_empty(), "{ready}");

    // Removing the manifest would drop its restrictions (hooks, channels) with it: the
    // running version keeps serving with its manifest, and /ready says why.
    let skip = server.log_len();
    let digest = ready["plugins"]["webhook-sender"]["manifest"].clone();
    std::fs::remove_file(server.plugins_dir.join("webhook-sender.toml")).unwrap();
    let line = server
        .wait_for_log_after(skip, "plugin manifest rejected", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("not reported:\n{}", server.log_text()));
    assert!(line.contains("was removed"), "{line}");
    let ready = server.ready_details().await.json();
    assert_eq!(
        ready["plugins"]["webhook-sender"]["manifest"], digest,
        "{ready}"
    );
    assert!(
        ready["rejected"]["webhook-sender"]
            .as_str()
            .is_some_and(|r| r.contains("write an empty manifest")),
        "{ready}"
    );

    // An empty manifest runs the plugin without config (and network): it fails
    // cleanly, naming the missing setting.
    server.write_manifest("webhook-sender", "");
    wait_until("no manifest", Duration::from_secs(2), async || {
        let a = server.create("\"none\"", None).await;
        a.error() == "SEND:UNAVAILABLE" && server.log_text().contains("has no \"url\"")
    })
    .await;
    let ready = server.ready_details().await.json();
    let sender = &ready["plugins"]["webhook-sender"];
    assert!(
        sender["manifest"] != digest && sender["outbound"] == serde_json::json!([]),
        "{ready}"
    );
    assert!(ready["rejected"].as_object().unwrap().is_empty(), "{ready}");

    // Without a restriction, removing the manifest is removing what it grants.
    std::fs::remove_file(server.plugins_dir.join("webhook-sender.toml")).unwrap();
    wait_until("manifest gone", Duration::from_secs(2), async || {
        server.ready_details().await.json()["plugins"]["webhook-sender"]["manifest"].is_null()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_are_routed_by_channel_and_hooks_restricted() {
    let receiver = WebhookReceiver::start();
    // fixture-all exports all three hooks; its manifest binds it to the final action
    // only, so it competes with neither the validator nor the senders.
    let server = Server::builder()
        .plugin_as(fixture("fixture-all"), "all")
        .plugin_as(plugin("email-phone-credential"), "email-phone-credential")
        .plugin_as(plugin("dev-sender"), "dev-sender")
        .plugin_as(extra("webhook-sender"), "webhook-sender")
        .manifest("all", "hooks = [\"final-action\"]\n")
        .manifest("dev-sender", "channels = [\"sms\"]\n")
        .manifest(
            "webhook-sender",
            &webhook_manifest(&receiver.url, "\"http://127.0.0.1:*\"")
                .replace("[outbound]", "channels = [\"email\"]\n[outbound]"),
        )
        .env("OTP_PLUGIN_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .start();
    let ready = server.ready_details().await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let ready = ready.json();
    assert_eq!(
        ready["hooks"]["credential-validation"]["plugin"],
        "email-phone-credential"
    );
    assert!(
        ready["hooks"]["sending"].is_null(),
        "no sender of every channel: {ready}"
    );
    assert_eq!(ready["channels"]["email"]["plugin"], "webhook-sender");
    assert_eq!(ready["channels"]["sms"]["plugin"], "dev-sender");
    assert_eq!(
        ready["plugins"]["all"]["hooks"],
        serde_json::json!(["final-action"])
    );
    assert_eq!(ready["hooks"]["final-action"]["plugin"], "all");

    let a = server
        .create("{\"email\": \"dave@example.com\"}", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let d = receiver
        .wait_for(1, Duration::from_secs(5))
        .expect("email goes to the webhook");
    assert_eq!(d.json()["channel"], "email");
    let a = server.create("\"+1 415 555 0100\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server.wait_code("+14155550100", 1);
    assert_eq!(receiver.count(), 1, "sms does not go to the webhook");
    assert!(
        server.codes_for("dave@example.com").is_empty(),
        "email does not go to dev-sender"
    );
    let code = d.json()["code"].as_str().unwrap().to_string();
    let again = server
        .create("{\"email\": \"dave@example.com\"}", None)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let code2 = receiver.wait_for(2, Duration::from_secs(5)).unwrap().json()["code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(code, code2);
    let v = server.verify(&code2, Some(&again.cookie().unwrap())).await;
    assert_eq!(
        v.status.as_u16(),
        201,
        "fixture-all's final action: {}",
        v.text()
    );

    // Without the sms sender, sms has no sender at all.
    std::fs::remove_file(server.plugins_dir.join("dev-sender.wasm")).unwrap();
    wait_until("sms unbound", Duration::from_secs(5), async || {
        let a = server.create("\"+1 415 555 0199\"", None).await;
        a.status == StatusCode::SERVICE_UNAVAILABLE && a.error() == "PLUGIN:UNAVAILABLE"
    })
    .await;
    let a = server
        .create("{\"email\": \"erin@example.com\"}", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "email still served: {}", a.text());
}
