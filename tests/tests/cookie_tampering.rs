//! Any byte flip, truncation or extension of a valid cookie is 400
//! `OTP:INVALID_COOKIE` — never a panic, never a 500 — over real HTTP.

use base64::Engine;
use otp_server_blackbox::{Server, StatusCode};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

#[tokio::test]
async fn mutated_cookies_are_refused() {
    let server = Server::with_defaults();
    let a = server.create("\"tamper\"", None).await;
    let cookie = a.cookie().unwrap();
    let code = server.wait_code("\"tamper\"", 1);
    let raw = B64.decode(&cookie).expect("the cookie is base64url");

    let mut variants: Vec<String> = Vec::new();
    // Flip one bit in every byte of the decoded cookie (each is a distinct state).
    for i in 0..raw.len() {
        let mut bytes = raw.clone();
        bytes[i] ^= 1 << (i % 8);
        variants.push(B64.encode(&bytes));
    }
    // Truncations and extensions of the decoded bytes and of the text.
    for cut in [1, 2, 12, 16, raw.len() / 2, raw.len() - 1] {
        variants.push(B64.encode(&raw[..raw.len() - cut]));
    }
    for extra in [&[0u8][..], &[0xff; 16][..]] {
        let mut bytes = raw.clone();
        bytes.extend_from_slice(extra);
        variants.push(B64.encode(&bytes));
    }
    variants.push(cookie[..cookie.len() - 1].to_string());
    variants.push(format!("{cookie}A"));
    variants.push(format!("{cookie}=="));
    variants.push(String::new());
    variants.push("%%%".to_string());
    variants.push("A".repeat(5000));

    for variant in &variants {
        let a = server.verify(&code, Some(variant)).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "variant {variant:?}: {}",
            a.text()
        );
        assert_eq!(a.error(), "OTP:INVALID_COOKIE");
    }
    // The real cookie still works: no mutation consumed it.
    let ok = server.verify(&code, Some(&cookie)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert!(!server.log_text().contains("panicked"));
}
