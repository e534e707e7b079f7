//! Compact binary encoding of a [`Session`], the plaintext inside a cookie.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! session id [16] | current u8 | token count u8 | token*
//! token = credential id (u16 len + bytes) | channel (u8 len + bytes) | code (u8 len + bytes)
//!       | created_at u64 | expires_at u64 | resend_allowed_at u64 | blocked_until u64
//!       | attempts_left u8 | resends_used u8 | blocked u8 (0 or 1)
//! ```
//!
//! The format version lives in the cookie header (authenticated as associated data), so
//! none is repeated here. Decoding only ever runs on authenticated plaintext, yet it is
//! still written as if the input were hostile: a decode failure of authentic data means a
//! key may be compromised, so it must be reported, never crash, and never allocate more
//! than the hard limits allow.

use crate::protocol::{
    Session, SessionId, Token, HARD_MAX_CHANNEL_LEN, HARD_MAX_CODE_LEN, HARD_MAX_CREDENTIAL_ID_LEN,
    HARD_MAX_TOKENS,
};

/// Bytes a token takes besides its three strings: 2 + 1 + 1 length prefixes, four u64
/// timestamps and three u8 fields.
pub const TOKEN_FIXED_LEN: usize = 2 + 1 + 1 + 4 * 8 + 3;
/// Bytes of the session header: id, current index, token count.
pub const SESSION_HEADER_LEN: usize = 16 + 1 + 1;

/// Why a session could not be encoded: it exceeds the hard limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("a session must hold between 1 and {HARD_MAX_TOKENS} tokens")]
    TokenCount,
    #[error("the current token index is out of range")]
    CurrentOutOfRange,
    #[error("{0} is empty or longer than its hard limit")]
    FieldLength(&'static str),
}

/// Why bytes are not an encoded session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends inside {0}")]
    Truncated(&'static str),
    #[error("bytes left over after the last token")]
    TrailingBytes,
    #[error("token count is zero or above {HARD_MAX_TOKENS}")]
    TokenCount,
    #[error("the current token index is out of range")]
    CurrentOutOfRange,
    #[error("{0} is empty or longer than its hard limit")]
    FieldLength(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("the blocked flag is neither 0 nor 1")]
    BadFlag,
}

/// Encodes a session; fails only if it is outside the limits [`decode_session`] accepts.
pub fn encode_session(session: &Session) -> Result<Vec<u8>, EncodeError> {
    let count = session.tokens.len();
    if count == 0 || count > HARD_MAX_TOKENS {
        return Err(EncodeError::TokenCount);
    }
    if session.current >= count {
        return Err(EncodeError::CurrentOutOfRange);
    }
    let strings: usize = session
        .tokens
        .iter()
        .map(|t| t.credential_id.len() + t.channel.len() + t.code.len())
        .sum();
    let mut out = Vec::with_capacity(SESSION_HEADER_LEN + count * TOKEN_FIXED_LEN + strings);
    out.extend_from_slice(session.id.as_bytes());
    // Both fit in a u8: count <= HARD_MAX_TOKENS (16) and current < count.
    out.push(session.current as u8);
    out.push(count as u8);
    for token in &session.tokens {
        let credential_id = checked_len(
            &token.credential_id,
            HARD_MAX_CREDENTIAL_ID_LEN,
            "credential id",
        )?;
        out.extend_from_slice(&(credential_id as u16).to_be_bytes());
        out.extend_from_slice(token.credential_id.as_bytes());
        let channel = checked_len(&token.channel, HARD_MAX_CHANNEL_LEN, "channel")?;
        out.push(channel as u8);
        out.extend_from_slice(token.channel.as_bytes());
        let code = checked_len(&token.code, HARD_MAX_CODE_LEN, "code")?;
        out.push(code as u8);
        out.extend_from_slice(token.code.as_bytes());
        for timestamp in [
            token.created_at_ms,
            token.expires_at_ms,
            token.resend_allowed_at_ms,
            token.blocked_until_ms,
        ] {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out.push(token.attempts_left);
        out.push(token.resends_used);
        out.push(u8::from(token.blocked));
    }
    Ok(out)
}

/// Decodes a session, checking every length against the hard limits before allocating.
pub fn decode_session(bytes: &[u8]) -> Result<Session, DecodeError> {
    let mut reader = Reader { rest: bytes };
    let id = SessionId::from_bytes(reader.array::<16>("session id")?);
    let current = usize::from(reader.u8("current index")?);
    let count = usize::from(reader.u8("token count")?);
    if count == 0 || count > HARD_MAX_TOKENS {
        return Err(DecodeError::TokenCount);
    }
    if current >= count {
        return Err(DecodeError::CurrentOutOfRange);
    }
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let credential_len = usize::from(u16::from_be_bytes(reader.array("credential id")?));
        let credential_id =
            reader.string(credential_len, HARD_MAX_CREDENTIAL_ID_LEN, "credential id")?;
        let channel_len = usize::from(reader.u8("channel")?);
        let channel = reader.string(channel_len, HARD_MAX_CHANNEL_LEN, "channel")?;
        let code_len = usize::from(reader.u8("code")?);
        let code = reader.string(code_len, HARD_MAX_CODE_LEN, "code")?;
        let created_at_ms = reader.u64("timestamps")?;
        let expires_at_ms = reader.u64("timestamps")?;
        let resend_allowed_at_ms = reader.u64("timestamps")?;
        let blocked_until_ms = reader.u64("timestamps")?;
        let attempts_left = reader.u8("counters")?;
        let resends_used = reader.u8("counters")?;
        let blocked = match reader.u8("blocked flag")? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::BadFlag),
        };
        tokens.push(Token {
            credential_id,
            channel,
            code,
            created_at_ms,
            expires_at_ms,
            attempts_left,
            resends_used,
            resend_allowed_at_ms,
            blocked_until_ms,
            blocked,
        });
    }
    if !reader.rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(Session {
        id,
        tokens,
        current,
    })
}

fn checked_len(value: &str, max: usize, field: &'static str) -> Result<usize, EncodeError> {
    if value.is_empty() || value.len() > max {
        return Err(EncodeError::FieldLength(field));
    }
    Ok(value.len())
}

/// A cursor over the input that fails instead of reading past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::Truncated(field));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        self.take(N, field)?
            .try_into()
            .map_err(|_| DecodeError::Truncated(field))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn string(
        &mut self,
        len: usize,
        max: usize,
        field: &'static str,
    ) -> Result<String, DecodeError> {
        // The length check comes first so a forged length cannot make us allocate; the
        // bytes are borrowed from the input until they are known to be valid UTF-8.
        if len == 0 || len > max {
            return Err(DecodeError::FieldLength(field));
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn token(credential_id: &str) -> Token {
        Token {
            credential_id: credential_id.into(),
            channel: "sms".into(),
            code: "abc123xyz0".into(),
            created_at_ms: 1,
            expires_at_ms: u64::MAX,
            attempts_left: 2,
            resends_used: 1,
            resend_allowed_at_ms: 0x0102_0304_0506_0708,
            blocked_until_ms: 5,
            blocked: true,
        }
    }

    fn session() -> Session {
        Session {
            id: SessionId::from_bytes([7; 16]),
            tokens: vec![
                token("a@example.com"),
                token("ü@example.com"),
                token("+4912345"),
            ],
            current: 1,
        }
    }

    #[test]
    fn roundtrip() {
        let session = session();
        let bytes = encode_session(&session).expect("encodes");
        let strings: usize = session
            .tokens
            .iter()
            .map(|t| t.credential_id.len() + t.channel.len() + t.code.len())
            .sum();
        assert_eq!(
            bytes.len(),
            SESSION_HEADER_LEN + 3 * TOKEN_FIXED_LEN + strings
        );
        assert_eq!(decode_session(&bytes), Ok(session));
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would_reject() {
        let mut s = session();
        s.current = 3;
        assert_eq!(encode_session(&s), Err(EncodeError::CurrentOutOfRange));
        s.tokens.clear();
        s.current = 0;
        assert_eq!(encode_session(&s), Err(EncodeError::TokenCount));
        s.tokens = vec![token("a"); HARD_MAX_TOKENS + 1];
        assert_eq!(encode_session(&s), Err(EncodeError::TokenCount));
        s.tokens = vec![token(&"x".repeat(HARD_MAX_CREDENTIAL_ID_LEN + 1))];
        assert_eq!(
            encode_session(&s),
            Err(EncodeError::FieldLength("credential id"))
        );
        s.tokens = vec![Token {
            code: String::new(),
            ..token("a")
        }];
        assert_eq!(encode_session(&s), Err(EncodeError::FieldLength("code")));
        s.tokens = vec![Token {
            channel: "c".repeat(256),
            ..token("a")
        }];
        assert_eq!(encode_session(&s), Err(EncodeError::FieldLength("channel")));
    }

    #[test]
    fn structural_errors() {
        let good = encode_session(&session()).expect("encodes");
        assert_eq!(
            decode_session(&good[..10]),
            Err(DecodeError::Truncated("session id"))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode_session(&trailing), Err(DecodeError::TrailingBytes));

        let mut current = good.clone();
        current[16] = 3;
        assert_eq!(
            decode_session(&current),
            Err(DecodeError::CurrentOutOfRange)
        );
        let mut zero = good.clone();
        zero[16] = 0;
        zero[17] = 0;
        assert_eq!(decode_session(&zero), Err(DecodeError::TokenCount));
        let mut many = good.clone();
        many[17] = 17;
        assert_eq!(decode_session(&many), Err(DecodeError::TokenCount));

        // First token's credential id length: 0xffff is refused before any allocation.
        let mut huge = good.clone();
        huge[18] = 0xff;
        huge[19] = 0xff;
        assert_eq!(
            decode_session(&huge),
            Err(DecodeError::FieldLength("credential id"))
        );
        // Invalid UTF-8 in the credential id.
        let mut latin1 = good.clone();
        latin1[20] = 0xff;
        assert_eq!(
            decode_session(&latin1),
            Err(DecodeError::NotUtf8("credential id"))
        );
        // Last byte is the last token's blocked flag.
        let mut flag = good.clone();
        if let Some(last) = flag.last_mut() {
            *last = 2;
        }
        assert_eq!(decode_session(&flag), Err(DecodeError::BadFlag));
    }

    fn arbitrary_token() -> impl Strategy<Value = Token> {
        (
            "[a-z@.+0-9é]{1,100}",
            "[a-z]{1,32}",
            "[a-z0-9]{1,64}",
            any::<[u64; 4]>(),
            any::<(u8, u8, bool)>(),
        )
            .prop_map(|(credential_id, channel, code, times, (a, r, b))| Token {
                credential_id,
                channel,
                code,
                created_at_ms: times[0],
                expires_at_ms: times[1],
                resend_allowed_at_ms: times[2],
                blocked_until_ms: times[3],
                attempts_left: a,
                resends_used: r,
                blocked: b,
            })
    }

    proptest! {
        #[test]
        fn any_valid_session_roundtrips(
            id in any::<[u8; 16]>(),
            tokens in prop::collection::vec(arbitrary_token(), 1..=HARD_MAX_TOKENS),
            current in any::<prop::sample::Index>(),
        ) {
            let current = current.index(tokens.len());
            let session = Session { id: SessionId::from_bytes(id), tokens, current };
            let bytes = encode_session(&session).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(decode_session(&bytes), Ok(session));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_session(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode_session(&session()).unwrap_or_default();
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let _ = decode_session(&bytes);
        }

        #[test]
        fn every_strict_prefix_is_rejected(cut in any::<prop::sample::Index>()) {
            let bytes = encode_session(&session()).unwrap_or_default();
            let cut = cut.index(bytes.len());
            prop_assert!(decode_session(&bytes[..cut]).is_err());
        }
    }
}
