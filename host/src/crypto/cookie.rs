//! The session cookie value: an envelope-encrypted, base64url-encoded session.
//!
//! ```text
//! base64url_nopad( version=1 | KEK id [16] | AES-KW(KEK, DEK) [40] | nonce [12]
//!                  | AES-256-GCM(DEK, nonce, aad = version | KEK id, session) )
//! ```
//!
//! Each seal draws a fresh data-encryption key (DEK), so a KEK only ever encrypts random
//! keys and nonce reuse under one DEK is impossible. Opening reports *why* a value was
//! refused, because the shell reacts differently: forged or stale values
//! ([`CookieError::Malformed`], [`CookieError::UnknownKey`], [`CookieError::Unauthentic`])
//! are simply "no session", while [`CookieError::Corrupt`] — authentic yet undecodable —
//! means someone holding a KEK produced it, so the key must be treated as compromised.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

use super::codec::{
    decode_session, encode_session, EncodeError, SESSION_HEADER_LEN, TOKEN_FIXED_LEN,
};
use super::key::{KekId, KeyEncryptionKey};
use super::ring::KeySource;
use crate::protocol::SessionId;
use crate::protocol::{Session, Settings};

pub const COOKIE_FORMAT_VERSION: u8 = 1;
/// Longest cookie value accepted (and produced). Browsers cap a whole cookie — name, value
/// and attributes — at about 4096 bytes, so anything longer cannot be ours; refusing it
/// before base64-decoding also bounds the work an attacker can cause.
pub const MAX_COOKIE_VALUE_LEN: usize = 4096;

const HEADER_LEN: usize = 1 + 16;
const WRAPPED_DEK_LEN: usize = 32 + 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const ENVELOPE_LEN: usize = HEADER_LEN + WRAPPED_DEK_LEN + NONCE_LEN + TAG_LEN;

/// Why a cookie value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not something we could have produced: too long, bad base64, too short, or an unknown
    /// format version.
    #[error("malformed session cookie")]
    Malformed,
    /// Sealed with a KEK the server does not hold: pruned after expiry, or forged.
    #[error("session cookie sealed with an unknown key")]
    UnknownKey,
    /// The DEK did not unwrap or the GCM tag did not verify: tampered or forged.
    #[error("session cookie failed authentication")]
    Unauthentic,
    /// Authenticated, yet the plaintext is not a session. Only a KEK holder can produce
    /// this, so the shell should drop the session id, rotate the KEK and raise an alarm.
    /// Carries the session id when the plaintext is at least long enough to hold one
    /// (it comes first in the encoding).
    #[error("authentic session cookie with undecodable contents")]
    Corrupt(Option<SessionId>),
}

/// Why a session could not be sealed. Any of these is a server bug or misconfiguration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("session cannot be encoded: {0}")]
    Unencodable(#[from] EncodeError),
    #[error("sealed session would be {0} characters, over the cookie limit")]
    TooLarge(usize),
    #[error("encryption failed")]
    Encryption,
}

/// Seals sessions into cookie values and opens them again.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionCookie;

impl SessionCookie {
    /// Seals `session` under `kek` with a fresh DEK and nonce, for `Set-Cookie`.
    ///
    /// Sessions made by the protocol transitions under settings that passed
    /// `Settings::validate` and [`validate_cookie_budget`] always seal. Anything else is a
    /// bug: it is logged and sealed as the empty string, which opens as "no session", so
    /// the client merely starts over. Use [`SessionCookie::try_seal`] to see the error.
    pub fn seal(session: &Session, kek: &KeyEncryptionKey) -> String {
        Self::try_seal(session, kek).unwrap_or_else(|error| {
            tracing::error!(%error, "could not seal a session cookie; sending an empty one");
            String::new()
        })
    }

    /// Seals `session` under the key source's current KEK; see [`SessionCookie::seal`].
    pub fn seal_current(session: &Session, keys: &dyn KeySource) -> String {
        Self::seal(session, &keys.current())
    }

    /// Like [`SessionCookie::seal`], but reports why a session cannot be sealed.
    pub fn try_seal(session: &Session, kek: &KeyEncryptionKey) -> Result<String, SealError> {
        let plaintext = Zeroizing::new(encode_session(session)?);
        seal_bytes(&plaintext, kek)
    }

    /// The id of the KEK a cookie names in its header, without authenticating anything.
    /// Used to fetch a key this instance has not seen yet (another instance rotated).
    pub fn key_id(value: &str) -> Option<KekId> {
        if value.len() > MAX_COOKIE_VALUE_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        if bytes.len() < ENVELOPE_LEN || bytes[0] != COOKIE_FORMAT_VERSION {
            return None;
        }
        Some(KekId::from_bytes(
            bytes.get(1..HEADER_LEN)?.try_into().ok()?,
        ))
    }

    /// Authenticates and decodes a cookie value. Never panics, whatever `value` is.
    pub fn open(value: &str, keys: &dyn KeySource) -> Result<Session, CookieError> {
        if value.len() > MAX_COOKIE_VALUE_LEN {
            return Err(CookieError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CookieError::Malformed)?;
        if bytes.len() < ENVELOPE_LEN {
            return Err(CookieError::Malformed);
        }
        let (header, rest) = split(&bytes, HEADER_LEN)?;
        let (version, kek_id) = header.split_first().ok_or(CookieError::Malformed)?;
        if *version != COOKIE_FORMAT_VERSION {
            return Err(CookieError::Malformed);
        }
        let kek_id = KekId::from_bytes(kek_id.try_into().map_err(|_| CookieError::Malformed)?);
        let (wrapped_dek, rest) = split(rest, WRAPPED_DEK_LEN)?;
        let (nonce, ciphertext) = split(rest, NONCE_LEN)?;

        let kek = keys.get(&kek_id).ok_or(CookieError::UnknownKey)?;
        let mut dek = Zeroizing::new([0u8; 32]);
        kek.wrapper()
            .unwrap(wrapped_dek, dek.as_mut())
            .map_err(|_| CookieError::Unauthentic)?;
        let plaintext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(dek.as_ref()))
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: header,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CookieError::Unauthentic)?;
        decode_session(&plaintext).map_err(|error| {
            // The reason names a field or a length rule, never content, so it is safe to
            // log and is what tells a codec bug apart from a forgery with a stolen key.
            tracing::debug!(%error, %kek_id, "authentic cookie did not decode");
            let id = plaintext
                .get(..16)
                .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
                .map(SessionId::from_bytes);
            CookieError::Corrupt(id)
        })
    }
}

/// Longest cookie value `settings` can produce: every credential slot filled with
/// maximum-length ids, channels and codes.
pub fn worst_case_cookie_value_len(settings: &Settings) -> usize {
    let per_token = TOKEN_FIXED_LEN
        .saturating_add(settings.max_credential_id_len)
        .saturating_add(settings.max_channel_len)
        .saturating_add(settings.code_length);
    let plaintext = settings
        .max_credentials
        .saturating_mul(per_token)
        .saturating_add(SESSION_HEADER_LEN);
    let sealed = plaintext.saturating_add(ENVELOPE_LEN);
    // Unpadded base64: 4 characters per 3 bytes, rounded up.
    sealed.saturating_mul(4).saturating_add(2) / 3
}

/// Checks that the largest cookie `settings` allow, plus the cookie's name and attributes
/// (`name_and_attributes_len` bytes, e.g. `__Host-Http-o=` and `; Path=/; Secure; …`),
/// stays within what browsers store. Call it with `Settings::validate` at startup.
pub fn validate_cookie_budget(
    settings: &Settings,
    name_and_attributes_len: usize,
) -> Result<(), String> {
    let value = worst_case_cookie_value_len(settings);
    let total = value.saturating_add(name_and_attributes_len);
    if value > MAX_COOKIE_VALUE_LEN || total > MAX_COOKIE_VALUE_LEN {
        return Err(format!(
            "with these settings a session cookie can reach {total} bytes (limit \
             {MAX_COOKIE_VALUE_LEN}); lower max_credentials or the length caps"
        ));
    }
    Ok(())
}

fn split(bytes: &[u8], at: usize) -> Result<(&[u8], &[u8]), CookieError> {
    bytes.split_at_checked(at).ok_or(CookieError::Malformed)
}

/// Seals arbitrary plaintext. Private so only encoded sessions get sealed; tests use it to
/// build authentic-but-corrupt cookies.
fn seal_bytes(plaintext: &[u8], kek: &KeyEncryptionKey) -> Result<String, SealError> {
    let mut dek = Zeroizing::new([0u8; 32]);
    crate::os_random::fill(dek.as_mut());
    let mut nonce = [0u8; NONCE_LEN];
    crate::os_random::fill(&mut nonce);

    let mut sealed = Vec::with_capacity(ENVELOPE_LEN + plaintext.len());
    sealed.push(COOKIE_FORMAT_VERSION);
    sealed.extend_from_slice(kek.id().as_bytes());
    let mut wrapped_dek = [0u8; WRAPPED_DEK_LEN];
    kek.wrapper()
        .wrap(dek.as_ref(), &mut wrapped_dek)
        .map_err(|_| SealError::Encryption)?;
    sealed.extend_from_slice(&wrapped_dek);
    sealed.extend_from_slice(&nonce);
    let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(dek.as_ref()))
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: sealed.get(..HEADER_LEN).ok_or(SealError::Encryption)?,
            },
        )
        .map_err(|_| SealError::Encryption)?;
    sealed.extend_from_slice(&ciphertext);

    let value = URL_SAFE_NO_PAD.encode(sealed);
    if value.len() > MAX_COOKIE_VALUE_LEN {
        return Err(SealError::TooLarge(value.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
