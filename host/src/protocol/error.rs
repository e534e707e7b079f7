//! Why a transition refused a request. The HTTP layer maps each reason to its wire code.

use super::state::SessionState;

/// A refused request. Variants carrying a [`SessionState`] should return it to the client
/// so it can show blocks and expiry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Answered as `CREDENTIAL:INVALID`: credential id or channel empty or over its length cap.
    #[error("credential id or channel is empty or too long")]
    InvalidCredential,
    /// Becomes `OTP:TOO_MANY_CREDENTIALS`: the session already holds the maximum number of
    /// live tokens.
    #[error("too many credentials in one session")]
    TooManyCredentials,
    /// Becomes `OTP:EXPIRED`: the current token has expired (or the session has none).
    #[error("the one-time password has expired")]
    Expired,
    /// Becomes `OTP:RESENT_NOT_ALLOWED`: cooldown running, resends used up, or hard block.
    #[error("resending the one-time password is not allowed now")]
    ResendNotAllowed(SessionState),
    /// Becomes `OTP:VERIFICATION_NOT_ALLOWED`: temporary or hard block in force.
    #[error("verification is not allowed now")]
    VerificationNotAllowed(SessionState),
    /// Becomes `OTP:INCORRECT`: wrong code, attempts remain.
    #[error("incorrect one-time password")]
    Incorrect(SessionState),
    /// Becomes `OTP:TOO_MANY_ATTEMPTS`: wrong code and no attempts left; the token is now
    /// hard-blocked.
    #[error("too many incorrect attempts")]
    TooManyAttempts(SessionState),
}

impl ProtocolError {
    /// The state to show the client alongside the error, if the error has one.
    pub fn state(&self) -> Option<&SessionState> {
        match self {
            ProtocolError::InvalidCredential
            | ProtocolError::TooManyCredentials
            | ProtocolError::Expired => None,
            ProtocolError::ResendNotAllowed(state)
            | ProtocolError::VerificationNotAllowed(state)
            | ProtocolError::Incorrect(state)
            | ProtocolError::TooManyAttempts(state) => Some(state),
        }
    }
}
