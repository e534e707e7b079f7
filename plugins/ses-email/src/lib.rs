//! ses-email: emails each code through Amazon SES (API v2 `SendEmail`), signing each request
//! with AWS Signature Version 4 in the plugin.
//!
//! `POST {api_base}/v2/email/outbound-emails` with a JSON body (`FromEmailAddress`,
//! `Destination.ToAddresses`, `Content.Simple` with a UTF-8 subject and text body, optional
//! `ConfigurationSetName`), signed for service `ses` in the configured region: headers
//! `content-type`, `host`, `x-amz-date` (and `x-amz-security-token` with temporary
//! credentials) are signed; `authorization` carries the signature. SES answers 200 with a
//! `MessageId`; refusals name their type in the `x-amzn-ErrorType` header.
//!
//! Manifest `[config]`: `region` (e.g. `eu-west-1`), `access_key_id` and `secret_access_key`
//! (from the environment: `"${OTP_PLUGIN_AWS_ACCESS_KEY_ID}"`,
//! `"${OTP_PLUGIN_AWS_SECRET_ACCESS_KEY}"`), optional `session_token`, `from` (a verified
//! identity), optional `configuration_set`, optional `api_base` (default
//! `https://email.{region}.amazonaws.com`) and the email template settings of
//! [`provider_kit::template`].
//!
//! Answers: a `BadRequestException` for an illegal address is *undeliverable*; everything
//! else — `MessageRejected` (an unverified `from` identity, or a sandboxed account; the
//! operator's business, so a failover chain moves on), 403 (bad key or
//! signature: `UnrecognizedClientException`, `InvalidSignatureException`,
//! `SignatureDoesNotMatch`, `AccessDeniedException`), `TooManyRequestsException` (429),
//! `LimitExceededException`, `SendingPausedException`, `AccountSuspendedException`,
//! `MailFromDomainNotVerifiedException`, 5xx, a timeout — is *unavailable*, logged with the
//! error type and message.

use otp_plugin_sdk::http::{Method, Request, Response};
use otp_plugin_sdk::{Message, RequestContext, SendError, Sender};
use provider_kit::config::{Config, ConfigError};
use provider_kit::outcome::{self, Verdict};
use provider_kit::sigv4::{self, Credentials, Signable};
use provider_kit::template::{Medium, Rendered};
use provider_kit::Provider;
use serde_json::json;

/// The SigV4 service name of SES.
const SERVICE: &str = "ses";
/// The SendEmail operation's path.
const PATH: &str = "/v2/email/outbound-emails";

/// The exported sender.
pub struct SesEmail;

/// The `host` header the server sends for `api_base` (the authority without a default port,
/// lower case, without a trailing dot, as the server normalizes it) and the path prefix of
/// `api_base`.
fn host_and_prefix(api_base: &str) -> (String, &str) {
    let (https, rest) = match api_base.strip_prefix("https://") {
        Some(rest) => (true, rest),
        None => (false, api_base.strip_prefix("http://").unwrap_or(api_base)),
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, prefix) = rest.split_at(end);
    let default_port = if https { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    let (name, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: its colons are not the port's.
        Some(rest) => match rest.split_once("]:") {
            Some((inside, port)) => (&authority[..inside.len() + 2], Some(port)),
            None => (authority, None),
        },
        None => match authority.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let host = match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    };
    (host, prefix)
}

/// The signed request at `unix_seconds`.
fn signed_request(
    config: &Config,
    api_base: &str,
    to: &str,
    message: &Rendered,
    unix_seconds: u64,
) -> Result<Request, ConfigError> {
    let region = config.require("region")?;
    let credentials = Credentials {
        access_key_id: config.require("access_key_id")?,
        secret_access_key: config.require("secret_access_key")?,
    };
    let mut body = json!({
        "FromEmailAddress": config.require("from")?,
        "Destination": { "ToAddresses": [to] },
        "Content": { "Simple": {
            "Subject": { "Data": message.subject, "Charset": "UTF-8" },
            "Body": { "Text": { "Data": message.body, "Charset": "UTF-8" } },
        } },
    });
    if let Some(set) = config.get("configuration_set") {
        body["ConfigurationSetName"] = json!(set);
    }
    let body = body.to_string();
    let (host, prefix) = host_and_prefix(api_base);
    let path = format!("{prefix}{PATH}");
    let (amz_date, _) = sigv4::amz_date(unix_seconds);
    let mut signed = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("host".to_string(), host),
        ("x-amz-date".to_string(), amz_date.clone()),
    ];
    if let Some(token) = config.get("session_token") {
        signed.push(("x-amz-security-token".to_string(), token.to_string()));
    }
    let authorization = sigv4::authorization(
        &credentials,
        region,
        SERVICE,
        &amz_date,
        &Signable {
            method: "POST",
            path: &path,
            query: "",
            headers: &signed,
            body: body.as_bytes(),
        },
    );
    // The server sets `host` itself, from the URL: the same value as signed.
    let mut request = Request::new(Method::Post, format!("{api_base}{PATH}"));
    for (name, value) in signed.into_iter().filter(|(name, _)| name != "host") {
        request = request.header(name, value);
    }
    Ok(request.header("authorization", authorization).body(body))
}

/// The error type of an SES refusal: the `x-amzn-ErrorType` header (`Type:namespace`), else
/// the body's `__type` (`namespace#Type`) or `code`.
fn error_type(response: &Response, body: &serde_json::Value) -> String {
    let raw = response
        .header("x-amzn-errortype")
        .or_else(|| body["__type"].as_str())
        .or_else(|| body["code"].as_str())
        .unwrap_or("");
    let name = raw.split(':').next().unwrap_or(raw);
    name.rsplit('#').next().unwrap_or(name).trim().to_string()
}

impl Provider for SesEmail {
    const NAME: &'static str = "ses-email";
    const MEDIUM: Medium = Medium::Email;

    fn default_api_base(config: &Config) -> Result<String, ConfigError> {
        let region = config.require("region")?;
        if !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::invalid("region", "must look like eu-west-1"));
        }
        Ok(format!("https://email.{region}.amazonaws.com"))
    }

    fn request(
        config: &Config,
        api_base: &str,
        to: &str,
        message: &Rendered,
    ) -> Result<Request, ConfigError> {
        signed_request(config, api_base, to, message, provider_kit::now_ms() / 1000)
    }

    fn classify(response: &Response) -> Verdict {
        let body = outcome::json(&response.body);
        if outcome::is_success(response.status) {
            return Verdict::Delivered(body["MessageId"].as_str().map(str::to_string));
        }
        let kind = error_type(response, &body);
        let message = match outcome::text_field(&body, "message") {
            m if m.is_empty() => outcome::text_field(&body, "Message"),
            m => m,
        };
        let detail = format!(
            "SES {} {message}",
            if kind.is_empty() { "?" } else { &kind }
        );
        let illegal_address = message.to_ascii_lowercase().contains("illegal address");
        if matches!(
            kind.as_str(),
            "BadRequestException" | "InvalidParameterValue"
        ) && illegal_address
        {
            Verdict::Undeliverable(detail)
        } else if kind == "MessageRejected" {
            // "Email address is not verified": the `from` identity, or (in the sandbox)
            // the recipient — the account's state either way, which another sender of a
            // failover chain may not share.
            Verdict::refused(
                response.status,
                &format!("{detail} (check that `from` is a verified identity and the account is out of the SES sandbox)"),
            )
        } else {
            Verdict::refused(response.status, &detail)
        }
    }
}

impl Sender for SesEmail {
    fn send(msg: &Message, ctx: &RequestContext) -> Result<(), SendError> {
        provider_kit::send::<SesEmail>(msg, ctx)
    }
}

otp_plugin_sdk::export_sender!(SesEmail);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn answer(status: u16, error_type: Option<&str>, body: &str) -> Response {
        Response {
            status,
            headers: error_type
                .map(|t| vec![("x-amzn-errortype".to_string(), t.to_string())])
                .unwrap_or_default(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_request_is_signed_over_what_is_sent() {
        let c = config(&[
            ("region", "eu-west-1"),
            ("access_key_id", "AKIDEXAMPLE"),
            (
                "secret_access_key",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("from", "codes@example.com"),
            ("configuration_set", "otp"),
        ]);
        assert_eq!(
            SesEmail::default_api_base(&c).unwrap(),
            "https://email.eu-west-1.amazonaws.com"
        );
        let message = Rendered {
            locale: "en".into(),
            subject: Some("Your code".into()),
            body: "Code: A1".into(),
            body_without_code: String::new(),
        };
        let base = "http://127.0.0.1:8080";
        let r = signed_request(&c, base, "bob@example.com", &message, 1_440_938_160).unwrap();
        assert_eq!(r.url(), "http://127.0.0.1:8080/v2/email/outbound-emails");
        let header = |name: &str| {
            r.headers()
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(header("x-amz-date"), "20150830T123600Z");
        assert!(r.headers().iter().all(|(n, _)| n != "host"));
        let auth = sigv4::parse_authorization(&header("authorization")).unwrap();
        assert_eq!(
            (
                auth.date.as_str(),
                auth.region.as_str(),
                auth.service.as_str()
            ),
            ("20150830", "eu-west-1", "ses")
        );
        assert_eq!(auth.signed_headers, ["content-type", "host", "x-amz-date"]);

        // A verifier holding the same secret and what went over the wire gets the same
        // signature; any change to the body breaks it.
        let Request { .. } = r.clone();
        let body = serde_json::to_vec(&serde_json::json!({
            "FromEmailAddress": "codes@example.com",
            "Destination": { "ToAddresses": ["bob@example.com"] },
            "Content": { "Simple": {
                "Subject": { "Data": "Your code", "Charset": "UTF-8" },
                "Body": { "Text": { "Data": "Code: A1", "Charset": "UTF-8" } },
            } },
            "ConfigurationSetName": "otp",
        }))
        .unwrap();
        let wire = |body: &[u8]| {
            sigv4::authorization(
                &Credentials {
                    access_key_id: "AKIDEXAMPLE",
                    secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                },
                "eu-west-1",
                "ses",
                "20150830T123600Z",
                &Signable {
                    method: "POST",
                    path: PATH,
                    query: "",
                    headers: &[
                        ("Content-Type".into(), "application/json".into()),
                        ("Host".into(), "127.0.0.1:8080".into()),
                        ("X-Amz-Date".into(), "20150830T123600Z".into()),
                    ],
                    body,
                },
            )
        };
        assert_eq!(wire(&body), header("authorization"));
        assert_ne!(wire(b"{}"), header("authorization"));

        // Temporary credentials sign their token too.
        let mut pairs = vec![("session_token", "FQoG")];
        pairs.extend([
            ("region", "eu-west-1"),
            ("access_key_id", "A"),
            ("secret_access_key", "S"),
            ("from", "codes@example.com"),
        ]);
        let r = signed_request(&config(&pairs), base, "b@c.de", &message, 0).unwrap();
        let auth = r
            .headers()
            .iter()
            .find(|(n, _)| n == "authorization")
            .unwrap();
        assert!(auth
            .1
            .contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"));
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_and_prefix("https://email.eu-west-1.amazonaws.com"),
            ("email.eu-west-1.amazonaws.com".into(), "")
        );
        assert_eq!(
            host_and_prefix("https://h.example.com:443/ses"),
            ("h.example.com".into(), "/ses")
        );
        assert_eq!(
            host_and_prefix("http://127.0.0.1:9000"),
            ("127.0.0.1:9000".into(), "")
        );
        // Signed as the server sends it: lower case, no trailing dot.
        assert_eq!(
            host_and_prefix("https://Email.EU-West-1.amazonaws.com./v2"),
            ("email.eu-west-1.amazonaws.com".into(), "/v2")
        );
        assert_eq!(
            host_and_prefix("http://Fake.Example.:8443"),
            ("fake.example:8443".into(), "")
        );
        assert_eq!(
            host_and_prefix("http://[::1]:8443"),
            ("[::1]:8443".into(), "")
        );
        assert_eq!(host_and_prefix("http://[::1]/x"), ("[::1]".into(), "/x"));
        assert!(SesEmail::default_api_base(&config(&[("region", "eu-west-1/../")])).is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(
            SesEmail::classify(&answer(200, None, r#"{"MessageId":"0100-ab"}"#)),
            Verdict::Delivered(Some("0100-ab".into()))
        );
        // An unverified `from` (or a sandboxed account) is the operator's to fix.
        let rejected = answer(
            400,
            Some("MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"),
            r#"{"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: codes@example.com"}"#,
        );
        assert!(
            matches!(SesEmail::classify(&rejected), Verdict::Unavailable(m) if m.contains("MessageRejected") && m.contains("verified identity"))
        );
        let illegal = answer(
            400,
            Some("BadRequestException:http://internal.amazon.com/coral/com.amazonaws.sesv2/"),
            r#"{"message":"Illegal address"}"#,
        );
        assert!(
            matches!(SesEmail::classify(&illegal), Verdict::Undeliverable(m) if m.contains("Illegal address"))
        );
        let by_body = answer(
            400,
            None,
            r#"{"__type":"com.amazonaws.sesv2#BadRequestException","message":"Illegal address"}"#,
        );
        assert!(matches!(
            SesEmail::classify(&by_body),
            Verdict::Undeliverable(_)
        ));
        let other_bad_request = answer(
            400,
            Some("BadRequestException"),
            r#"{"message":"Configuration set does not exist"}"#,
        );
        assert!(matches!(
            SesEmail::classify(&other_bad_request),
            Verdict::Unavailable(_)
        ));
        for (status, kind, needle) in [
            (403, "InvalidSignatureException", "credentials"),
            (403, "UnrecognizedClientException", "UnrecognizedClient"),
            (429, "TooManyRequestsException", "rate limited"),
            (400, "SendingPausedException", "SendingPaused"),
            (500, "InternalFailure", "provider error"),
        ] {
            let v = SesEmail::classify(&answer(status, Some(kind), r#"{"message":"m"}"#));
            assert!(
                matches!(&v, Verdict::Unavailable(m) if m.contains(needle)),
                "{kind}: {v:?}"
            );
        }
    }
}
