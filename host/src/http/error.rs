//! Every error the API can answer, and the one place where service errors become HTTP.
//!
//! Error bodies are `{"error": CODE, "message": text}`, plus the session state fields
//! (`expires`, `resendBlock`, `otpBlock`, `blocked`) when the error is about a session
//! the client still holds, and `retryAfter` (whole seconds) on `RATE:LIMITED`, whose
//! answers also carry `Retry-After`, `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers). The service's [`ServiceError`] and the
//! protocol's refusals are mapped to wire codes and statuses here and nowhere else.

use crate::limits::RateLimited;
use crate::protocol::{ProtocolError, SessionState};
pub use crate::service::CookieAction;
use crate::service::{ServiceError, ServiceErrorKind};
use axum::http::StatusCode;
use serde::Serialize;

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
    CrossSite,
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
            ErrorCode::CrossSite => "REQUEST:CROSS_SITE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Incorrect
            | ErrorCode::TooManyAttempts
            | ErrorCode::VerificationNotAllowed
            | ErrorCode::CredentialNotAllowed
            | ErrorCode::CrossSite => StatusCode::FORBIDDEN,
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
            ErrorCode::CrossSite => {
                "the request came from a page of an origin this server does not trust"
            }
        }
    }
}

/// An error answer: code, message, optional session state, and the cookie action.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Boxed, as the rate limit is: an error travels in `Result`s and stays small.
    pub state: Option<Box<SessionState>>,
    pub cookie: CookieAction,
    /// Set on `RATE:LIMITED`: the policy that refused and when to come back.
    pub rate_limited: Option<Box<RateLimited>>,
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
        self.state = Some(Box::new(state));
        self
    }

    pub fn with_cookie(mut self, cookie: CookieAction) -> ApiError {
        self.cookie = cookie;
        self
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: self.code.as_str(),
            message: &self.message,
            state: self.state.as_deref(),
            retry_after: self.rate_limited.as_ref().map(|l| l.retry_after_secs),
        }
    }
}

/// The JSON body of an error: its code and message, the session's state when the error
/// leaves a session to show, and `retryAfter` on `RATE:LIMITED`. Serialized straight
/// from the error, as every answer of a verify with a wrong code is one of these.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(flatten)]
    state: Option<&'a SessionState>,
    #[serde(rename = "retryAfter", skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::new(code)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let api = match error.kind {
            ServiceErrorKind::InvalidCookie => ApiError::new(ErrorCode::InvalidCookie),
            ServiceErrorKind::Refused(refused) => refused.into(),
            ServiceErrorKind::CredentialRejected => ApiError::new(ErrorCode::CredentialInvalid),
            ServiceErrorKind::Undeliverable { state } => {
                let api = ApiError::new(ErrorCode::CredentialInvalid);
                match state {
                    Some(state) => api.with_state(state),
                    None => api,
                }
            }
            ServiceErrorKind::SendUnavailable => ApiError::new(ErrorCode::SendUnavailable),
            ServiceErrorKind::PluginFailed { plugin } => ApiError::new(ErrorCode::PluginFailed)
                .with_message(format!("plugin {plugin} failed")),
            ServiceErrorKind::PluginUnavailable { hook, busy: false } => {
                ApiError::new(ErrorCode::PluginUnavailable)
                    .with_message(format!("no plugin serves the {hook} hook"))
            }
            ServiceErrorKind::PluginUnavailable { hook, busy: true } => {
                ApiError::new(ErrorCode::PluginUnavailable)
                    .with_message(format!("too many {hook} calls are running; try again"))
            }
            ServiceErrorKind::StoreUnavailable => ApiError::new(ErrorCode::StoreUnavailable),
            ServiceErrorKind::RateLimited(limited) => {
                let mut api = ApiError::new(ErrorCode::RateLimited).with_message(limited.message);
                api.rate_limited = Some(Box::new(limited));
                api
            }
            ServiceErrorKind::CredentialNotAllowed => {
                ApiError::new(ErrorCode::CredentialNotAllowed)
            }
        };
        api.with_cookie(error.cookie)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_refusal_has_its_wire_code() {
        let state = crate::protocol::SessionState {
            expires_at_ms: 0,
            resend_blocked_until_ms: None,
            otp_blocked_until_ms: None,
            blocked: false,
        };
        let cases = [
            (
                ProtocolError::InvalidCredential,
                "CREDENTIAL:INVALID",
                false,
            ),
            (
                ProtocolError::TooManyCredentials,
                "OTP:TOO_MANY_CREDENTIALS",
                false,
            ),
            (ProtocolError::Expired, "OTP:EXPIRED", false),
            (
                ProtocolError::ResendNotAllowed(state.clone()),
                "OTP:RESENT_NOT_ALLOWED",
                true,
            ),
            (
                ProtocolError::VerificationNotAllowed(state.clone()),
                "OTP:VERIFICATION_NOT_ALLOWED",
                true,
            ),
            (
                ProtocolError::Incorrect(state.clone()),
                "OTP:INCORRECT",
                true,
            ),
            (
                ProtocolError::TooManyAttempts(state),
                "OTP:TOO_MANY_ATTEMPTS",
                true,
            ),
        ];
        for (error, code, has_state) in cases {
            let api = ApiError::from(error);
            assert_eq!(api.code.as_str(), code);
            assert_eq!(api.state.is_some(), has_state);
        }
    }

    #[test]
    fn the_body_carries_the_code_the_message_the_state_and_when_to_come_back() {
        let body = |error: &ApiError| serde_json::to_value(error.body()).unwrap();
        assert_eq!(
            body(&ApiError::new(ErrorCode::InvalidCookie)),
            serde_json::json!({
                "error": "OTP:INVALID_COOKIE",
                "message": ErrorCode::InvalidCookie.default_message(),
            })
        );
        let state = crate::protocol::SessionState {
            expires_at_ms: 1_700_000_000_000,
            resend_blocked_until_ms: Some(1_700_000_030_000),
            otp_blocked_until_ms: None,
            blocked: false,
        };
        let incorrect = ApiError::from(ProtocolError::Incorrect(state.clone()));
        let mut expected = serde_json::to_value(&state).unwrap();
        expected["error"] = "OTP:INCORRECT".into();
        expected["message"] = incorrect.message.clone().into();
        assert_eq!(body(&incorrect), expected);
        let mut limited = ApiError::new(ErrorCode::RateLimited);
        limited.rate_limited = Some(Box::new(RateLimited {
            policy: "sends-per-credential",
            quota: 3,
            window_secs: 900,
            retry_after_secs: 42,
            message: "too many codes sent to this destination; try again later",
        }));
        let json = body(&limited);
        assert_eq!(json["error"], "RATE:LIMITED");
        assert_eq!(json["retryAfter"], 42);
        assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
    }
}
