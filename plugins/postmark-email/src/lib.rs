//! postmark-email: emails each code through Postmark's `/email` API.
//!
//! `POST {api_base}/email` with `X-Postmark-Server-Token: {server_token}`,
//! `Accept: application/json`, `Content-Type: application/json` and a body of `From`, `To`,
//! `Subject`, `TextBody` and `MessageStream`. Postmark answers 200 with `ErrorCode` 0 and the
//! `MessageID`; refusals come as 422 with a Postmark `ErrorCode`.
//!
//! Manifest `[config]`: `server_token` (from the environment:
//! `"${OTP_PLUGIN_POSTMARK_SERVER_TOKEN}"`), `from` (a confirmed sender signature), optional
//! `message_stream` (default `outbound`, the transactional stream), optional `api_base`
//! (default `https://api.postmarkapp.com`) and the email template settings of
//! [`provider_kit::template`].
//!
//! Answers: `ErrorCode` 300 (invalid email request) naming the `To` address and 406
//! (inactive recipient: bounced, unsubscribed or marked as spam) are *undeliverable*; every
//! other failure — 401 (bad token, `ErrorCode` 10), a 300 about anything else (a malformed
//! `From`), another 422 code (unconfirmed sender, …),
//! 429, 5xx, a timeout — is *unavailable*, logged with the status, `ErrorCode` and message.

use otp_plugin_sdk::http::{Method, Request, Response};
use otp_plugin_sdk::{Message, RequestContext, SendError, Sender};
use provider_kit::config::{Config, ConfigError};
use provider_kit::outcome::{self, Verdict};
use provider_kit::template::{Medium, Rendered};
use provider_kit::Provider;
use serde_json::json;

/// Postmark's "inactive recipient" (bounced, unsubscribed or marked as spam).
const INACTIVE_RECIPIENT: u64 = 406;
/// Postmark's "invalid email request": the recipient's fault only when its message
/// names the `To` address (a malformed `From` answers the same code).
const INVALID_REQUEST: u64 = 300;

/// The exported sender.
pub struct PostmarkEmail;

impl Provider for PostmarkEmail {
    const NAME: &'static str = "postmark-email";
    const MEDIUM: Medium = Medium::Email;

    fn default_api_base(_: &Config) -> Result<String, ConfigError> {
        Ok("https://api.postmarkapp.com".into())
    }

    fn request(
        config: &Config,
        api_base: &str,
        to: &str,
        message: &Rendered,
    ) -> Result<Request, ConfigError> {
        let token = config.require("server_token")?;
        let body = json!({
            "From": config.require("from")?,
            "To": to,
            "Subject": message.subject,
            "TextBody": message.body,
            "MessageStream": config.get("message_stream").unwrap_or("outbound"),
        });
        Ok(Request::new(Method::Post, format!("{api_base}/email"))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("x-postmark-server-token", token)
            .body(body.to_string()))
    }

    fn classify(response: &Response) -> Verdict {
        let body = outcome::json(&response.body);
        let code = body["ErrorCode"].as_u64();
        if outcome::is_success(response.status) && code.unwrap_or(0) == 0 {
            return Verdict::Delivered(body["MessageID"].as_str().map(str::to_string));
        }
        let message = outcome::text_field(&body, "Message");
        let names_to = message.contains("'To'");
        let detail = format!(
            "Postmark ErrorCode {} {message}",
            code.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
        );
        match code {
            Some(INACTIVE_RECIPIENT) => Verdict::Undeliverable(detail),
            Some(INVALID_REQUEST) if names_to => Verdict::Undeliverable(detail),
            _ => Verdict::refused(response.status, &detail),
        }
    }
}

impl Sender for PostmarkEmail {
    fn send(msg: &Message, ctx: &RequestContext) -> Result<(), SendError> {
        provider_kit::send::<PostmarkEmail>(msg, ctx)
    }
}

otp_plugin_sdk::export_sender!(PostmarkEmail);

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_documented_request() {
        let c = Config::from_pairs([
            ("server_token".to_string(), "pm-token".to_string()),
            ("from".to_string(), "codes@example.com".to_string()),
        ]);
        let message = Rendered {
            locale: "en".into(),
            subject: Some("Your code".into()),
            body: "Code: A1".into(),
            body_without_code: String::new(),
        };
        let r = PostmarkEmail::request(
            &c,
            "https://api.postmarkapp.com",
            "bob@example.com",
            &message,
        )
        .unwrap();
        assert_eq!(r.url(), "https://api.postmarkapp.com/email");
        assert!(r
            .headers()
            .contains(&("x-postmark-server-token".into(), "pm-token".into())));
        assert!(r
            .headers()
            .contains(&("accept".into(), "application/json".into())));
    }

    #[test]
    fn answers() {
        assert_eq!(
            PostmarkEmail::classify(&answer(
                200,
                r#"{"To":"b@c.de","MessageID":"0a1","ErrorCode":0,"Message":"OK"}"#
            )),
            Verdict::Delivered(Some("0a1".into()))
        );
        for body in [
            r#"{"ErrorCode":300,"Message":"Invalid 'To' address: 'a@b'."}"#,
            r#"{"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive."}"#,
        ] {
            assert!(
                matches!(
                    PostmarkEmail::classify(&answer(422, body)),
                    Verdict::Undeliverable(_)
                ),
                "{body}"
            );
        }
        // The same code for the operator's `From`: not the user's doing.
        let from = r#"{"ErrorCode":300,"Message":"Invalid 'From' address: 'Example, Inc. <codes@example.com>'."}"#;
        assert!(matches!(
            PostmarkEmail::classify(&answer(422, from)),
            Verdict::Unavailable(m) if m.contains("ErrorCode 300")
        ));
        for (status, body, needle) in [
            (
                401,
                r#"{"ErrorCode":10,"Message":"No Account or Server API tokens were supplied in the HTTP headers."}"#,
                "credentials",
            ),
            (
                422,
                r#"{"ErrorCode":400,"Message":"The 'From' address you supplied is not a Sender Signature."}"#,
                "ErrorCode 400",
            ),
            (429, "", "rate limited"),
            (500, r#"{"ErrorCode":0,"Message":"oops"}"#, "provider error"),
            (
                200,
                r#"{"ErrorCode":405,"Message":"Not allowed to send"}"#,
                "405",
            ),
        ] {
            let v = PostmarkEmail::classify(&answer(status, body));
            assert!(
                matches!(&v, Verdict::Unavailable(m) if m.contains(needle)),
                "{status}: {v:?}"
            );
        }
    }
}
