//! The OTP protocol over HTTP, against the real binary with the default plugins:
//! every row of the create, resend and verify tables, the reference suite's cases,
//! replays, switching credentials, expiry, production cookies, the body limit, and a
//! handler panic answered 500 with the server still serving.

use otp_server_blackbox::{Answer, Body, Server, StatusCode};
use std::time::Duration;

const MAX_AGE_MS: u64 = 180_000;
const COOLDOWN_MS: u64 = 30_000;
const BLOCK_MS: u64 = 20_000;

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "body: {}", answer.text());
    assert_eq!(answer.error(), code, "body: {}", answer.text());
    assert!(
        answer.json()["message"].is_string(),
        "message missing: {}",
        answer.text()
    );
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/json"),
        "error bodies are JSON"
    );
}

/// A fresh session for `credential` (JSON text); returns the cookie and its code.
async fn start(server: &Server, credential: &str, id: &str) -> (String, String) {
    let before = server.codes_for(id).len();
    let answer = server.create(credential, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let cookie = answer.cookie().expect("create sets the cookie");
    (cookie, server.wait_code(id, before + 1))
}

fn wrong_code(right: &str) -> String {
    // Same length and alphabet, different value.
    let mut chars: Vec<char> = right.chars().collect();
    chars[0] = if chars[0] == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

#[tokio::test]
async fn create_rejects_bad_bodies_like_the_reference() {
    let server = Server::with_defaults();
    // Without content type or body.
    let a = server
        .request("POST", "/api/otp/create", Body::None, None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID");
    // JSON content type but no body: malformed JSON (400 GENERIC), as the reference says.
    let a = server
        .request(
            "POST",
            "/api/otp/create",
            Body::Typed("application/json", vec![]),
            None,
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "GENERIC");
    assert!(a.json()["message"].as_str().unwrap().contains("JSON"));
    // text/plain.
    let a = server
        .request(
            "POST",
            "/api/otp/create",
            Body::Typed("text/plain", b"\"bob\"".to_vec()),
            None,
        )
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID");
    // Invalid JSON.
    let a = server.create("{\"a\":", None).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "GENERIC");
    assert!(a.json()["message"].as_str().unwrap().contains("JSON"));
    // Values the default credential plugin refuses.
    for body in ["false", "true", "null", "\"\"", "{}", "[]"] {
        let a = server.create(body, None).await;
        assert_error(&a, StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID");
        assert!(a.cookie().is_none());
    }
    assert!(server.codes_for("false").is_empty());
}

#[tokio::test]
async fn create_answers_state_and_cookie() {
    let server = Server::with_defaults();
    let a = server.create("{\"email\": \"a@example.com\"}", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let state = a.json();
    let expires = state["expires"].as_str().unwrap();
    let resend_block = state["resendBlock"].as_str().unwrap();
    // ISO-8601 with milliseconds; expires rounded down, resendBlock up: both whole seconds.
    assert!(
        expires.ends_with(".000Z") && expires.len() == 24,
        "{expires}"
    );
    assert!(resend_block.ends_with(".000Z"), "{resend_block}");
    assert!(state.get("otpBlock").is_none() && state.get("blocked").is_none());
    let set = a.set_cookies();
    assert_eq!(set.len(), 1);
    let cookie = &set[0];
    // Max-Age counts from when the browser receives it: a client clock that is off
    // cannot end the session early, as an Expires alone would.
    for attribute in [
        "Path=/",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=180;",
        "Expires=",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure in development: {cookie}"
    );
    assert_eq!(a.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        a.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    // The dev sender got the compact JSON id; the code is 10 of a-z0-9.
    let code = server.wait_code("{\"email\":\"a@example.com\"}", 1);
    assert_eq!(code.len(), 10);
    assert!(code
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    // The host itself never logs the code or the cookie.
    let value = a.cookie().unwrap();
    for line in server.log_lines() {
        assert!(!line.contains(&value), "cookie in the log: {line}");
        if line.contains(&code) {
            assert!(
                line.contains("OTP for"),
                "code logged outside the dev sender: {line}"
            );
        }
    }
}

#[tokio::test]
async fn success_path_and_replays_of_every_consumed_state() {
    let server = Server::with_defaults();
    let (cookie1, code1) = start(&server, "\"alice\"", "\"alice\"").await;
    // A wrong code moves the session to a new cookie state.
    let wrong = server.verify(&wrong_code(&code1), Some(&cookie1)).await;
    assert_error(&wrong, StatusCode::FORBIDDEN, "OTP:INCORRECT");
    let cookie2 = wrong.cookie().expect("a wrong code re-seals the session");
    assert_ne!(cookie1, cookie2);
    // The old state is dead, even with the right code.
    let replay = server.verify(&code1, Some(&cookie1)).await;
    assert_error(&replay, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    assert!(replay.deletes_cookie("o"));
    // The right code on the live state: the final plugin's answer, cookie deleted.
    let ok = server.verify(&code1, Some(&cookie2)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.json(),
        serde_json::json!({"credential": "\"alice\"", "message": "successfully verified"})
    );
    assert!(ok.deletes_cookie("o"));
    // Every consumed state is refused afterwards.
    for cookie in [&cookie1, &cookie2] {
        let again = server.verify(&code1, Some(cookie)).await;
        assert_error(&again, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
        let resend = server.resend(Some(cookie)).await;
        assert_error(&resend, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    }
}

#[tokio::test]
async fn verify_rejects_bad_input_before_looking_at_the_cookie() {
    let server = Server::with_defaults();
    let (cookie, code) = start(&server, "42", "42").await;
    let cases: Vec<(&str, Body)> = vec![
        ("too short", Body::Form("otp=abc")),
        ("too long", Body::Form("otp=abcdefghijk")),
        ("upper case", Body::Form("otp=ABCDEFGHIJ")),
        ("symbols", Body::Form("otp=abcd-fghij")),
        ("wrong field name", Body::Form("code=abcdefghij")),
        ("no body", Body::None),
        ("JSON", Body::Json("{\"otp\":\"abcdefghij\"}")),
        ("two fields", Body::Form("otp=abcdefghij&otp=abcdefghij")),
        ("trailing newline", Body::Form("otp=abcdefghij%0A")),
    ];
    for (label, body) in cases {
        let a = server
            .request("POST", "/api/otp/verify", body, Some(&cookie))
            .await;
        assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_FORMAT");
        assert!(
            a.set_cookies().is_empty(),
            "{label}: the cookie is untouched"
        );
    }
    // Format is checked before the cookie: no cookie still says INVALID_FORMAT.
    let a = server
        .request("POST", "/api/otp/verify", Body::Form("otp=x"), None)
        .await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_FORMAT");
    // None of that cost an attempt: the right code still works.
    let ok = server.verify(&code, Some(&cookie)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test]
async fn verify_without_or_with_a_tampered_cookie() {
    let server = Server::with_defaults();
    let a = server.verify("abcdefghij", None).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    assert!(
        a.set_cookies().is_empty(),
        "nothing to delete without a cookie"
    );
    let (cookie, code) = start(&server, "\"t\"", "\"t\"").await;
    let mut tampered: Vec<char> = cookie.chars().collect();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let a = server.verify(&code, Some(&tampered)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    assert!(a.deletes_cookie("o"));
    let a = server.verify(&code, Some("not-a-cookie")).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
}

#[tokio::test]
async fn wrong_codes_down_to_the_temporary_and_then_the_hard_block() {
    let server = Server::with_defaults();
    let (cookie, code) = start(&server, "\"eve\"", "\"eve\"").await;
    let wrong = wrong_code(&code);
    // Attempt 1: 2 left.
    let a = server.verify(&wrong, Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:INCORRECT");
    assert!(a.json().get("otpBlock").is_none());
    let cookie = a.cookie().unwrap();
    // Attempt 2: 1 left, the temporary block starts.
    let a = server.verify(&wrong, Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:INCORRECT");
    let block = a.json()["otpBlock"]
        .as_str()
        .expect("otpBlock when the block starts")
        .to_string();
    assert!(block.ends_with(".000Z"));
    let cookie = a.cookie().unwrap();
    // During the block, even the right code is refused, and the cookie is unchanged.
    let a = server.verify(&code, Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:VERIFICATION_NOT_ALLOWED");
    assert_eq!(a.json()["otpBlock"].as_str(), Some(block.as_str()));
    assert!(a.set_cookies().is_empty());
    // After the block: the last attempt, wrong → hard block.
    server.advance_clock(BLOCK_MS + 1_000).await;
    let a = server.verify(&wrong, Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:TOO_MANY_ATTEMPTS");
    assert_eq!(a.json()["blocked"], serde_json::json!(true));
    let cookie = a.cookie().unwrap();
    // Blocked for good, even with the right code.
    let a = server.verify(&code, Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:VERIFICATION_NOT_ALLOWED");
    assert_eq!(a.json()["blocked"], serde_json::json!(true));
    // Creating the same credential again does not escape the block.
    let a = server.create("\"eve\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["blocked"], serde_json::json!(true));
    assert_eq!(
        server.codes_for("\"eve\"").len(),
        1,
        "no new code for a blocked credential"
    );
    // And resend is refused.
    let cookie = a.cookie().unwrap();
    let a = server.resend(Some(&cookie)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:RESENT_NOT_ALLOWED");
}

#[tokio::test]
async fn resend_rules() {
    let server = Server::with_defaults();
    // Without a cookie / with a tampered one.
    let a = server.resend(None).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    let a = server.resend(Some("AAAA")).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    assert!(a.deletes_cookie("o"));

    let (cookie, code1) = start(&server, "\"r\"", "\"r\"").await;
    // Too early.
    let a = server.resend(Some(&cookie)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:RESENT_NOT_ALLOWED");
    assert!(a.json()["resendBlock"].is_string());
    // Spend one attempt so we can check attempts are not reset by a resend.
    let a = server.verify(&wrong_code(&code1), Some(&cookie)).await;
    assert_error(&a, StatusCode::FORBIDDEN, "OTP:INCORRECT");
    let cookie = a.cookie().unwrap();
    // After the cooldown: a new code.
    server.advance_clock(COOLDOWN_MS + 1_000).await;
    let a = server.resend(Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(
        a.json()["resendBlock"].is_string(),
        "the allowance is used up"
    );
    let resent = a.cookie().unwrap();
    let code2 = server.wait_code("\"r\"", 2);
    assert!(
        server.log_text().contains("(resend"),
        "the sender is told it is a resend"
    );
    // The pre-resend state is dead.
    let a = server.verify(&code2, Some(&cookie)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE");
    // One resend only, even after another cooldown.
    server.advance_clock(COOLDOWN_MS + 1_000).await;
    let a = server.resend(Some(&resent)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:RESENT_NOT_ALLOWED");
    // Attempts were not reset: one wrong code now starts the temporary block.
    if code1 != code2 {
        let a = server.verify(&code1, Some(&resent)).await;
        assert_error(&a, StatusCode::FORBIDDEN, "OTP:INCORRECT");
        assert!(a.json()["otpBlock"].is_string(), "{}", a.text());
        let cookie = a.cookie().unwrap();
        server.advance_clock(BLOCK_MS + 1_000).await;
        let ok = server.verify(&code2, Some(&cookie)).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    }
}

#[tokio::test]
async fn expiry() {
    let server = Server::with_defaults();
    let (cookie, code) = start(&server, "\"x\"", "\"x\"").await;
    server.advance_clock(MAX_AGE_MS + 1_000).await;
    // The id's TTL ran out with the session: the cookie is no longer valid at all.
    let a = server.verify(&code, Some(&cookie)).await;
    assert!(
        a.error() == "OTP:EXPIRED" || a.error() == "OTP:INVALID_COOKIE",
        "{}",
        a.text()
    );
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let a = server.resend(Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // An expired cookie on create simply starts a new session.
    let a = server.create("\"x\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server.wait_code("\"x\"", 2);
}

#[tokio::test]
async fn current_token_expired_while_the_session_lives() {
    let server = Server::with_defaults();
    let (cookie, _) = start(&server, "\"first\"", "\"first\"").await;
    server.advance_clock(MAX_AGE_MS - 10_000).await;
    // A second credential keeps the session (and its id) alive past the first's expiry.
    let a = server.create("\"second\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();
    server.advance_clock(20_000).await;
    // Switching back to the expired first one starts a new token for it.
    let a = server.create("\"first\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let cookie = a.cookie().unwrap();
    let code = server.wait_code("\"first\"", 2);
    let ok = server.verify(&code, Some(&cookie)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["credential"], "\"first\"");
}

#[tokio::test]
async fn verify_on_an_expired_current_token_says_expired() {
    let server = Server::with_defaults();
    let (cookie, _) = start(&server, "\"a1\"", "\"a1\"").await;
    server.advance_clock(MAX_AGE_MS - 10_000).await;
    let a = server.create("\"a2\"", Some(&cookie)).await;
    let cookie = a.cookie().unwrap();
    // Switch back to a1 while it is still live, then let it expire (a2 keeps the id alive).
    let a = server.create("\"a1\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.cookie().unwrap();
    server.advance_clock(15_000).await;
    let a = server.verify("abcdefghij", Some(&cookie)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:EXPIRED");
    let a = server.resend(Some(&cookie)).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "OTP:EXPIRED");
}

#[tokio::test]
async fn switching_between_credentials_and_the_cap() {
    let server = Server::with_defaults();
    let (cookie, code_a) = start(&server, "\"a\"", "\"a\"").await;
    let b = server.create("\"b\"", Some(&cookie)).await;
    assert_eq!(b.status, StatusCode::OK);
    let cookie = b.cookie().unwrap();
    let c = server.create("\"c\"", Some(&cookie)).await;
    assert_eq!(c.status, StatusCode::OK);
    let cookie = c.cookie().unwrap();
    // A fourth credential is over the cap.
    let d = server.create("\"d\"", Some(&cookie)).await;
    assert_error(&d, StatusCode::BAD_REQUEST, "OTP:TOO_MANY_CREDENTIALS");
    assert!(server.codes_for("\"d\"").is_empty());
    // Back to "a": it becomes current, no new code.
    let a = server.create("\"a\"", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(server.codes_for("\"a\"").len(), 1);
    let cookie_a = a.cookie().unwrap();
    // The code for "b" is not the current one.
    let code_b = server.wait_code("\"b\"", 1);
    if code_b != code_a {
        let wrong = server.verify(&code_b, Some(&cookie_a)).await;
        assert_error(&wrong, StatusCode::FORBIDDEN, "OTP:INCORRECT");
        let ok = server.verify(&code_a, Some(&wrong.cookie().unwrap())).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.json()["credential"], "\"a\"");
    }
}

#[tokio::test]
async fn production_cookie_attributes_and_deletion() {
    let server = Server::builder()
        .default_plugins()
        .env("OTP_ENV", "production")
        .env("OTP_TEST_CLOCK", "0")
        .start();
    let a = server.create("\"p\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let set = a.set_cookies();
    let cookie = set[0].clone();
    assert!(cookie.starts_with("__Host-Http-o="), "{cookie}");
    for attribute in [
        "Path=/",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Expires=",
    ] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert_eq!(
        a.header("strict-transport-security").as_deref(),
        Some("max-age=63072000")
    );
    assert!(
        server
            .log_text()
            .contains("PRODUCTION MODE WITH THE dev-sender PLUGIN BOUND"),
        "production warns about the dev sender"
    );
    let value = a.cookie_named("__Host-Http-o").unwrap();
    let code = server.wait_code("\"p\"", 1);
    let response = server
        .http
        .post(server.url("/api/otp/verify"))
        .header("cookie", format!("__Host-Http-o={value}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("otp={code}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let deleted: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        deleted.iter().any(|c| c.starts_with("__Host-Http-o=;")
            && c.contains("Secure")
            && c.contains("1970")),
        "{deleted:?}"
    );
    // A replay with the production cookie: 400 and deleted, never a 500.
    let replay = server
        .http
        .post(server.url("/api/otp/resend"))
        .header("cookie", format!("__Host-Http-o={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    // The test clock is not available in production.
    let a = server
        .request("POST", "/test/clock?ms=1", Body::None, None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn body_limit_is_100_kib_chunked_or_not() {
    let server = Server::with_defaults();
    // A JSON string of exactly n bytes: "xxxx…".
    let json_of = |n: usize| {
        let mut s = String::with_capacity(n);
        s.push('"');
        s.push_str(&"x".repeat(n - 2));
        s.push('"');
        s
    };
    let at = json_of(102_400);
    let over = json_of(102_401);
    // With Content-Length: the limit passes (the credential is then too long for a
    // cookie: CREDENTIAL:INVALID, not 413), one byte more fails.
    let a = server.create(&at, None).await;
    assert_ne!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    assert_error(&a, StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID");
    let a = server.create(&over, None).await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "BODY:TOO_LARGE");
    // Chunked, without Content-Length.
    for (body, expect_413) in [(at, false), (over, true)] {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
            .into_bytes()
            .chunks(4096)
            .map(|c| Ok(c.to_vec()))
            .collect();
        let stream = futures_stream(chunks);
        let response = server
            .http
            .post(server.url("/api/otp/create"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let json: serde_json::Value = response.json().await.unwrap();
        if expect_413 {
            assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(json["error"], "BODY:TOO_LARGE");
        } else {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert_eq!(json["error"], "CREDENTIAL:INVALID");
        }
    }
    // The limit applies to verify and resend too.
    let form = format!("otp={}", "a".repeat(102_401));
    let a = server
        .request("POST", "/api/otp/verify", Body::Form(&form), None)
        .await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "BODY:TOO_LARGE");
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn unknown_routes_methods_and_health() {
    let server = Server::with_defaults();
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/otp/create"),
        ("PUT", "/api/otp/verify"),
        ("DELETE", "/api/otp/resend"),
        ("POST", "/api/otp/nope"),
        ("GET", "/test/clock"),
    ] {
        let a = server.request(method, path, Body::None, None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(a.body.is_empty(), "{method} {path}: {}", a.text());
    }
    for method in ["GET", "POST", "HEAD", "PUT"] {
        let a = server.request(method, "/health", Body::None, None).await;
        assert_eq!(a.status, StatusCode::OK, "{method} /health");
        if method != "HEAD" {
            assert_eq!(a.text(), "OK");
        }
    }
}

#[tokio::test]
async fn cors_for_the_configured_origin_only() {
    let server = Server::builder()
        .default_plugins()
        .env("CORS_ORIGIN", "https://app.example.com")
        .start();
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/api/otp/create"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let other = server
        .http
        .post(server.url("/api/otp/create"))
        .header("origin", "https://evil.example.com")
        .header("content-type", "application/json")
        .body("\"c\"")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

/// `path` posted as a browser would from a page at `origin`; `fetch_site` is the
/// `Sec-Fetch-Site` it adds (only over HTTPS; `None` for older browsers and plain HTTP).
async fn post_from_page(
    server: &Server,
    path: &str,
    body: Option<(&str, &str)>,
    cookie: Option<&str>,
    origin: &str,
    fetch_site: Option<&str>,
) -> Answer {
    let mut request = server.http.post(server.url(path)).header("origin", origin);
    if let Some(site) = fetch_site {
        request = request.header("sec-fetch-site", site);
    }
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("o={cookie}"));
    }
    if let Some((content_type, text)) = body {
        request = request
            .header("content-type", content_type)
            .body(text.to_string());
    }
    let response = request.send().await.expect("the server answers");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn a_page_of_a_sibling_subdomain_cannot_spend_the_session() {
    let server = Server::builder()
        .default_plugins()
        .env("CORS_ORIGIN", "https://app.example.com")
        .start();
    let (cookie, code) = start(&server, "\"sibling\"", "\"sibling\"").await;
    let own = server.base.trim_start_matches("http://").to_string();
    let json = Some(("application/json", "\"sibling\""));
    let right = format!("otp={code}");
    let form = Some(("application/x-www-form-urlencoded", right.as_str()));
    // A page on evil.example.com is the same site as api.example.com, so the browser
    // sends the SameSite=Strict cookie along: its posts are refused, whatever they carry.
    for fetch_site in [Some("same-site"), Some("cross-site"), None] {
        for (path, body) in [
            ("/api/otp/create", json),
            ("/api/otp/resend", None),
            ("/api/otp/verify", form),
        ] {
            let a = post_from_page(
                &server,
                path,
                body,
                Some(&cookie),
                "https://evil.example.com",
                fetch_site,
            )
            .await;
            assert_error(&a, StatusCode::FORBIDDEN, "REQUEST:CROSS_SITE");
            assert!(
                a.set_cookies().is_empty(),
                "{path}: the cookie is untouched"
            );
        }
    }
    assert_eq!(
        server.codes_for("\"sibling\"").len(),
        1,
        "no resend went out"
    );
    // The configured origin, the server's own pages and non-browser clients pass; the
    // refused posts spent no attempt, so the right code still signs in.
    let a = post_from_page(
        &server,
        "/api/otp/create",
        json,
        None,
        "https://app.example.com",
        Some("same-site"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = post_from_page(
        &server,
        "/api/otp/create",
        json,
        None,
        &format!("http://{own}"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v = post_from_page(
        &server,
        "/api/otp/verify",
        form,
        Some(&cookie),
        "https://api.example.com",
        Some("same-origin"),
    )
    .await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
}

#[tokio::test]
async fn behind_a_trusted_proxy_that_rewrites_host_its_forwarded_host_counts() {
    // An older browser (no Sec-Fetch-Site) on https://api.example.com, through a proxy
    // that sends Host: 127.0.0.1:PORT and X-Forwarded-Host: api.example.com.
    let post = |server: &Server| {
        server
            .http
            .post(server.url("/api/otp/create"))
            .header("origin", "https://api.example.com")
            .header("x-forwarded-host", "api.example.com")
            .header("content-type", "application/json")
            .body("\"proxied\"")
            .send()
    };
    let trusting = Server::builder()
        .default_plugins()
        .env("OTP_LIMITS_TRUSTED_PROXIES", "127.0.0.1")
        .start();
    let a = post(&trusting).await.unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    // From a peer that is not a trusted proxy the header is anyone's to send.
    let plain = Server::with_defaults();
    let a = post(&plain).await.unwrap();
    assert_eq!(a.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_handler_panic_answers_500_and_the_server_goes_on() {
    let server = Server::with_defaults();
    for _ in 0..3 {
        let a = server
            .request("POST", "/test/panic", Body::None, None)
            .await;
        assert_error(&a, StatusCode::INTERNAL_SERVER_ERROR, "SERVER");
    }
    assert!(server
        .wait_for_log("a request handler panicked", Duration::from_secs(5))
        .is_some());
    let (cookie, code) = start(&server, "\"after-panic\"", "\"after-panic\"").await;
    let v = server.verify(&code, Some(&cookie)).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
}

/// Posts `size` bytes of JSON-ish body to create over a raw connection, chunked (8 KiB
/// chunks) or with a Content-Length, writing all of it before reading the answer, as
/// an ordinary client does; returns the status line.
async fn post_oversized(address: &str, size: usize, chunked: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let framing = if chunked {
        "transfer-encoding: chunked".to_string()
    } else {
        format!("content-length: {size}")
    };
    let head = format!(
        "POST /api/otp/create HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b' '; 8 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        if chunked {
            stream
                .write_all(format!("{n:x}\r\n").as_bytes())
                .await
                .expect("chunk size");
        }
        stream
            .write_all(&chunk[..n])
            .await
            .expect("the server stopped reading the body");
        if chunked {
            stream.write_all(b"\r\n").await.expect("chunk end");
        }
        left -= n;
    }
    if chunked {
        stream.write_all(b"0\r\n\r\n").await.expect("last chunk");
    }
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .expect("the answer is readable");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("BODY:TOO_LARGE"), "{text}");
    text.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn an_oversized_body_that_stalls_still_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::builder()
        .default_plugins()
        .env("OTP_BODY_READ_TIMEOUT_MS", "1500")
        .start();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = "POST /api/otp/verify HTTP/1.1\r\nhost: test\r\n\
                content-type: application/x-www-form-urlencoded\r\n\
                content-length: 200000\r\nconnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    // More than the limit, then nothing: the body times out while being drained.
    stream.write_all(&vec![b'a'; 150_000]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("BODY:TOO_LARGE"), "{text}");
}

#[tokio::test]
async fn oversized_bodies_chunked_or_not_get_a_readable_413() {
    let server = Server::with_defaults();
    let address = server.base.trim_start_matches("http://").to_string();
    for n in 0..100 {
        let size = 100 * 1024 + 1 + n * 9 * 1024; // 100 KiB + 1 byte … ~1 MiB
        let chunked = n % 2 == 0;
        let status = post_oversized(&address, size, chunked).await;
        assert!(
            status.starts_with("HTTP/1.1 413"),
            "{size} bytes (chunked: {chunked}): {status}"
        );
    }
    // The server still serves.
    let (cookie, code) = start(&server, "\"after-big\"", "\"after-big\"").await;
    assert_eq!(
        server.verify(&code, Some(&cookie)).await.status,
        StatusCode::OK
    );
}
