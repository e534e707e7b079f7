//! Every error the API can answer, and the one place where host errors become HTTP.
//!
//! Error bodies are `{"error": CODE, "message": text}`, plus the session state fields
//! (`expires`, `resendBlock`, `otpBlock`, `blocked`) when the error is about a session
//! the client still holds, and `retryAfter` (whole seconds) on `RATE:LIMITED`, whose
//! answers also carry `Retry-After`, `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers). Internal typed errors (hooks, protocol, store, cookies) are
//! converted here and nowhere else.

use crate::limits::{LimitError, RateLimited};
use crate::plugins::HookError;
use crate::protocol::{ProtocolError, SessionState};
use crate::store::StoreError;
use axum::http::StatusCode;

/// The error codes of the API, as they appear in the `error` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    BodyTooLarge,
    CredentialInvalid,
    Generic,
    Expired,
    Incorrect,
    InvalidCookie,
    InvalidFormat,
    ResentNotAllowed,
    TooManyAttempts,
    TooManyCredentials,
    VerificationNotAllowed,
    Server,
    SendUnavailable,
    PluginFailed,
    PluginUnavailable,
    StoreUnavailable,
    RateLimited,
    CredentialNotAllowed,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "BODY:TOO_LARGE",
            ErrorCode::CredentialInvalid => "CREDENTIAL:INVALID",
            ErrorCode::Generic => "GENERIC",
            ErrorCode::Expired => "OTP:EXPIRED",
            ErrorCode::Incorrect => "OTP:INCORRECT",
            ErrorCode::InvalidCookie => "OTP:INVALID_COOKIE",
            ErrorCode::InvalidFormat => "OTP:INVALID_FORMAT",
            ErrorCode::ResentNotAllowed => "OTP:RESENT_NOT_ALLOWED",
            ErrorCode::TooManyAttempts => "OTP:TOO_MANY_ATTEMPTS",
            ErrorCode::TooManyCredentials => "OTP:TOO_MANY_CREDENTIALS",
            ErrorCode::VerificationNotAllowed => "OTP:VERIFICATION_NOT_ALLOWED",
            ErrorCode::Server => "SERVER",
            ErrorCode::SendUnavailable => "SEND:UNAVAILABLE",
            ErrorCode::PluginFailed => "PLUGIN:FAILED",
            ErrorCode::PluginUnavailable => "PLUGIN:UNAVAILABLE",
            ErrorCode::StoreUnavailable => "STORE:UNAVAILABLE",
            ErrorCode::RateLimited => "RATE:LIMITED",
            ErrorCode::CredentialNotAllowed => "CREDENTIAL:NOT_ALLOWED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Incorrect
            | ErrorCode::TooManyAttempts
            | ErrorCode::VerificationNotAllowed
            | ErrorCode::CredentialNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Server | ErrorCode::PluginFailed => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::SendUnavailable
            | ErrorCode::PluginUnavailable
            | ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The message sent when nothing more specific is known.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BodyTooLarge => "request body is larger than 100 KiB",
            ErrorCode::CredentialInvalid => "the credential is not valid",
            ErrorCode::Generic => "bad request",
            ErrorCode::Expired => "the code has expired",
            ErrorCode::Incorrect => "the code is incorrect",
            ErrorCode::InvalidCookie => {
                "the session cookie is missing, invalid, expired or already used"
            }
            ErrorCode::InvalidFormat => "the code has the wrong format",
            ErrorCode::ResentNotAllowed => "a new code cannot be sent now",
            ErrorCode::TooManyAttempts => "too many incorrect codes: this credential is blocked",
            ErrorCode::TooManyCredentials => "too many credentials in this session",
            ErrorCode::VerificationNotAllowed => "verification is not allowed now",
            ErrorCode::Server => "internal server error",
            ErrorCode::SendUnavailable => "the code cannot be sent right now; try again",
            ErrorCode::PluginFailed => "a plugin failed",
            ErrorCode::PluginUnavailable => "no plugin serves this hook right now",
            ErrorCode::StoreUnavailable => "the session store is unavailable; try again",
            ErrorCode::RateLimited => "too many requests; try again later",
            ErrorCode::CredentialNotAllowed => "codes cannot be sent to this destination",
        }
    }
}

/// What to do with the session cookie alongside an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CookieAction {
    Keep,
    Set { value: String, expires_at_ms: u64 },
    Delete,
}

/// An error answer: code, message, optional session state, and the cookie action.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub state: Option<SessionState>,
    pub cookie: CookieAction,
    /// Set on `RATE:LIMITED`: the policy that refused and when to come back.
    pub rate_limited: Option<RateLimited>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> ApiError {
        ApiError {
            code,
            message: code.default_message().to_string(),
            state: None,
            cookie: CookieAction::Keep,
            rate_limited: None,
        }
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    pub fn with_state(mut self, state: SessionState) -> ApiError {
        self.state = Some(state);
        self
    }

    pub fn with_cookie(mut self, cookie: CookieAction) -> ApiError {
        self.cookie = cookie;
        self
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        let mut body = match self.state.as_ref().map(serde_json::to_value) {
            Some(Ok(serde_json::Value::Object(map))) => map,
            _ => serde_json::Map::new(),
        };
        body.insert("error".into(), self.code.as_str().into());
        body.insert("message".into(), self.message.clone().into());
        if let Some(limited) = &self.rate_limited {
            body.insert("retryAfter".into(), limited.retry_after_secs.into());
        }
        serde_json::Value::Object(body)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

impl From<HookError> for ApiError {
    fn from(error: HookError) -> Self {
        match error {
            // The plugin's reason goes to the log, not to the client: it may reveal
            // how validation works, and it is the operator who can act on it.
            HookError::Rejected(reason) => {
                tracing::info!(%reason, "credential rejected by the validation plugin");
                ApiError::new(ErrorCode::CredentialInvalid)
            }
            HookError::Undeliverable(reason) => {
                tracing::info!(%reason, "sender: credential undeliverable");
                ApiError::new(ErrorCode::CredentialInvalid)
            }
            HookError::Unavailable(reason) => {
                tracing::warn!(%reason, "sender unavailable");
                ApiError::new(ErrorCode::SendUnavailable)
            }
            HookError::Failed { plugin, .. } => ApiError::new(ErrorCode::PluginFailed)
                .with_message(format!("plugin {plugin} failed")),
            HookError::Unbound(hook) => ApiError::new(ErrorCode::PluginUnavailable)
                .with_message(format!("no plugin serves the {hook} hook")),
            HookError::Busy => ApiError::new(ErrorCode::PluginUnavailable)
                .with_message("too many plugin calls are running; try again"),
        }
    }
}

impl From<LimitError> for ApiError {
    fn from(error: LimitError) -> Self {
        match error {
            LimitError::Limited(limited) => {
                let mut api = ApiError::new(ErrorCode::RateLimited).with_message(limited.message);
                api.rate_limited = Some(limited);
                api
            }
            LimitError::NotAllowed => ApiError::new(ErrorCode::CredentialNotAllowed),
            LimitError::Unavailable(error) => error.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "session store error");
        ApiError::new(ErrorCode::StoreUnavailable)
    }
}

impl From<ProtocolError> for ApiError {
    fn from(error: ProtocolError) -> Self {
        let code = match &error {
            ProtocolError::InvalidCredential => ErrorCode::CredentialInvalid,
            ProtocolError::TooManyCredentials => ErrorCode::TooManyCredentials,
            ProtocolError::Expired => ErrorCode::Expired,
            ProtocolError::ResendNotAllowed(_) => ErrorCode::ResentNotAllowed,
            ProtocolError::VerificationNotAllowed(_) => ErrorCode::VerificationNotAllowed,
            ProtocolError::Incorrect(_) => ErrorCode::Incorrect,
            ProtocolError::TooManyAttempts(_) => ErrorCode::TooManyAttempts,
        };
        let api = ApiError::new(code);
        match error.state() {
            Some(state) => api.with_state(state.clone()),
            None => api,
        }
    }
}
