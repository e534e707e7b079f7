//! The host's own view of the hooks, independent of any WIT version.
//!
//! The service talks in these types and reaches the plugins only through the [`Hooks`]
//! trait, so its invariants (the old id retired before sending, the undo after a failed
//! send, the final action's slot taken before the session id is spent) can be tested
//! with a fake. Each supported WIT version (see [`super::v0_1_0`], [`super::v0_2_0`])
//! converts these types to and from its generated bindings; fields a version does not
//! know are dropped on the way in and absent on the way out.

pub use crate::events::AuditEvent;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;

/// One of the hooks a plugin can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    CredentialValidation,
    Sending,
    FinalAction,
    /// The audit sink (contract 0.2.0 and later); called off the request path.
    Events,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::CredentialValidation,
        Hook::Sending,
        Hook::FinalAction,
        Hook::Events,
    ];

    /// The hooks a server needs bound to serve OTP requests (`/ready`); the audit sink
    /// is optional.
    pub const REQUIRED: [Hook; 3] = [Hook::CredentialValidation, Hook::Sending, Hook::FinalAction];

    /// The hook's name: the WIT interface name, also used in configuration and `/ready`.
    pub fn name(self) -> &'static str {
        match self {
            Hook::CredentialValidation => "credential-validation",
            Hook::Sending => "sending",
            Hook::FinalAction => "final-action",
            Hook::Events => "events",
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
    /// The request's id (taken from a trusted proxy or made by the server).
    pub request_id: String,
    /// The best match of `Accept-Language`, e.g. `pt-BR`.
    pub locale: Option<String>,
}

/// A credential as accepted by the validation hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub channel: String,
    /// The destination group for abuse limits (`sms:+44`); `None` from plugins that
    /// give none (all of contract 0.1.0): the channel then stands for it.
    pub group: Option<String>,
}

impl Credential {
    /// The destination group abuse limits count per: the plugin's, else the channel.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.channel)
    }
}

/// Whether a code is the first one for a credential or a resend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendKind {
    First,
    Resend,
}

impl SendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SendKind::First => "first",
            SendKind::Resend => "resend",
        }
    }
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

/// A delivered code: the sender that took it — the first of its channel's failover chain,
/// unless that one was unavailable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub sender: Arc<str>,
}

/// The response a final-action plugin asks the server to send.
#[derive(Clone, Debug)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How a hook call can fail. The service maps each variant to its own error.
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
    /// The hook's concurrency budget (its call slots, or its share of the instance pool)
    /// is used up (`PLUGIN:UNAVAILABLE`).
    #[error("the {0} hook's call slots or its share of the instance pool are all taken")]
    Busy(Hook),
}

/// Why a send delivered nothing: the error the client hears (for a failover chain, its
/// first *unavailable* when there was one), and whether any sender of the chain trapped
/// or timed out, which may come after its provider accepted the code.
#[derive(Debug)]
pub struct SendFailure {
    pub error: HookError,
    pub maybe_sent: bool,
}

impl SendFailure {
    /// Whether no code can have left the server: every sender that ran said
    /// *unavailable*, or none could run (none bound, no call slot).
    pub fn sent_nothing(&self) -> bool {
        !self.maybe_sent
            && matches!(
                self.error,
                HookError::Unavailable(_) | HookError::Unbound(_) | HookError::Busy(_)
            )
    }

    /// Whether the session moves on as if the code had been sent: a sender trapped or
    /// timed out (it may have handed the code to its provider) and none called the
    /// destination undeliverable (which ends the chain and is answered as such).
    pub fn moves_on(&self) -> bool {
        self.maybe_sent && !matches!(self.error, HookError::Undeliverable(_))
    }
}

impl From<HookError> for SendFailure {
    /// A failure of the one sender that ran (or of none): it may have sent only if it
    /// trapped or timed out.
    fn from(error: HookError) -> SendFailure {
        let maybe_sent = matches!(error, HookError::Failed { .. });
        SendFailure { error, maybe_sent }
    }
}

/// The plugins as the service sees them. [`super::PluginRegistry`] is the real one;
/// tests use fakes.
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Runs the credential-validation hook on a create request's body.
    async fn validate(&self, body: &str, context: &RequestContext)
        -> Result<Credential, HookError>;

    /// Runs the senders of the delivery's channel in turn until one takes the code (see
    /// [`super::PluginRegistry`] for the failover rules).
    async fn send(
        &self,
        delivery: &CodeDelivery,
        context: &RequestContext,
    ) -> Result<Sent, SendFailure>;

    /// Takes what a final action needs to run — the bound plugin and a call slot — so
    /// that the caller spends the session id only once the action is sure to start.
    async fn reserve_final_action(&self) -> Result<Box<dyn FinalAction>, HookError>;
}

/// A final action ready to run (see [`Hooks::reserve_final_action`]); dropping it
/// gives the slot back.
#[async_trait]
pub trait FinalAction: Send {
    async fn complete(
        self: Box<Self>,
        credential: &Credential,
        context: &RequestContext,
    ) -> Result<PluginResponse, HookError>;
}
