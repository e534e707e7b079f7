//! Plain Rust types exchanged between otp-server and a plugin's hooks.
//!
//! They mirror the records and variants of `../wit/v0.2.0/plugin.wit` but are independent of the
//! generated bindings, so plugin logic that uses them can be unit-tested on any target.

use std::fmt;

/// What the server knows about the HTTP request that triggered a hook.
///
/// Fields are `None` when the request did not carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The client's IP address: the socket peer, or the address a trusted proxy forwarded.
    pub client_ip: Option<String>,
    /// The `User-Agent` request header.
    pub user_agent: Option<String>,
    /// The `Accept-Language` request header, as sent.
    pub accept_language: Option<String>,
    /// The request's id, as on the server's log lines and audit events: put it on your own
    /// log lines and outbound requests to correlate them.
    pub request_id: String,
    /// The client's preferred language: the best match of `Accept-Language` (a BCP 47 tag
    /// such as `pt-BR`), `None` when the header names none.
    pub locale: Option<String>,
}

/// A validated credential, returned by [`CredentialValidator::validate`](crate::CredentialValidator::validate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Credential {
    /// The canonical form of the credential, e.g. a lower-cased email address.
    ///
    /// Two requests naming the same credential must yield the same id: the server seals it
    /// into the session cookie and passes it to the other hooks. Keep it short.
    pub id: String,
    /// The delivery channel handed to the sender, e.g. `"email"`, `"sms"` or `"default"`.
    pub channel: String,
    /// The destination group the server's abuse limits count per, e.g. `sms:+44` (the
    /// country calling code) or `email:example.com` (the domain); `None` makes the channel
    /// the group.
    pub group: Option<String>,
}

impl Credential {
    /// Builds a credential from its canonical id and delivery channel, with no group.
    pub fn new(id: impl Into<String>, channel: impl Into<String>) -> Self {
        Credential {
            id: id.into(),
            channel: channel.into(),
            group: None,
        }
    }

    /// Sets the destination group (see [`Credential::group`]).
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }
}

/// Whether a code is the first one for the credential in this session, or a resend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendKind {
    /// The first code sent for this credential in the session.
    First,
    /// A code sent again at the client's request.
    Resend,
}

impl SendKind {
    /// `"first"` or `"resend"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SendKind::First => "first",
            SendKind::Resend => "resend",
        }
    }
}

impl fmt::Display for SendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One code to deliver, passed to [`Sender::send`](crate::Sender::send).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// The credential id returned by the credential validator.
    pub credential_id: String,
    /// The channel returned by the credential validator.
    pub channel: String,
    /// The one-time password. Treat it as a secret: never log it in production.
    pub code: String,
    /// When the code stops being accepted, in milliseconds since the Unix epoch.
    pub expires_at: u64,
    /// First code or resend.
    pub kind: SendKind,
}

// Hand-written so that `{:?}` on a message cannot leak the code into a log by accident.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("credential_id", &self.credential_id)
            .field("channel", &self.channel)
            .field("code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Why a code could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The credential cannot receive codes (no such mailbox, number not reachable by SMS, ...).
    ///
    /// The client sees 400 `CREDENTIAL:INVALID`; on a resend the credential is blocked in that
    /// session.
    Undeliverable(String),
    /// A transient failure (the provider is down, rate limited, timed out).
    ///
    /// The client sees 503 `SEND:UNAVAILABLE` and the session stays unchanged, so the client
    /// may simply retry.
    Unavailable(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Undeliverable(reason) => write!(f, "undeliverable: {reason}"),
            SendError::Unavailable(reason) => write!(f, "unavailable: {reason}"),
        }
    }
}

impl std::error::Error for SendError {}

/// The HTTP response the server sends after a successful verification, built by
/// [`FinalAction::complete`](crate::FinalAction::complete).
///
/// Header names and values must be valid HTTP; `content-length` and hop-by-hop headers are
/// set by the server.
///
/// ```
/// use otp_plugin_sdk::HttpResponse;
///
/// let response = HttpResponse::new(200)
///     .header("content-type", "text/plain")
///     .body("welcome");
/// assert_eq!(response.body, b"welcome");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code, 200..=599.
    pub status: u16,
    /// Response headers as (name, value) pairs, in order.
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        HttpResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// One audit event, as the events hook receives it (CloudEvents-shaped).
///
/// It never carries a code, a key or a secret. `subject` names a credential by a keyed
/// hash (`cred_<hex>`) unless the operator turned plain ids on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unique per event.
    pub id: String,
    /// What happened, e.g. `otp.code.sent`; ignore types you do not know.
    pub kind: String,
    /// When it happened: RFC 3339, UTC, milliseconds.
    pub time: String,
    /// The server's configured event source.
    pub source: String,
    /// What it is about: a credential (hashed) or a plugin's name.
    pub subject: Option<String>,
    /// Details as a JSON object text.
    pub data: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_debug_redacts_the_code() {
        let message = Message {
            credential_id: "alice@example.com".into(),
            channel: "email".into(),
            code: "123456".into(),
            expires_at: 42,
            kind: SendKind::Resend,
        };
        let shown = format!("{message:?}");
        assert!(!shown.contains("123456"), "{shown}");
        assert!(shown.contains("alice@example.com"));
    }

    #[test]
    fn http_response_builder() {
        let response = HttpResponse::new(201)
            .header("a", "1")
            .header("b", "2")
            .body(vec![1, 2]);
        assert_eq!(response.status, 201);
        assert_eq!(
            response.headers,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(response.body, vec![1, 2]);
    }

    #[test]
    fn display_impls() {
        assert_eq!(SendKind::First.to_string(), "first");
        assert_eq!(SendKind::Resend.to_string(), "resend");
        assert_eq!(
            SendError::Unavailable("down".into()).to_string(),
            "unavailable: down"
        );
        assert_eq!(Credential::new("a", "b"), Credential::new("a", "b"));
    }
}
