//! Signed webhook POSTs per the [Standard Webhooks](https://www.standardwebhooks.com/)
//! specification, shared by `webhook-sender` (codes) and `webhook-events` (audit events).
//!
//! A webhook is a JSON body POSTed with three headers: `webhook-id` (`msg_<random>`),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`), the key being the base64
//! part of a `whsec_…` secret. Read the secret from the plugin's config, which the
//! manifest fills from the server's environment.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use otp_plugin_sdk::http::{HttpError, Method, Request};
use otp_plugin_sdk::random;
use std::time::Duration;

/// The signing key of a `whsec_<base64>` secret (the prefix is optional).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = STANDARD
        .decode(encoded.trim())
        .map_err(|_| "secret is not whsec_ followed by base64".to_string())?;
    // 128 bits; the Standard Webhooks spec recommends 24 to 64 bytes, but secrets of 16
    // have always been accepted here and refusing them now would stop deployments' sends.
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

use sha2::Sha256;

/// One signed POST: the message id it went out with, and the receiver's status.
pub struct Delivery {
    pub id: String,
    pub status: u16,
}

/// POSTs `body` (JSON) to `url`, signed with `key`. `timeout` shortens the manifest's
/// outbound timeouts. An error is a failure to get any answer (denied, timed out, …),
/// returned with the message id for the log.
pub fn post(
    url: &str,
    key: &[u8],
    user_agent: &str,
    body: String,
    timeout: Option<Duration>,
) -> Result<Delivery, (String, HttpError)> {
    let id = format!("msg_{}", random::hex(16));
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let signature = signature(key, &id, timestamp, &body);
    let mut request = Request::new(Method::Post, url)
        .header("content-type", "application/json")
        .header("user-agent", user_agent)
        .header("webhook-id", id.clone())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .max_response_bytes(64 * 1024);
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    match request.send() {
        Ok(response) => Ok(Delivery {
            id,
            status: response.status,
        }),
        Err(error) => Err((id, error)),
    }
}

/// The plugin's `timeout_ms` config value, if set.
pub fn timeout_from_config() -> Result<Option<Duration>, String> {
    otp_plugin_sdk::config::get("timeout_ms")
        .map(|v| match v.parse::<u64>() {
            Ok(0) => Err("timeout_ms must be at least 1".to_string()),
            Ok(ms) => Ok(Duration::from_millis(ms)),
            Err(_) => Err("timeout_ms is not a number".to_string()),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
