//! session-token-final: after a successful verification, answers 200
//! `{"token": "<JWT>", "credential": "<id>"}` — passwordless login out of the box.
//!
//! The token is a compact HS256 JWT with `sub` (the credential id), `iat`, `exp` (`iat` +
//! `ttl`), `iss` and a random `jti`. Manifest `[config]`: `secret` (required, at least 32
//! bytes; reference it from the environment, e.g. `secret = "${OTP_PLUGIN_SESSION_SECRET}"`),
//! `issuer` (default `otp-server`), `ttl` in seconds (default 3600) and `cookie` (optional:
//! also set the token as a cookie of that name, `HttpOnly; Secure; SameSite=Strict; Path=/;
//! Max-Age=<ttl>`). It needs no network.

use otp_plugin_sdk::{config, random, FinalAction, HttpResponse, RequestContext};

pub mod token;

/// The exported final action.
pub struct SessionTokenFinal;

impl FinalAction for SessionTokenFinal {
    fn complete(
        credential_id: &str,
        _channel: &str,
        _ctx: &RequestContext,
    ) -> Result<HttpResponse, String> {
        let settings = token::Settings::from_config(
            config::get("secret"),
            config::get("issuer"),
            config::get("ttl"),
            config::get("cookie"),
        )?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "the clock is before 1970".to_string())?
            .as_secs();
        let jti = random::hex(16);
        Ok(token::response(&settings, credential_id, now, &jti))
    }
}

otp_plugin_sdk::export_final_action!(SessionTokenFinal);
