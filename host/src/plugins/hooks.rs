//! The host's own view of the three hooks, independent of any WIT version.
//!
//! The HTTP layer talks in these types; each supported WIT API version (see
//! [`super::v0_1_0`]) converts them to and from its generated bindings. Keeping them
//! apart is what lets a future `otp:plugin@0.2.0` live beside `@0.1.0`.

use std::fmt;

/// One of the hooks a plugin can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    CredentialValidation,
    Sending,
    FinalAction,
}

impl Hook {
    pub const ALL: [Hook; 3] = [Hook::CredentialValidation, Hook::Sending, Hook::FinalAction];

    /// The hook's name: the WIT interface name, also used in configuration and `/ready`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::CredentialValidation => "credential-validation",
            Hook::Sending => "sending",
            Hook::FinalAction => "final-action",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server knows about the request that triggered a hook call.
#[derive(Clone, Debug, Default)]
pub struct RequestContext {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub accept_language: Option<String>,
}

/// A credential as accepted by the validation hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub channel: String,
}

/// Whether a code is the first one for a credential or a resend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    First,
    Resend,
}

/// One code to deliver. Debug output redacts the code.
#[derive(Clone)]
pub struct CodeDelivery {
    pub credential_id: String,
    pub channel: String,
    pub code: String,
    pub expires_at_ms: u64,
    pub kind: SendKind,
}

impl fmt::Debug for CodeDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeDelivery")
            .field("channel", &self.channel)
            .field("code", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The response a final-action plugin asks the server to send.
#[derive(Clone, Debug)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a hook call can fail. The HTTP layer maps each variant to one error code.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The validation hook rejected the credential (`CREDENTIAL:INVALID`).
    #[error("credential rejected: {0}")]
    Rejected(String),
    /// The sender says the credential cannot receive codes (`CREDENTIAL:INVALID`).
    #[error("undeliverable: {0}")]
    Undeliverable(String),
    /// The sender had a transient failure (`SEND:UNAVAILABLE`).
    #[error("send unavailable: {0}")]
    Unavailable(String),
    /// The plugin trapped, timed out, ran out of memory or returned something invalid
    /// (`PLUGIN:FAILED`).
    #[error("plugin {plugin} failed: {reason}")]
    Failed { plugin: String, reason: String },
    /// No plugin serves the hook right now (`PLUGIN:UNAVAILABLE`).
    #[error("no plugin is bound to the {0} hook")]
    Unbound(Hook),
    /// Too many hook calls are running at once to start another (`PLUGIN:UNAVAILABLE`).
    #[error("plugin capacity exhausted")]
    Busy,
}
