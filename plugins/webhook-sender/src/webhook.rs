//! The webhook's pure parts: the JSON payload and the mapping of the receiver's status
//! to the sending hook's outcome (signing lives in the `standard-webhooks` crate).

use otp_plugin_sdk::{Message, SendError};

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

/// 2xx delivers; 400, 410 and 422 mean the receiver refuses this destination
/// (undeliverable); anything else is unavailable — 401, 403 and 404 are what a rotated
/// secret, a clock out of the signature's tolerance or a wrong URL answer, 408 and 429 a
/// busy receiver: none of them is the user's doing, so none may block a credential or
/// stop a failover to the next sender.
pub fn outcome(status: u16) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        400 | 410 | 422 => Err(SendError::Undeliverable(format!(
            "webhook receiver refused the credential ({status})"
        ))),
        401 | 403 | 404 => Err(SendError::Unavailable(format!(
            "webhook receiver answered {status}: check the manifest's url and secret, and the \
             receiver's clock"
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
        for status in [400, 410, 422] {
            assert!(matches!(outcome(status), Err(SendError::Undeliverable(_))));
        }
        for status in [401, 403, 404, 408, 413, 429] {
            assert!(
                matches!(outcome(status), Err(SendError::Unavailable(_))),
                "{status}"
            );
        }
        assert!(matches!(outcome(500), Err(SendError::Unavailable(_))));
        assert!(matches!(outcome(302), Err(SendError::Unavailable(_))));
    }
}
