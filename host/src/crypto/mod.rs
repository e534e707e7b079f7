//! Envelope encryption of sessions into cookie values.
//!
//! A long-lived key-encryption key ([`KeyEncryptionKey`], held in a [`KeySource`] such as the
//! in-memory [`KeyRing`]) wraps a fresh data-encryption key per cookie; the data key seals the
//! binary-encoded session ([`codec`]) with AES-256-GCM. [`SessionCookie`] is what the
//! service uses: `seal` on the way out, `open` on the way in, and `key_id` to read which
//! key a cookie names when that key has yet to be fetched from a shared store.

pub mod codec;
mod cookie;
mod key;
mod key_store;
mod master;
mod ring;

pub use codec::{decode_session, encode_session, DecodeError, EncodeError};
pub use cookie::{
    validate_cookie_budget, worst_case_cookie_value_len, CookieError, SealError, SessionCookie,
    COOKIE_FORMAT_VERSION, MAX_COOKIE_VALUE_LEN,
};
pub use key::{KekId, KeyEncryptionKey};
pub use key_store::{KeyStore, MemoryKeyStore};
pub use master::{MasterKey, MasterKeyError, MasterKeys, KEK_RECORD_LEN};
pub use ring::{KeyRing, KeySource};
