//! `openapi.json` against the running server: every documented operation exists,
//! nothing undocumented answers, and every answer of a broad session — statuses,
//! error codes, state fields — is one the document lists for that operation.

use otp_server_blackbox::{workspace_root, Answer, Body, Server, StatusCode};
use serde_json::Value;

fn document() -> Value {
    let text =
        std::fs::read_to_string(workspace_root().join("openapi.json")).expect("openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

const METHODS: [&str; 7] = ["get", "head", "post", "put", "delete", "patch", "options"];

/// Fails unless `answer` to `method path` is documented.
fn assert_documented(doc: &Value, method: &str, path: &str, answer: &Answer) {
    let route = path.split('?').next().unwrap();
    let Some(operation) = doc["paths"].get(route).and_then(|p| p.get(method)) else {
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path} is undocumented but answered"
        );
        assert!(
            answer.body.is_empty(),
            "undocumented {method} {path}: 404 with an empty body"
        );
        return;
    };
    let status = answer.status.as_u16().to_string();
    let response = operation["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{method} {path} answered {status}, which is not documented: {}",
            answer.text()
        )
    });
    if response.get("x-final-action").is_some() {
        return; // the final plugin's answer
    }
    let Some(codes) = response.get("x-error-codes") else {
        if status == "200" && route.starts_with("/api/otp/") {
            let props = &doc["components"]["schemas"]["SessionState"]["properties"];
            for key in answer.json().as_object().unwrap().keys() {
                assert!(
                    props.get(key).is_some(),
                    "{method} {path}: undocumented field {key}"
                );
            }
        }
        return;
    };
    let body = answer.json();
    let code = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code: {body}"));
    assert!(
        codes.as_array().unwrap().iter().any(|c| c == code),
        "{method} {path} answered {status} {code}, not documented for it"
    );
    let all = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    assert!(all.as_array().unwrap().iter().any(|c| c == code));
    let allowed = [
        "error",
        "message",
        "expires",
        "resendBlock",
        "otpBlock",
        "blocked",
        "retryAfter",
    ];
    for key in body.as_object().unwrap().keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{method} {path}: undocumented field {key}"
        );
    }
}

#[test]
fn the_document_is_openapi_3_1_and_complete() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{path}: {method}");
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for (status, response) in responses {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}"
                );
            }
        }
    }
    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let pointer = r.trim_start_matches('#');
        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
    }
}

#[tokio::test]
async fn the_server_answers_only_what_is_documented() {
    let doc = document();
    let server = Server::with_defaults();
    macro_rules! call {
        ($method:expr, $path:expr, $body:expr, $cookie:expr) => {{
            let a = server.request($method, $path, $body, $cookie).await;
            assert_documented(&doc, &$method.to_lowercase(), $path, &a);
            a
        }};
    }

    // Every documented operation exists (answers something other than an empty 404).
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let a = call!(
                &method.to_uppercase(),
                &format!("{path}?ms=0"),
                Body::None,
                None
            );
            assert_ne!(
                a.status,
                StatusCode::NOT_FOUND,
                "{method} {path} is documented but missing"
            );
        }
        // Undocumented methods on documented paths: 404.
        for method in ["put", "delete", "patch"] {
            if item.get(method).is_none() {
                call!(&method.to_uppercase(), path, Body::None, None);
            }
        }
    }
    call!("GET", "/nope", Body::None, None);

    // A broad session touching most answers.
    call!(
        "POST",
        "/api/otp/create",
        Body::Typed("text/plain", b"x".to_vec()),
        None
    );
    call!("POST", "/api/otp/create", Body::Json("{"), None);
    call!("POST", "/api/otp/create", Body::Json("null"), None);
    let big = format!("\"{}\"", "x".repeat(110_000));
    call!("POST", "/api/otp/create", Body::Json(&big), None);
    let a = call!("POST", "/api/otp/create", Body::Json("\"doc\""), None);
    let cookie = a.cookie().unwrap();
    let code = server.wait_code("\"doc\"", 1);
    call!("POST", "/api/otp/resend", Body::None, Some(&cookie));
    call!("POST", "/api/otp/resend", Body::None, None);
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form("otp=1"),
        Some(&cookie)
    );
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form("otp=zzzzzzzzzz"),
        Some("garbage")
    );
    let mut cookie = cookie;
    for b in ["\"doc2\"", "\"doc3\"", "\"doc4\""] {
        let a = call!("POST", "/api/otp/create", Body::Json(b), Some(&cookie));
        if let Some(c) = a.cookie() {
            cookie = c;
        }
    }
    let a = call!(
        "POST",
        "/api/otp/create",
        Body::Json("\"doc\""),
        Some(&cookie)
    );
    cookie = a.cookie().unwrap();
    let wrong = if code == "0000000000" {
        "1111111111"
    } else {
        "0000000000"
    };
    for _ in 0..2 {
        let a = call!(
            "POST",
            "/api/otp/verify",
            Body::Form(&format!("otp={wrong}")),
            Some(&cookie)
        );
        cookie = a.cookie().unwrap();
    }
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form(&format!("otp={code}")),
        Some(&cookie)
    );
    server.advance_clock(25_000).await;
    let a = call!(
        "POST",
        "/api/otp/verify",
        Body::Form(&format!("otp={wrong}")),
        Some(&cookie)
    );
    let blocked = a.cookie().unwrap();
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form(&format!("otp={code}")),
        Some(&blocked)
    );
    call!("POST", "/api/otp/resend", Body::None, Some(&blocked));
    let a = call!("POST", "/api/otp/create", Body::Json("\"fresh\""), None);
    let fresh = a.cookie().unwrap();
    let code = server.wait_code("\"fresh\"", 1);
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form(&format!("otp={code}")),
        Some(&fresh)
    );
    call!(
        "POST",
        "/api/otp/verify",
        Body::Form(&format!("otp={code}")),
        Some(&fresh)
    );
    server.advance_clock(200_000).await;
    call!("POST", "/api/otp/resend", Body::None, Some(&blocked));
    call!("GET", "/ready", Body::None, None);
}
