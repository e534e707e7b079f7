//! twilio-sms: texts each code through Twilio's Programmable Messaging API.
//!
//! `POST {api_base}/2010-04-01/Accounts/{account_sid}/Messages.json`, HTTP Basic auth with the
//! account SID and auth token, a form body of `To`, `Body` and `From` and/or
//! `MessagingServiceSid`. Twilio answers 201 with the message resource.
//!
//! Manifest `[config]`: `account_sid`, `auth_token` (from the environment:
//! `"${OTP_PLUGIN_TWILIO_AUTH_TOKEN}"`), `from` (an E.164 number or alphanumeric sender id)
//! or `messaging_service_sid`, optional `api_base` (default `https://api.twilio.com`), and
//! the template settings of [`provider_kit::template`] (`template.<locale>`, `app_name`,
//! `default_locale`) plus `max_segments` / `allow_ucs2` (see [`provider_kit`]).
//!
//! Answers: 400 with Twilio error 21211 (invalid `To` number) or 21614 (`To` is not a mobile
//! number) is *undeliverable*; everything else that is not a 2xx — 401 (error 20003, bad
//! credentials), 429, 5xx, another 4xx, a timeout — is *unavailable*, logged with Twilio's
//! status, error code and message.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use otp_plugin_sdk::http::{Method, Request, Response};
use otp_plugin_sdk::{Message, RequestContext, SendError, Sender};
use provider_kit::config::{Config, ConfigError};
use provider_kit::outcome::{self, Verdict};
use provider_kit::template::{Medium, Rendered};
use provider_kit::Provider;

/// Twilio error codes that mean "this number cannot get an SMS".
const UNDELIVERABLE: [u64; 2] = [21211, 21614];

/// The exported sender.
pub struct TwilioSms;

impl Provider for TwilioSms {
    const NAME: &'static str = "twilio-sms";
    const MEDIUM: Medium = Medium::Sms;

    fn default_api_base(_: &Config) -> Result<String, ConfigError> {
        Ok("https://api.twilio.com".into())
    }

    fn request(
        config: &Config,
        api_base: &str,
        to: &str,
        message: &Rendered,
    ) -> Result<Request, ConfigError> {
        let sid = config.require("account_sid")?;
        if !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ConfigError::invalid(
                "account_sid",
                "must be letters and digits (AC…)",
            ));
        }
        let token = config.require("auth_token")?;
        let mut form = vec![("To", to), ("Body", message.body.as_str())];
        let from = config.get("from");
        let service = config.get("messaging_service_sid");
        if from.is_none() && service.is_none() {
            return Err(ConfigError::invalid(
                "from",
                "is not set (set from, messaging_service_sid, or both)",
            ));
        }
        form.extend(from.map(|f| ("From", f)));
        form.extend(service.map(|s| ("MessagingServiceSid", s)));
        Ok(Request::new(
            Method::Post,
            format!("{api_base}/2010-04-01/Accounts/{sid}/Messages.json"),
        )
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{sid}:{token}"))),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(form_encode(&form)))
    }

    fn classify(response: &Response) -> Verdict {
        let body = outcome::json(&response.body);
        if outcome::is_success(response.status) {
            return Verdict::Delivered(body["sid"].as_str().map(str::to_string));
        }
        let code = body["code"].as_u64();
        let detail = format!(
            "Twilio error {} {}",
            code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
            outcome::text_field(&body, "message")
        );
        match code {
            Some(code) if response.status == 400 && UNDELIVERABLE.contains(&code) => {
                Verdict::Undeliverable(detail)
            }
            _ => Verdict::refused(response.status, &detail),
        }
    }
}

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`, the
/// rest percent-encoded.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::with_capacity(text.len());
        for b in text.bytes() {
            match b {
                b' ' => out.push('+'),
                b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') => {
                    out.push(b as char)
                }
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Sender for TwilioSms {
    fn send(msg: &Message, ctx: &RequestContext) -> Result<(), SendError> {
        provider_kit::send::<TwilioSms>(msg, ctx)
    }
}

otp_plugin_sdk::export_sender!(TwilioSms);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn rendered(body: &str) -> Rendered {
        Rendered {
            locale: "en".into(),
            subject: None,
            body: body.into(),
            body_without_code: body.into(),
        }
    }

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_documented_request() {
        let c = config(&[
            ("account_sid", "AC0123"),
            ("auth_token", "tok"),
            ("from", "+15005550006"),
        ]);
        let r = TwilioSms::request(
            &c,
            "https://api.twilio.com",
            "+4915112345678",
            &rendered("Code: A1 & more"),
        )
        .unwrap();
        assert_eq!(r.method(), Method::Post);
        assert_eq!(
            r.url(),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json"
        );
        let headers = r.headers();
        assert!(headers.contains(&(
            "authorization".into(),
            format!("Basic {}", STANDARD.encode("AC0123:tok"))
        )));
        assert!(headers.contains(&(
            "content-type".into(),
            "application/x-www-form-urlencoded".into()
        )));

        let with_service = config(&[
            ("account_sid", "AC0123"),
            ("auth_token", "tok"),
            ("messaging_service_sid", "MG9"),
        ]);
        assert!(TwilioSms::request(&with_service, "x", "+1", &rendered("b")).is_ok());
        let neither = config(&[("account_sid", "AC0123"), ("auth_token", "tok")]);
        assert!(TwilioSms::request(&neither, "x", "+1", &rendered("b"))
            .unwrap_err()
            .to_string()
            .contains("from"));
        let odd = config(&[
            ("account_sid", "AC/../x"),
            ("auth_token", "tok"),
            ("from", "+1"),
        ]);
        assert!(TwilioSms::request(&odd, "x", "+1", &rendered("b")).is_err());
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("To", "+4915112345678"), ("Body", "Código: A1 & 5 min.")]),
            "To=%2B4915112345678&Body=C%C3%B3digo%3A+A1+%26+5+min."
        );
    }

    #[test]
    fn answers() {
        assert_eq!(
            TwilioSms::classify(&answer(201, r#"{"sid":"SM1","status":"queued"}"#)),
            Verdict::Delivered(Some("SM1".into()))
        );
        for code in [21211, 21614] {
            let body = format!(
                r#"{{"code":{code},"message":"The 'To' number is not valid.","status":400}}"#
            );
            assert!(
                matches!(TwilioSms::classify(&answer(400, &body)), Verdict::Undeliverable(m) if m.contains(&code.to_string()))
            );
        }
        for (status, body, needle) in [
            (
                401,
                r#"{"code":20003,"message":"Authenticate","status":401}"#,
                "credentials",
            ),
            (
                400,
                r#"{"code":21606,"message":"The From phone number is not valid","status":400}"#,
                "21606",
            ),
            (
                429,
                r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
                "rate limited",
            ),
            (500, "<html>oops</html>", "provider error"),
            (503, "", "503"),
        ] {
            let v = TwilioSms::classify(&answer(status, body));
            assert!(
                matches!(&v, Verdict::Unavailable(m) if m.contains(needle)),
                "{status}: {v:?}"
            );
        }
    }
}
