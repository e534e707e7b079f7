//! provider-kit: what the provider senders (`twilio-sms`, `sendgrid-email`, `postmark-email`,
//! `ses-email`) share, so that each of them is only its provider's request and answers.
//!
//! A provider plugin implements [`Provider`] — how to build the provider's request for one
//! rendered message, and what the provider's answer means — and its `send` hook calls
//! [`send`]. That reads the manifest's `[config]` once ([`config`]), checks the destination
//! (an E.164 number for SMS, an address for email: anything else is *undeliverable* without
//! a request), renders the best template for the request's locale ([`template`],
//! [`locale`]), checks an SMS's size ([`gsm`]), sends through the allow-listed outbound
//! client and maps the answer ([`outcome`]). Every failure reason names the plugin and never
//! contains the code or a secret. [`sigv4`] signs AWS requests.
//!
//! # The SMS size warning
//!
//! Every call runs on a fresh instance, so a plugin cannot remember that it already warned.
//! The check is a pure function of the manifest (the templates, `app_name`, and the code's
//! length), so instead the warning repeats on every send of a template that exceeds the
//! allowance — `max_segments` (default 1) and `allow_ucs2` (default false) — until the
//! operator either shortens the template or states the cost in the manifest by raising
//! those two settings. One line per message is also exactly as loud as the extra cost.

pub mod config;
pub mod gsm;
pub mod locale;
pub mod outcome;
pub mod sigv4;
pub mod template;

use config::{Config, ConfigError};
use otp_plugin_sdk::http::{HttpError, Request, Response};
use otp_plugin_sdk::{log, Message, RequestContext, SendError};
use outcome::Verdict;
use template::{Catalog, Medium, Rendered};

/// One provider's HTTP API.
pub trait Provider {
    /// The plugin's name, at the start of every reason and log line.
    const NAME: &'static str;
    /// SMS or email.
    const MEDIUM: Medium;

    /// The API root when the manifest sets no `api_base`.
    fn default_api_base(config: &Config) -> Result<String, ConfigError>;

    /// The request that sends `message` to `to` (an E.164 number or an email address).
    fn request(
        config: &Config,
        api_base: &str,
        to: &str,
        message: &Rendered,
    ) -> Result<Request, ConfigError>;

    /// What the provider's answer means.
    fn classify(response: &Response) -> Verdict;
}

/// The destination in a credential id: the id itself, or the string inside it when the id is
/// a JSON string (as `default-credential` makes them).
fn destination(credential_id: &str) -> String {
    let id = credential_id.trim();
    if id.starts_with('"') {
        if let Ok(serde_json::Value::String(inner)) = serde_json::from_str(id) {
            return inner.trim().to_string();
        }
    }
    id.to_string()
}

/// Whether `to` is an E.164 number: `+`, then 8 to 15 digits, the first not 0.
pub fn is_e164(to: &str) -> bool {
    let Some(digits) = to.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Whether `to` looks like one mailbox: one `@` with text on both sides, a dot in the
/// domain, a domain of letters, digits, `-` and `.`, no spaces, control characters or
/// the specials of display names, quoting and comments (`<>,;:"()[]\`: `Name <a@b>` is
/// delivered to `a@b` by providers that parse it), at most 254 bytes. The provider
/// decides the rest.
pub fn is_email(to: &str) -> bool {
    let Some((local, domain)) = to.split_once('@') else {
        return false;
    };
    to.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.')
        && !to
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;:\"()[]\\".contains(c))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The `send` hook of provider `P`: the manifest's config, the outbound client, the clock.
pub fn send<P: Provider>(msg: &Message, ctx: &RequestContext) -> Result<(), SendError> {
    let config = Config::from_manifest();
    let requested = locale::requested(ctx);
    deliver::<P>(&config, msg, &requested, now_ms(), |request| request.send())
}

/// [`send`] with its inputs explicit: `transport` performs the request.
pub fn deliver<P: Provider>(
    config: &Config,
    msg: &Message,
    requested: &[String],
    now_ms: u64,
    transport: impl FnOnce(&Request) -> Result<Response, HttpError>,
) -> Result<(), SendError> {
    let verdict = match prepare::<P>(config, msg, requested, now_ms) {
        Err(error) => Verdict::Unavailable(format!("configuration: {error}")),
        Ok(Prepared::Refused(verdict)) => verdict,
        Ok(Prepared::Send(request, locale)) => match transport(&request) {
            Ok(mut response) => {
                // Before `classify` quotes (and clips) the provider's text: a code cut in
                // two by the clip would no longer match the stand-in below.
                redact(&mut response.body, msg.code.as_bytes());
                let verdict = P::classify(&response);
                if let Verdict::Delivered(id) = &verdict {
                    log::debug(&format!(
                        "{}: delivered ({locale}){}",
                        P::NAME,
                        id.as_ref()
                            .map(|id| format!(", message id {id}"))
                            .unwrap_or_default()
                    ));
                }
                verdict
            }
            Err(error) => Verdict::transport(&error),
        },
    };
    // Reasons quote the provider: make sure none of them repeats the code.
    let reason = |text: String| {
        let text = if msg.code.is_empty() {
            text
        } else {
            text.replace(&msg.code, "<code>")
        };
        format!("{}: {text}", P::NAME)
    };
    match verdict {
        Verdict::Delivered(_) => Ok(()),
        Verdict::Undeliverable(text) => Err(SendError::Undeliverable(reason(text))),
        Verdict::Unavailable(text) => Err(SendError::Unavailable(reason(text))),
    }
}

/// Replaces every occurrence of `code` in `body` by `<code>`.
fn redact(body: &mut Vec<u8>, code: &[u8]) {
    if code.is_empty() || !body.windows(code.len()).any(|w| w == code) {
        return;
    }
    let mut out = Vec::with_capacity(body.len());
    let mut rest = &body[..];
    while let Some(at) = rest.windows(code.len()).position(|w| w == code) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(b"<code>");
        rest = &rest[at + code.len()..];
    }
    out.extend_from_slice(rest);
    *body = out;
}

enum Prepared {
    Send(Request, String),
    Refused(Verdict),
}

fn prepare<P: Provider>(
    config: &Config,
    msg: &Message,
    requested: &[String],
    now_ms: u64,
) -> Result<Prepared, ConfigError> {
    let catalog = Catalog::from_config(config, P::MEDIUM)?;
    let api_base = config.api_base(&P::default_api_base(config)?)?;
    let timeout = config.timeout()?;
    let to = destination(&msg.credential_id);
    let (valid, what) = match P::MEDIUM {
        Medium::Sms => (is_e164(&to), "an E.164 phone number (+ and 8 to 15 digits)"),
        Medium::Email => (is_email(&to), "an email address"),
    };
    if !valid {
        return Ok(Prepared::Refused(Verdict::Undeliverable(format!(
            "the credential (channel {}) is not {what}",
            msg.channel
        ))));
    }
    let minutes = template::minutes_left(msg.expires_at, now_ms);
    let rendered = catalog.render(requested, &msg.code, minutes);
    if P::MEDIUM == Medium::Sms {
        check_sms_size::<P>(config, &rendered)?;
    }
    let mut request = P::request(config, &api_base, &to, &rendered)?.max_response_bytes(64 * 1024);
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    Ok(Prepared::Send(request, rendered.locale))
}

/// Warns when the rendered SMS (with a stand-in for the code) exceeds the manifest's
/// allowance; see the crate documentation for why on every send.
fn check_sms_size<P: Provider>(config: &Config, rendered: &Rendered) -> Result<(), ConfigError> {
    let max_segments = config.count("max_segments", 1)?;
    let allow_ucs2 = config.flag("allow_ucs2", false)?;
    if let Some(warning) = sms_size_warning(&rendered.body_without_code, max_segments, allow_ucs2) {
        log::warn(&format!(
            "{}: the {} template {warning}",
            P::NAME,
            rendered.locale
        ));
    }
    Ok(())
}

/// Why a text exceeds the allowance, if it does (`None` when it fits).
pub fn sms_size_warning(text: &str, max_segments: usize, allow_ucs2: bool) -> Option<String> {
    let size = gsm::segments(text);
    let ucs2 = size.encoding == gsm::Encoding::Ucs2;
    if size.count <= max_segments && (allow_ucs2 || !ucs2) {
        return None;
    }
    let mut outside: Vec<char> = text.chars().filter(|c| !gsm::is_gsm7(*c)).collect();
    outside.sort_unstable();
    outside.dedup();
    let because = if ucs2 {
        format!(
            " (UCS-2 because of {})",
            outside
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    } else {
        String::new()
    };
    Some(format!(
        "needs {} {} segment(s){because}: each SMS is billed {} times. Shorten it to one GSM-7 \
         segment (160 plain characters), or accept the cost with max_segments = {}{} in [config]",
        size.count,
        size.encoding.as_str(),
        size.count,
        size.count,
        if ucs2 { " and allow_ucs2 = true" } else { "" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use otp_plugin_sdk::http::Method;
    use otp_plugin_sdk::SendKind;

    /// A provider that says what it was given: the request body is the destination, a line
    /// break and the rendered text; the answer's status decides.
    struct Echo;

    impl Provider for Echo {
        const NAME: &'static str = "echo-sms";
        const MEDIUM: Medium = Medium::Sms;

        fn default_api_base(_: &Config) -> Result<String, ConfigError> {
            Ok("https://echo.example.com".into())
        }

        fn request(
            config: &Config,
            api_base: &str,
            to: &str,
            message: &Rendered,
        ) -> Result<Request, ConfigError> {
            let token = config.require("token")?;
            Ok(Request::new(Method::Post, format!("{api_base}/send"))
                .header("authorization", token)
                .body(format!("{to}\n{}", message.body)))
        }

        fn classify(response: &Response) -> Verdict {
            match response.status {
                200 => Verdict::Delivered(None),
                404 => Verdict::Undeliverable("no such number".into()),
                // Clipped, as the real providers quote an answer.
                status => Verdict::refused(
                    status,
                    &outcome::clip(&String::from_utf8_lossy(&response.body)),
                ),
            }
        }
    }

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn message(to: &str) -> Message {
        Message {
            credential_id: to.into(),
            channel: "sms".into(),
            code: "K3Y9C0DE42".into(),
            expires_at: 1_000_000 + 5 * 60_000,
            kind: SendKind::First,
        }
    }

    fn answer(status: u16, body: &str) -> Result<Response, HttpError> {
        Ok(Response {
            status,
            headers: vec![],
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn a_message_goes_out_rendered_for_the_request_locale() {
        let c = config(&[
            ("token", "t0k"),
            ("api_base", "http://127.0.0.1:9/"),
            ("timeout_ms", "700"),
            ("template.de", "Code {code}, {minutes} Min."),
        ]);
        let mut seen = None;
        let result = deliver::<Echo>(
            &c,
            &message("\"+4915112345678\""),
            &["de-DE".into()],
            1_000_000,
            |r| {
                seen = Some(r.clone());
                answer(200, "")
            },
        );
        assert_eq!(result, Ok(()));
        let request = seen.unwrap();
        assert_eq!(request.url(), "http://127.0.0.1:9/send");
        assert_eq!(
            request.headers(),
            [("authorization".to_string(), "t0k".to_string())]
        );
    }

    #[test]
    fn failures_are_mapped_and_never_carry_the_code() {
        let c = config(&[("token", "t0k")]);
        let send = |status: u16, body: &str| {
            deliver::<Echo>(&c, &message("+4915112345678"), &[], 1_000_000, |_| {
                answer(status, body)
            })
        };
        assert_eq!(
            send(404, ""),
            Err(SendError::Undeliverable("echo-sms: no such number".into()))
        );
        // The provider echoing the code back: the reason shows a stand-in.
        let Err(SendError::Unavailable(reason)) = send(503, "busy, try K3Y9C0DE42 later") else {
            panic!()
        };
        assert_eq!(
            reason,
            "echo-sms: answered 503 (provider error): busy, try <code> later"
        );
        // Echoed where the reason's clip (200 characters) would cut it in two: no part
        // of it may reach the reason.
        for at in 190..200 {
            let body = format!("{}K3Y9C0DE42 and more", "x".repeat(at));
            let Err(SendError::Unavailable(reason)) = send(503, &body) else {
                panic!()
            };
            assert!(!reason.contains("K3Y9"), "{reason}");
            assert!(!reason.contains("C0DE"), "{reason}");
        }
        let r = deliver::<Echo>(&c, &message("+4915112345678"), &[], 0, |_| {
            Err(HttpError::Timeout("first byte".into()))
        });
        assert!(
            matches!(r, Err(SendError::Unavailable(ref m)) if m.contains("timed out")),
            "{r:?}"
        );
    }

    #[test]
    fn bad_destinations_and_configuration_fail_without_a_request() {
        let never = |_: &Request| -> Result<Response, HttpError> { panic!("no request expected") };
        let c = config(&[("token", "t0k")]);
        let r = deliver::<Echo>(&c, &message("alice@example.com"), &[], 0, never);
        assert!(
            matches!(r, Err(SendError::Undeliverable(ref m)) if m.contains("E.164")),
            "{r:?}"
        );
        for (pairs, needle) in [
            (vec![], "[config] token is not set"),
            (
                vec![("token", "t0k"), ("template.en", "{kode}")],
                "template.en",
            ),
            (
                vec![("token", "t0k"), ("api_base", "echo.example.com")],
                "api_base",
            ),
            (
                vec![("token", "t0k"), ("max_segments", "x")],
                "max_segments",
            ),
        ] {
            let r = deliver::<Echo>(&config(&pairs), &message("+4915112345678"), &[], 0, never);
            assert!(
                matches!(r, Err(SendError::Unavailable(ref m)) if m.contains("configuration") && m.contains(needle)),
                "{pairs:?}: {r:?}"
            );
        }
    }

    #[test]
    fn destinations() {
        assert!(is_e164("+15005550006") && is_e164("+491511234567"));
        assert!(!is_e164("15005550006") && !is_e164("+0123456789") && !is_e164("+1234"));
        assert!(!is_e164("+1500555000a") && !is_e164(&format!("+{}", "1".repeat(16))));
        assert!(is_email("alice@example.com") && is_email("a.b+c@sub.example.co"));
        assert!(is_email("o'brien@münchen.de") && is_email("x_y-z@a-b.example"));
        for bad in [
            "alice",
            "@example.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "a@b.com.",
            "a@.b.com",
            "Victim<me@evil.com>",
            "\"a b\"@c.com",
            "a(x)@b.com",
            "a,b@c.com",
            "a@[127.0.0.1]",
            "a@b_c.com",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(destination("\"bob@example.com\""), "bob@example.com");
        assert_eq!(destination(" +15005550006 "), "+15005550006");
    }

    #[test]
    fn the_sms_size_warning() {
        assert_eq!(sms_size_warning(&"a".repeat(160), 1, false), None);
        let w = sms_size_warning(&"a".repeat(161), 1, false).unwrap();
        assert!(
            w.contains("needs 2 GSM-7 segment(s)") && w.contains("max_segments = 2"),
            "{w}"
        );
        assert_eq!(sms_size_warning(&"a".repeat(161), 2, false), None);
        let w = sms_size_warning("Seu código: 0000", 1, false).unwrap();
        assert!(
            w.contains("1 UCS-2 segment(s)")
                && w.contains("'ó'")
                && w.contains("allow_ucs2 = true"),
            "{w}"
        );
        assert_eq!(sms_size_warning("Seu código: 0000", 1, true), None);
        assert!(sms_size_warning(&"ó".repeat(71), 1, true)
            .unwrap()
            .contains("2 UCS-2"));
    }
}
