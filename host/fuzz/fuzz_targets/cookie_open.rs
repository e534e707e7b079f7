//! Fuzzes everything that parses an attacker-supplied cookie value.
//!
//! Three entry points per input: the raw plaintext decoder (reachable only with a valid
//! key, but it must hold even then), the full `SessionCookie::open` on the input as text,
//! and `open` on a well-formed envelope header naming a key the ring holds, so the fuzzer
//! spends its time past the base64 and key-lookup checks inside the key unwrap and AEAD.

#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use otp_server::crypto::{decode_session, encode_session, KeyRing, SessionCookie};

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::new(0, 180_000))
}

fuzz_target!(|data: &[u8]| {
    // Whatever decodes must re-encode to the same bytes: the format has one encoding.
    if let Ok(session) = decode_session(data) {
        assert_eq!(encode_session(&session).as_deref(), Ok(data));
    }

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SessionCookie::open(text, ring());
    }

    let mut envelope = vec![1u8];
    envelope.extend_from_slice(ring().current().id().as_bytes());
    envelope.extend_from_slice(data);
    assert!(SessionCookie::open(&URL_SAFE_NO_PAD.encode(&envelope), ring()).is_err());
});
