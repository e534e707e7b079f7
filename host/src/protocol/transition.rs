//! The protocol transitions: create (or switch to) a token, resend its code, block it, and
//! verify a submitted code.
//!
//! Each transition is a pure function of the previous session, the request input, `now`
//! and the [`Settings`]. What the shell must do with a result:
//!
//! * **New ids.** Every transition that produces new session contents takes `new_id` (the
//!   shell draws it with [`SessionId::random`]) and returns a session already carrying it.
//!   The shell must retire the old id atomically *before acting on the result* — claim it
//!   with `IdStore::consume`/`replace` first and, if that fails, answer as for an invalid
//!   cookie without sending or revealing anything. Otherwise parallel requests replaying
//!   one cookie could each spend the same attempt, send extra codes, or learn from the
//!   response whether a guess was right. Then it registers `new_id` with TTL
//!   `session.expires_at_ms() - now` and seals the session into a fresh cookie.
//! * **Sending.** [`Transition::send`] names the token whose code the sender hook must
//!   deliver. If the sender reports the address undeliverable, pass the transition through
//!   [`block_current`] before sealing it.
//! * **Verified.** [`VerifyOutcome::Verified`] has no successor session: the shell consumes
//!   the old id (the session ends) and clears the cookie.

use super::code::{codes_match, CodeSource};
use super::error::ProtocolError;
use super::session::{Session, SessionId, Token};
use super::settings::Settings;
use super::state::SessionState;

/// Why a code is being sent, so the sender hook can word the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    First,
    Resend,
}

/// Instruction to deliver `session.tokens[token].code` via the token's channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendCode {
    pub kind: SendKind,
    pub token: usize,
}

/// New session contents produced by a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "the old session id must be retired and this session sealed, or the change is lost"]
pub struct Transition {
    /// The successor session, carrying the `new_id` the transition was given.
    pub session: Session,
    /// A code the shell must send before answering, if any.
    pub send: Option<SendCode>,
    /// What to show the client about the (new) current token.
    pub state: SessionState,
}

/// Result of a verification that was allowed to compare the code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a rejected attempt must be recorded by sealing the successor session"]
pub enum VerifyOutcome {
    /// The code was right. The shell consumes the session id and the session ends.
    Verified {
        credential_id: String,
        channel: String,
    },
    /// The code was wrong. `error` is [`ProtocolError::Incorrect`] or
    /// [`ProtocolError::TooManyAttempts`] (with the new state); `session` records the spent
    /// attempt and must replace the old one, or the attempt would not count.
    Rejected {
        session: Session,
        error: ProtocolError,
    },
}

/// Starts a token for `credential_id`, or switches to the existing one.
///
/// `session` is `None` when the request had no usable cookie. Expired tokens are dropped.
/// Tokens are keyed by credential id alone: asking again for a credential that already has
/// a live token makes it current without a new code (whatever `channel` says), so blocks
/// and attempt counts cannot be escaped by re-creating.
pub fn create(
    session: Option<&Session>,
    new_id: SessionId,
    credential_id: &str,
    channel: &str,
    now_ms: u64,
    settings: &Settings,
    codes: &mut dyn CodeSource,
) -> Result<Transition, ProtocolError> {
    if credential_id.is_empty()
        || credential_id.len() > settings.max_credential_id_len
        || channel.is_empty()
        || channel.len() > settings.max_channel_len
    {
        return Err(ProtocolError::InvalidCredential);
    }
    let mut tokens: Vec<Token> = session
        .map(|session| {
            session
                .tokens
                .iter()
                .filter(|token| !token.is_expired(now_ms))
                .cloned()
                .collect()
        })
        .unwrap_or_default();

    if let Some(current) = tokens
        .iter()
        .position(|token| token.credential_id == credential_id)
    {
        let session = Session {
            id: new_id,
            tokens,
            current,
        };
        return settle(session, None, now_ms, settings);
    }

    if tokens.len() >= settings.max_credentials {
        return Err(ProtocolError::TooManyCredentials);
    }
    tokens.push(Token {
        credential_id: credential_id.to_owned(),
        channel: channel.to_owned(),
        code: codes.generate(settings.alphabet, settings.code_length),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(settings.session_max_age_ms),
        attempts_left: settings.max_attempts,
        resends_used: 0,
        resend_allowed_at_ms: now_ms.saturating_add(settings.resend_cooldown_ms),
        blocked_until_ms: 0,
        blocked: false,
    });
    let current = tokens.len() - 1;
    let session = Session {
        id: new_id,
        tokens,
        current,
    };
    let send = SendCode {
        kind: SendKind::First,
        token: current,
    };
    settle(session, Some(send), now_ms, settings)
}

/// Replaces the current token's code with a new one and asks for it to be sent.
///
/// The attempt count and expiry are kept: a resend must not buy more guesses or time.
pub fn resend(
    session: &Session,
    new_id: SessionId,
    now_ms: u64,
    settings: &Settings,
    codes: &mut dyn CodeSource,
) -> Result<Transition, ProtocolError> {
    let token = live_current_token(session, now_ms)?;
    if token.blocked
        || token.resends_used >= settings.max_resends
        || now_ms < token.resend_allowed_at_ms
    {
        return Err(ProtocolError::ResendNotAllowed(SessionState::of(
            token, now_ms, settings,
        )));
    }
    let mut next = successor(session, new_id);
    if let Some(token) = next.tokens.get_mut(next.current) {
        token.code = codes.generate(settings.alphabet, settings.code_length);
        token.resends_used = token.resends_used.saturating_add(1);
        token.resend_allowed_at_ms = now_ms.saturating_add(settings.resend_cooldown_ms);
    }
    let send = SendCode {
        kind: SendKind::Resend,
        token: next.current,
    };
    settle(next, Some(send), now_ms, settings)
}

/// Hard-blocks the current token of a pending transition, because its code could not be
/// delivered. The session keeps the transition's new id (it has not been handed out yet)
/// and nothing is left to send.
pub fn block_current(transition: Transition, now_ms: u64, settings: &Settings) -> Transition {
    let mut session = transition.session;
    let mut state = transition.state;
    let current = session.current;
    if let Some(token) = session.tokens.get_mut(current) {
        token.blocked = true;
        state = SessionState::of(token, now_ms, settings);
    }
    Transition {
        session,
        send: None,
        state,
    }
}

/// Checks a submitted code against the current token.
///
/// Anything that is not the code counts as a wrong attempt, including malformed input: the
/// caller may reject malformed codes earlier (see `Alphabet::is_valid_code`) if it prefers
/// not to charge an attempt for them.
pub fn verify(
    session: &Session,
    new_id: SessionId,
    submitted_code: &str,
    now_ms: u64,
    settings: &Settings,
) -> Result<VerifyOutcome, ProtocolError> {
    let token = live_current_token(session, now_ms)?;
    if token.blocked || token.is_temporarily_blocked(now_ms) {
        return Err(ProtocolError::VerificationNotAllowed(SessionState::of(
            token, now_ms, settings,
        )));
    }
    if codes_match(&token.code, submitted_code) {
        return Ok(VerifyOutcome::Verified {
            credential_id: token.credential_id.clone(),
            channel: token.channel.clone(),
        });
    }

    let mut next = successor(session, new_id);
    let current = next.current;
    let Some(token) = next.tokens.get_mut(current) else {
        return Err(ProtocolError::Expired);
    };
    token.attempts_left = token.attempts_left.saturating_sub(1);
    let out_of_attempts = token.attempts_left == 0;
    if out_of_attempts {
        token.blocked = true;
    } else if token.attempts_left == settings.block_at_attempts_left {
        token.blocked_until_ms = now_ms.saturating_add(settings.block_duration_ms);
    }
    let state = SessionState::of(token, now_ms, settings);
    let error = if out_of_attempts {
        ProtocolError::TooManyAttempts(state)
    } else {
        ProtocolError::Incorrect(state)
    };
    Ok(VerifyOutcome::Rejected {
        session: next,
        error,
    })
}

/// The current token, unless it (or the whole session) has nothing left to act on.
fn live_current_token(session: &Session, now_ms: u64) -> Result<&Token, ProtocolError> {
    match session.current_token() {
        Some(token) if !token.is_expired(now_ms) => Ok(token),
        _ => Err(ProtocolError::Expired),
    }
}

fn successor(session: &Session, new_id: SessionId) -> Session {
    Session {
        id: new_id,
        ..session.clone()
    }
}

fn settle(
    session: Session,
    send: Option<SendCode>,
    now_ms: u64,
    settings: &Settings,
) -> Result<Transition, ProtocolError> {
    let state = session
        .state(now_ms, settings)
        .ok_or(ProtocolError::Expired)?;
    Ok(Transition {
        session,
        send,
        state,
    })
}

#[cfg(test)]
mod tests;
