//! The token's pure parts: settings from config, the HS256 JWT, and the HTTP response.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use otp_plugin_sdk::HttpResponse;
use sha2::Sha256;

/// HS256 keys shorter than the hash output weaken the signature (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// The final action's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub secret: Vec<u8>,
    pub issuer: String,
    pub ttl_secs: u64,
    pub cookie: Option<String>,
}

impl Settings {
    /// Validates the `[config]` values; errors name the key, never a value.
    pub fn from_config(
        secret: Option<String>,
        issuer: Option<String>,
        ttl: Option<String>,
        cookie: Option<String>,
    ) -> Result<Settings, String> {
        let secret = secret.ok_or("the manifest's [config] has no \"secret\"")?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "config secret must be at least {MIN_SECRET_BYTES} bytes"
            ));
        }
        let ttl_secs = match ttl {
            None => 3600,
            Some(t) => match t.trim().parse::<u64>() {
                Ok(n) if (1..=31_536_000).contains(&n) => n,
                _ => return Err("config ttl must be a number of seconds, 1 to 31536000".into()),
            },
        };
        let cookie = cookie.filter(|c| !c.is_empty());
        if let Some(name) = &cookie {
            // An RFC 6265 cookie name is an RFC 9110 token.
            let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if !name.bytes().all(token_char) {
                return Err("config cookie is not a valid cookie name".into());
            }
        }
        Ok(Settings {
            secret: secret.into_bytes(),
            issuer: issuer.unwrap_or_else(|| "otp-server".to_string()),
            ttl_secs,
            cookie,
        })
    }
}

/// A compact HS256 JWT for `sub`, issued at `now` (Unix seconds).
pub fn jwt(settings: &Settings, sub: &str, now: u64, jti: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": sub,
        "iat": now,
        "exp": now + settings.ttl_secs,
        "iss": settings.issuer,
        "jti": jti,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let mut mac = Hmac::<Sha256>::new_from_slice(&settings.secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// 200 `{"token", "credential"}`, not cacheable, with the cookie if configured.
pub fn response(settings: &Settings, credential_id: &str, now: u64, jti: &str) -> HttpResponse {
    let token = jwt(settings, credential_id, now, jti);
    let body = serde_json::json!({ "token": token, "credential": credential_id });
    let mut response = HttpResponse::new(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if let Some(name) = &settings.cookie {
        response = response.header(
            "set-cookie",
            format!(
                "{name}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
                settings.ttl_secs
            ),
        );
    }
    response.body(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cookie: Option<&str>) -> Settings {
        Settings::from_config(
            Some("0123456789abcdef0123456789abcdef".into()),
            Some("https://login.example.com".into()),
            Some("60".into()),
            cookie.map(str::to_string),
        )
        .unwrap()
    }

    #[test]
    fn the_token_verifies_and_carries_the_claims() {
        let s = settings(None);
        let t = jwt(&s, "a@example.com", 1_700_000_000, "abc");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims,
            serde_json::json!({"sub": "a@example.com", "iat": 1_700_000_000u64, "exp": 1_700_000_060u64,
                "iss": "https://login.example.com", "jti": "abc"})
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&s.secret).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap())
            .unwrap();
    }

    #[test]
    fn the_response_with_and_without_a_cookie() {
        let r = response(&settings(None), "u", 10, "j");
        assert_eq!(r.status, 200);
        assert!(!r.headers.iter().any(|(n, _)| n == "set-cookie"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["credential"], "u");
        let r = response(&settings(Some("session")), "u", 10, "j");
        let cookie = &r.headers.iter().find(|(n, _)| n == "set-cookie").unwrap().1;
        assert!(cookie.starts_with("session=ey"), "{cookie}");
        assert!(
            cookie.ends_with("; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=60"),
            "{cookie}"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let s = |secret: Option<&str>, ttl: Option<&str>, cookie: Option<&str>| {
            Settings::from_config(
                secret.map(Into::into),
                None,
                ttl.map(Into::into),
                cookie.map(Into::into),
            )
        };
        assert!(s(None, None, None).unwrap_err().contains("secret"));
        assert!(s(Some("short"), None, None)
            .unwrap_err()
            .contains("32 bytes"));
        let long = "0123456789abcdef0123456789abcdef";
        assert!(s(Some(long), Some("x"), None).unwrap_err().contains("ttl"));
        assert!(s(Some(long), Some("0"), None).unwrap_err().contains("ttl"));
        assert!(s(Some(long), None, Some("a b"))
            .unwrap_err()
            .contains("cookie"));
        let ok = s(Some(long), None, Some("")).unwrap();
        assert_eq!(
            (ok.ttl_secs, ok.cookie, ok.issuer.as_str()),
            (3600, None, "otp-server")
        );
    }
}
