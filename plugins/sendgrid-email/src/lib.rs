//! sendgrid-email: emails each code through SendGrid's v3 Mail Send API.
//!
//! `POST {api_base}/v3/mail/send` with `Authorization: Bearer {api_key}` and a JSON body:
//! one personalization with the recipient, `from`, `subject` and one `text/plain` content.
//! SendGrid answers 202 Accepted with an empty body and the message id in `X-Message-Id`.
//!
//! Manifest `[config]`: `api_key` (from the environment: `"${OTP_PLUGIN_SENDGRID_API_KEY}"`),
//! `from` (a verified sender address), optional `from_name`, optional `api_base` (default
//! `https://api.sendgrid.com`; `https://api.eu.sendgrid.com` for EU-pinned accounts) and the
//! email template settings of [`provider_kit::template`].
//!
//! Answers: 400 whose errors name the recipient (a `field` under `personalizations.N.to`) is
//! *undeliverable*; every other non-2xx — 400 about anything else (the sender, the
//! content), 401/403 (bad or under-privileged key), 413, 429, 5xx — and a timeout are
//! *unavailable*, logged with SendGrid's status and error messages.

use otp_plugin_sdk::http::{Method, Request, Response};
use otp_plugin_sdk::{Message, RequestContext, SendError, Sender};
use provider_kit::config::{Config, ConfigError};
use provider_kit::outcome::{self, Verdict};
use provider_kit::template::{Medium, Rendered};
use provider_kit::Provider;
use serde_json::json;

/// The exported sender.
pub struct SendgridEmail;

/// Whether a SendGrid error `field` is about the recipient
/// (`personalizations.0.to`, `personalizations.0.to.0.email`).
fn names_the_recipient(field: &str) -> bool {
    let mut parts = field.split('.');
    parts.next() == Some("personalizations")
        && parts
            .next()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        && parts.next() == Some("to")
}

impl Provider for SendgridEmail {
    const NAME: &'static str = "sendgrid-email";
    const MEDIUM: Medium = Medium::Email;

    fn default_api_base(_: &Config) -> Result<String, ConfigError> {
        Ok("https://api.sendgrid.com".into())
    }

    fn request(
        config: &Config,
        api_base: &str,
        to: &str,
        message: &Rendered,
    ) -> Result<Request, ConfigError> {
        let key = config.require("api_key")?;
        let mut from = json!({ "email": config.require("from")? });
        if let Some(name) = config.get("from_name") {
            from["name"] = json!(name);
        }
        let body = json!({
            "personalizations": [{ "to": [{ "email": to }] }],
            "from": from,
            "subject": message.subject,
            "content": [{ "type": "text/plain", "value": message.body }],
        });
        Ok(
            Request::new(Method::Post, format!("{api_base}/v3/mail/send"))
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    fn classify(response: &Response) -> Verdict {
        if outcome::is_success(response.status) {
            return Verdict::Delivered(response.header("x-message-id").map(str::to_string));
        }
        let body = outcome::json(&response.body);
        let errors = body["errors"].as_array().cloned().unwrap_or_default();
        let detail = errors
            .iter()
            .map(|e| {
                let field = e["field"].as_str().unwrap_or("-");
                format!("{field}: {}", outcome::text_field(e, "message"))
            })
            .collect::<Vec<_>>()
            .join("; ");
        let about_recipient = errors
            .iter()
            .any(|e| e["field"].as_str().is_some_and(names_the_recipient));
        if response.status == 400 && about_recipient {
            Verdict::Undeliverable(format!("SendGrid refused the recipient: {detail}"))
        } else {
            Verdict::refused(response.status, &format!("SendGrid: {detail}"))
        }
    }
}

impl Sender for SendgridEmail {
    fn send(msg: &Message, ctx: &RequestContext) -> Result<(), SendError> {
        provider_kit::send::<SendgridEmail>(msg, ctx)
    }
}

otp_plugin_sdk::export_sender!(SendgridEmail);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("x-message-id".into(), "m-1".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_documented_request() {
        let c = Config::from_pairs([
            ("api_key".to_string(), "SG.key".to_string()),
            ("from".to_string(), "codes@example.com".to_string()),
            ("from_name".to_string(), "Acme".to_string()),
        ]);
        let message = Rendered {
            locale: "en".into(),
            subject: Some("Your code".into()),
            body: "Code: A1".into(),
            body_without_code: String::new(),
        };
        let r = SendgridEmail::request(&c, "https://api.sendgrid.com", "bob@example.com", &message)
            .unwrap();
        assert_eq!(r.url(), "https://api.sendgrid.com/v3/mail/send");
        assert!(r
            .headers()
            .contains(&("authorization".into(), "Bearer SG.key".into())));
        assert!(r
            .headers()
            .contains(&("content-type".into(), "application/json".into())));
        let missing = Config::from_pairs([("api_key".to_string(), "k".to_string())]);
        assert!(SendgridEmail::request(&missing, "x", "b@c.de", &message)
            .unwrap_err()
            .to_string()
            .contains("from"));
    }

    #[test]
    fn answers() {
        assert_eq!(
            SendgridEmail::classify(&answer(202, "")),
            Verdict::Delivered(Some("m-1".into()))
        );
        let recipient = r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":null}]}"#;
        assert!(
            matches!(SendgridEmail::classify(&answer(400, recipient)), Verdict::Undeliverable(m) if m.contains("valid address"))
        );
        for (status, body, needle) in [
            (
                400,
                r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}"#,
                "from: The from address",
            ),
            (
                401,
                r#"{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}"#,
                "credentials",
            ),
            (
                403,
                r#"{"errors":[{"field":null,"message":"access forbidden"}]}"#,
                "credentials",
            ),
            (429, "", "rate limited"),
            (500, "{}", "provider error"),
        ] {
            let v = SendgridEmail::classify(&answer(status, body));
            assert!(
                matches!(&v, Verdict::Unavailable(m) if m.contains(needle)),
                "{status}: {v:?}"
            );
        }
        assert!(names_the_recipient("personalizations.12.to"));
        assert!(!names_the_recipient("personalizations.0.cc.0.email"));
        assert!(!names_the_recipient("personalizations.x.to"));
    }
}
