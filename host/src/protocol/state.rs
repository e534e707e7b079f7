//! What the client is told about its current token.
//!
//! [`SessionState`] keeps millisecond values (already rounded the way clients must see
//! them, so the shell can reuse them, e.g. for headers) and serialises to the wire JSON
//! `{"expires": ISO, "resendBlock"?: ISO, "otpBlock"?: ISO, "blocked"?: true}`.

use serde::{Serialize, Serializer};

use super::session::Token;
use super::settings::Settings;
use super::time::{ceil_to_second, floor_to_second, iso8601_ms};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionState {
    /// The current token's expiry, rounded down to the second.
    #[serde(rename = "expires", serialize_with = "as_iso")]
    pub expires_at_ms: u64,
    /// Set when a resend is not allowed now: the cooldown end, or the token's expiry when
    /// resends are used up or the token is hard-blocked. Rounded up to the second.
    #[serde(
        rename = "resendBlock",
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_optional_iso"
    )]
    pub resend_blocked_until_ms: Option<u64>,
    /// Set while a temporary verification block runs. Rounded up to the second.
    #[serde(
        rename = "otpBlock",
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_optional_iso"
    )]
    pub otp_blocked_until_ms: Option<u64>,
    /// Hard block: only serialised when true.
    #[serde(skip_serializing_if = "is_false")]
    pub blocked: bool,
}

impl SessionState {
    pub fn of(token: &Token, now_ms: u64, settings: &Settings) -> Self {
        let resend_blocked_until_ms = if token.blocked || token.resends_used >= settings.max_resends
        {
            Some(ceil_to_second(token.expires_at_ms))
        } else if now_ms < token.resend_allowed_at_ms {
            // A cooldown reaching past expiry is shown as the expiry: after that the
            // answer is "expired", not "try again".
            Some(ceil_to_second(
                token.resend_allowed_at_ms.min(token.expires_at_ms),
            ))
        } else {
            None
        };
        // A hard block supersedes the temporary one; showing its end would invite a
        // pointless retry. A block reaching past expiry is shown as the expiry, as the
        // resend cooldown is.
        let otp_blocked_until_ms = (!token.blocked && token.is_temporarily_blocked(now_ms))
            .then(|| ceil_to_second(token.blocked_until_ms.min(token.expires_at_ms)));
        Self {
            expires_at_ms: floor_to_second(token.expires_at_ms),
            resend_blocked_until_ms,
            otp_blocked_until_ms,
            blocked: token.blocked,
        }
    }
}

fn as_iso<S: Serializer>(ms: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&iso8601_ms(*ms))
}

fn as_optional_iso<S: Serializer>(ms: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serializer.serialize_str(&iso8601_ms(*ms)),
        None => serializer.serialize_none(),
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-11-26T22:07:33.000Z
    const T0: u64 = 1_795_730_853_000;

    fn token() -> Token {
        Token {
            credential_id: "c".into(),
            channel: "sms".into(),
            code: "0123456789".into(),
            created_at_ms: T0,
            expires_at_ms: T0 + 180_000 + 250,
            attempts_left: 3,
            resends_used: 0,
            resend_allowed_at_ms: T0 + 30_000 + 1,
            blocked_until_ms: 0,
            blocked: false,
        }
    }

    fn json_of(token: &Token, now_ms: u64) -> serde_json::Value {
        serde_json::to_value(SessionState::of(token, now_ms, &Settings::default()))
            .unwrap_or_default()
    }

    #[test]
    fn fresh_token_is_in_resend_cooldown() {
        assert_eq!(
            json_of(&token(), T0),
            json!({
                "expires": "2026-11-26T22:10:33.000Z",
                "resendBlock": "2026-11-26T22:08:04.000Z",
            })
        );
    }

    #[test]
    fn after_cooldown_nothing_is_blocked() {
        assert_eq!(
            json_of(&token(), T0 + 30_001),
            json!({ "expires": "2026-11-26T22:10:33.000Z" })
        );
    }

    #[test]
    fn used_up_resends_block_until_expiry_rounded_up() {
        let token = Token {
            resends_used: 1,
            ..token()
        };
        assert_eq!(
            json_of(&token, T0 + 60_000),
            json!({
                "expires": "2026-11-26T22:10:33.000Z",
                "resendBlock": "2026-11-26T22:10:34.000Z",
            })
        );
    }

    #[test]
    fn temporary_block_is_shown_while_it_runs() {
        let token = Token {
            blocked_until_ms: T0 + 50_500,
            ..token()
        };
        assert_eq!(
            json_of(&token, T0 + 40_000),
            json!({
                "expires": "2026-11-26T22:10:33.000Z",
                "otpBlock": "2026-11-26T22:08:24.000Z",
            })
        );
        assert_eq!(
            json_of(&token, T0 + 50_500),
            json!({ "expires": "2026-11-26T22:10:33.000Z" })
        );
    }

    #[test]
    fn temporary_block_past_expiry_shows_expiry() {
        let token = Token {
            blocked_until_ms: T0 + 500_000,
            ..token()
        };
        let state = SessionState::of(&token, T0 + 170_000, &Settings::default());
        assert_eq!(state.otp_blocked_until_ms, Some(T0 + 181_000));
        assert_eq!(state.resend_blocked_until_ms, None);
    }

    #[test]
    fn hard_block_shows_blocked_and_resend_block() {
        let token = Token {
            blocked: true,
            blocked_until_ms: T0 + 50_000,
            ..token()
        };
        assert_eq!(
            json_of(&token, T0 + 40_000),
            json!({
                "expires": "2026-11-26T22:10:33.000Z",
                "resendBlock": "2026-11-26T22:10:34.000Z",
                "blocked": true,
            })
        );
    }

    #[test]
    fn cooldown_past_expiry_shows_expiry() {
        let token = Token {
            resend_allowed_at_ms: T0 + 500_000,
            ..token()
        };
        let state = SessionState::of(&token, T0, &Settings::default());
        assert_eq!(state.resend_blocked_until_ms, Some(T0 + 181_000));
    }
}
