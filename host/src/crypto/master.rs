//! The master key: what wraps key-encryption keys before they leave the process.
//!
//! In Redis mode every instance must seal and open with the same KEKs, so KEKs are
//! stored in Redis — wrapped with AES-256-KW under a master key that only the
//! instances hold (from `OTP_MASTER_KEY` or a key file). Redis alone therefore reveals
//! no usable key. AES-KW's integrity check also tells a wrong master key apart from
//! a damaged record, so start-up can say which it is.

use super::key::{KekId, KeyEncryptionKey};
use aes_gcm::{Aes256Gcm, Key};
use aes_kw::KekAes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

/// Bytes of a stored KEK record: 8 bytes of creation time, then the wrapped key.
pub const WRAPPED_KEK_LEN: usize = 8 + 40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadFormat,
    #[error("a stored key-encryption key record is malformed")]
    Malformed,
    #[error(
        "the master key does not match the one the stored key-encryption keys were wrapped with"
    )]
    WrongKey,
}

/// HMAC-SHA256 (RFC 2104) of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut block = Zeroizing::new([0u8; 64]);
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut ipad = Zeroizing::new([0x36u8; 64]);
    let mut opad = Zeroizing::new([0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= block[i];
        opad[i] ^= block[i];
    }
    let mut inner = Sha256::new();
    inner.update(ipad.as_ref());
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(opad.as_ref());
    outer.update(inner.finalize());
    let mut mac = Zeroizing::new([0u8; 32]);
    mac.copy_from_slice(&outer.finalize());
    mac
}

pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parses base64 (standard alphabet, padding optional) of 32 bytes; surrounding
    /// whitespace (a trailing newline in a key file) is ignored.
    pub fn from_base64(text: &str) -> Result<MasterKey, MasterKeyError> {
        let text = text.trim();
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .map_err(|_| MasterKeyError::BadFormat)?,
        );
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::BadFormat)?;
        Ok(MasterKey(Zeroizing::new(bytes)))
    }

    /// A key for another purpose, derived so that it reveals nothing of the master key:
    /// HMAC-SHA256(master key, `label`). Every instance derives the same one.
    pub fn derive(&self, label: &str) -> Zeroizing<[u8; 32]> {
        hmac_sha256(self.0.as_ref(), &[label.as_bytes()])
    }

    fn cipher(&self) -> KekAes256 {
        KekAes256::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }

    /// The stored form of a KEK: creation time and the wrapped key.
    pub fn wrap(&self, kek: &KeyEncryptionKey) -> Vec<u8> {
        let mut out = vec![0u8; WRAPPED_KEK_LEN];
        out[..8].copy_from_slice(&kek.created_at_ms().to_be_bytes());
        // Wrapping 32 bytes into a 40-byte buffer cannot fail.
        let _ = self.cipher().wrap(kek.key_bytes(), &mut out[8..]);
        out
    }

    /// Rebuilds the KEK `id` from its stored form.
    pub fn unwrap(&self, id: KekId, stored: &[u8]) -> Result<KeyEncryptionKey, MasterKeyError> {
        if stored.len() != WRAPPED_KEK_LEN {
            return Err(MasterKeyError::Malformed);
        }
        let created_at_ms = u64::from_be_bytes(
            stored[..8]
                .try_into()
                .map_err(|_| MasterKeyError::Malformed)?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        self.cipher()
            .unwrap(&stored[8..], key.as_mut())
            .map_err(|_| MasterKeyError::WrongKey)?;
        Ok(KeyEncryptionKey::from_parts(id, *key, created_at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn wraps_and_unwraps() {
        let kek = KeyEncryptionKey::generate(1234);
        let stored = master(1).wrap(&kek);
        assert_eq!(stored.len(), WRAPPED_KEK_LEN);
        assert!(
            !stored.windows(32).any(|w| w == kek.key_bytes()),
            "the key is not stored in the clear"
        );
        let back = master(1).unwrap(kek.id(), &stored).unwrap();
        assert_eq!(back.key_bytes(), kek.key_bytes());
        assert_eq!(back.created_at_ms(), 1234);
    }

    #[test]
    fn a_wrong_master_key_is_reported_as_such() {
        let kek = KeyEncryptionKey::generate(0);
        let stored = master(1).wrap(&kek);
        assert_eq!(
            master(2).unwrap(kek.id(), &stored).unwrap_err(),
            MasterKeyError::WrongKey
        );
        assert_eq!(
            master(1).unwrap(kek.id(), &stored[1..]).unwrap_err(),
            MasterKeyError::Malformed
        );
    }

    #[test]
    fn parses_base64_of_32_bytes_only() {
        assert!(MasterKey::from_base64(&format!("{}\n", STANDARD.encode([7u8; 32]))).is_ok());
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").unwrap_err(),
            MasterKeyError::BadFormat
        );
        assert_eq!(
            MasterKey::from_base64("not base64!").unwrap_err(),
            MasterKeyError::BadFormat
        );
    }
}
