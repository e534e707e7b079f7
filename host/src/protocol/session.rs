//! The session carried (sealed) in the client's cookie: one token per credential.
//!
//! A [`Session`] is plain data. The transitions in `transition.rs` produce new sessions; the
//! crypto layer seals them into cookies; the store remembers which [`SessionId`]s are still
//! live so each sealed state can be used only once.

use std::fmt;

use super::settings::Settings;
use super::state::SessionState;

/// Most tokens one session may hold, whatever the settings say. The cookie codec relies on
/// these hard limits to bound allocations before it has authenticated anything.
pub const HARD_MAX_TOKENS: usize = 16;
/// Longest credential id (in bytes) a session may hold, whatever the settings say.
pub const HARD_MAX_CREDENTIAL_ID_LEN: usize = 1024;
/// Longest channel name (in bytes) a session may hold, whatever the settings say.
pub const HARD_MAX_CHANNEL_LEN: usize = 255;
/// Longest code (in bytes) a session may hold, whatever the settings say.
pub const HARD_MAX_CODE_LEN: usize = 64;

/// A random single-use identifier naming one sealed session state.
///
/// The store keeps the ids that are still live; a cookie whose id is not live is stale
/// (already used, replaced or expired), which is what makes cookies single-use.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// 128 bits from the OS CSPRNG: unguessable, and collisions are not a practical concern.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::os_random::fill(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    // A full id in a log line would let whoever reads the logs tell live sessions apart
    // from stale ones; two bytes are enough to correlate log lines of one request. The
    // last two: a store may fix the first ones (a Redis Cluster hash tag).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(..{:02x}{:02x})", self.0[14], self.0[15])
    }
}

/// The one-time code issued for one credential, with its attempt and resend bookkeeping.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub credential_id: String,
    pub channel: String,
    pub code: String,
    pub created_at_ms: u64,
    /// Fixed at creation; neither resends nor re-creation extend it.
    pub expires_at_ms: u64,
    pub attempts_left: u8,
    pub resends_used: u8,
    pub resend_allowed_at_ms: u64,
    /// End of the temporary verification block; 0 means none was ever started.
    pub blocked_until_ms: u64,
    /// Hard block: no further verification or resend for this token until it expires.
    pub blocked: bool,
}

impl Token {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms
    }

    pub fn is_temporarily_blocked(&self, now_ms: u64) -> bool {
        now_ms < self.blocked_until_ms
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("credential_id", &self.credential_id)
            .field("channel", &self.channel)
            .field("code", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("attempts_left", &self.attempts_left)
            .field("resends_used", &self.resends_used)
            .field("resend_allowed_at_ms", &self.resend_allowed_at_ms)
            .field("blocked_until_ms", &self.blocked_until_ms)
            .field("blocked", &self.blocked)
            .finish()
    }
}

/// All tokens of one client, and which one requests currently act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub tokens: Vec<Token>,
    /// Index into `tokens`. Sessions decoded from cookies always have it in range; for
    /// hand-built sessions an out-of-range index is treated as "no current token".
    pub current: usize,
}

impl Session {
    pub fn current_token(&self) -> Option<&Token> {
        self.tokens.get(self.current)
    }

    /// When the last token expires: the cookie's `Expires` and the session id's TTL, since
    /// after that nothing in the session can be used. 0 for a session without tokens.
    pub fn expires_at_ms(&self) -> u64 {
        self.tokens
            .iter()
            .map(|token| token.expires_at_ms)
            .max()
            .unwrap_or(0)
    }

    /// The client-visible state of the current token, if there is one.
    pub fn state(&self, now_ms: u64, settings: &Settings) -> Option<SessionState> {
        self.current_token()
            .map(|token| SessionState::of(token, now_ms, settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(code: &str, expires_at_ms: u64) -> Token {
        Token {
            credential_id: "user@example.com".into(),
            channel: "email".into(),
            code: code.into(),
            created_at_ms: 0,
            expires_at_ms,
            attempts_left: 3,
            resends_used: 0,
            resend_allowed_at_ms: 0,
            blocked_until_ms: 0,
            blocked: false,
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let id = SessionId::from_bytes([0xab; 16]);
        let session = Session {
            id,
            tokens: vec![token("s3cr3tc0de", 10)],
            current: 0,
        };
        let printed = format!("{session:?}");
        assert!(!printed.contains("s3cr3tc0de"));
        assert!(!printed.contains(&"ab".repeat(16)));
        assert!(printed.contains("SessionId(..abab)"));
    }

    #[test]
    fn session_expires_with_its_last_token() {
        let session = Session {
            id: SessionId::random(),
            tokens: vec![token("a", 10), token("b", 30), token("c", 20)],
            current: 0,
        };
        assert_eq!(session.expires_at_ms(), 30);
        let empty = Session {
            tokens: Vec::new(),
            ..session
        };
        assert_eq!(empty.expires_at_ms(), 0);
        assert!(empty.current_token().is_none());
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(SessionId::random(), SessionId::random());
    }

    #[test]
    fn expiry_is_inclusive() {
        let t = token("a", 100);
        assert!(!t.is_expired(99));
        assert!(t.is_expired(100));
    }
}
