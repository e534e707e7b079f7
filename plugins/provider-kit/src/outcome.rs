//! What a provider's answer means for the sending hook.
//!
//! The contract has two failures: *undeliverable* (this credential cannot receive codes: the
//! client sees 400 `CREDENTIAL:INVALID`) and *unavailable* (try again, or try another
//! provider: 503 `SEND:UNAVAILABLE`). Each plugin recognizes its provider's few
//! "bad destination" answers; everything else that is not a success — bad credentials,
//! rate limits, timeouts, server errors, an answer it does not know — is *unavailable*, with a
//! reason that tells the operator what happened. Reasons go to the server log: they carry the
//! provider's status, error code and (shortened) message, never the code or a secret.

use otp_plugin_sdk::http::HttpError;

/// The outcome of one exchange with a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted; with the provider's message id when it gave one.
    Delivered(Option<String>),
    /// The destination cannot receive messages.
    Undeliverable(String),
    /// A transient or operator-side failure.
    Unavailable(String),
}

impl Verdict {
    /// A non-success answer that is not about the destination: *unavailable*, explained by
    /// its status and the provider's own words.
    pub fn refused(status: u16, detail: &str) -> Verdict {
        Verdict::Unavailable(format!("answered {status} ({}): {detail}", meaning(status)))
    }

    /// A request that never got an answer.
    pub fn transport(error: &HttpError) -> Verdict {
        let hint = match error {
            HttpError::Denied => " (add api_base's scheme, host and port to [outbound] allow)",
            HttpError::Prohibited => {
                " (a private or loopback address must be named as an IP literal in [outbound] allow)"
            }
            _ => "",
        };
        Verdict::Unavailable(format!("no answer: {error}{hint}"))
    }
}

/// What a status says to the operator.
pub fn meaning(status: u16) -> &'static str {
    match status {
        401 | 403 => "credentials rejected: check the manifest's secrets",
        408 => "request timeout",
        429 => "rate limited",
        400..=499 => "request refused",
        500..=599 => "provider error",
        _ => "unexpected answer",
    }
}

/// Whether the status is a success.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// A provider's message made fit for one log line: control characters dropped, at most
/// 200 characters.
pub fn clip(text: &str) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim();
    match clean.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &clean[..end]),
        None => clean.to_string(),
    }
}

/// The body as JSON, or `Null` when it is not JSON.
pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or(serde_json::Value::Null)
}

/// A string field of a JSON object, clipped.
pub fn text_field(value: &serde_json::Value, key: &str) -> String {
    value
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(clip)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_explain_the_status() {
        assert_eq!(
            Verdict::refused(429, "slow down"),
            Verdict::Unavailable("answered 429 (rate limited): slow down".into())
        );
        for (status, needle) in [
            (401, "credentials"),
            (403, "credentials"),
            (408, "timeout"),
            (404, "refused"),
            (503, "provider error"),
            (302, "unexpected"),
        ] {
            assert!(meaning(status).contains(needle), "{status}");
        }
        assert!(is_success(201) && is_success(202) && !is_success(300) && !is_success(199));
    }

    #[test]
    fn transport_failures_are_unavailable_with_a_hint() {
        let Verdict::Unavailable(reason) = Verdict::transport(&HttpError::Denied) else {
            panic!()
        };
        assert!(reason.contains("[outbound] allow"), "{reason}");
        let Verdict::Unavailable(reason) =
            Verdict::transport(&HttpError::Timeout("first byte".into()))
        else {
            panic!()
        };
        assert!(reason.contains("timed out"), "{reason}");
    }

    #[test]
    fn provider_text_is_clipped() {
        assert_eq!(clip(" a\nb\u{7}c "), "abc");
        let long = "é".repeat(300);
        assert_eq!(clip(&long).chars().count(), 201);
        assert_eq!(text_field(&json(br#"{"message":"hi"}"#), "message"), "hi");
        assert_eq!(text_field(&json(b"<html>"), "message"), "");
    }
}
