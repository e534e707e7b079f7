//! The webhook's pure parts: the JSON payload, the Standard Webhooks signature and the
//! mapping of the receiver's status to the sending hook's outcome.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use otp_plugin_sdk::{Message, SendError};
use sha2::Sha256;

/// `{"credential", "channel", "code", "expires_at", "kind"}`; `expires_at` is in
/// milliseconds since the Unix epoch, `kind` is `first` or `resend`.
pub fn payload(msg: &Message) -> String {
    serde_json::json!({
        "credential": msg.credential_id,
        "channel": msg.channel,
        "code": msg.code,
        "expires_at": msg.expires_at,
        "kind": msg.kind.as_str(),
    })
    .to_string()
}

/// The signing key of a `whsec_<base64>` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "secret is not whsec_ followed by base64".to_string())?;
    if key.len() < 16 {
        return Err("secret is shorter than 16 bytes".to_string());
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// 2xx delivers, 4xx is undeliverable, anything else is unavailable.
pub fn outcome(status: u16) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        400..=499 => Err(SendError::Undeliverable(format!(
            "webhook receiver refused the credential ({status})"
        ))),
        _ => Err(SendError::Unavailable(format!(
            "webhook receiver answered {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_plugin_sdk::SendKind;

    #[test]
    fn the_standard_webhooks_test_vector() {
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets() {
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("shorter"));
        assert_eq!(
            decode_secret("MDEyMzQ1Njc4OWFiY2RlZg==").unwrap(),
            b"0123456789abcdef"
        );
    }

    #[test]
    fn the_payload() {
        let msg = Message {
            credential_id: "a@example.com".into(),
            channel: "email".into(),
            code: "123456".into(),
            expires_at: 1_700_000_000_000,
            kind: SendKind::Resend,
        };
        let v: serde_json::Value = serde_json::from_str(&payload(&msg)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"credential": "a@example.com", "channel": "email", "code": "123456",
                "expires_at": 1_700_000_000_000u64, "kind": "resend"})
        );
    }

    #[test]
    fn statuses() {
        assert!(outcome(200).is_ok() && outcome(204).is_ok());
        assert!(matches!(outcome(404), Err(SendError::Undeliverable(_))));
        assert!(matches!(outcome(500), Err(SendError::Unavailable(_))));
        assert!(matches!(outcome(302), Err(SendError::Unavailable(_))));
    }
}
