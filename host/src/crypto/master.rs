//! The master key: what seals key-encryption keys before they leave the process.
//!
//! In Redis mode every instance must seal and open with the same KEKs, so KEKs are
//! stored in Redis — sealed with AES-256-GCM under a master key that only the
//! instances hold (from `OTP_MASTER_KEY` or a key file). Redis alone therefore reveals
//! no usable key, and the record is authenticated together with the KEK's id and
//! creation time: whoever can write to Redis but lacks the master key can neither
//! forge a key, nor move a key's creation time (to stop rotation), nor pass one
//! key's record off as another's. Such a record fails to open, and is refused.
//!
//! While the master key itself is replaced, [`MasterKeys`] holds the new key and the
//! previous one: records open under either, new records are sealed under the new one,
//! and `otp-server keys rewrap` re-seals the stored records.

use super::key::{KekId, KeyEncryptionKey};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

/// First byte of a stored KEK record (its format version).
const RECORD_VERSION: u8 = 1;
/// Bytes of a stored KEK record: version, creation time, nonce, sealed key with tag.
pub const KEK_RECORD_LEN: usize = 1 + 8 + 12 + 32 + 16;
/// Bound into every record's authentication, so a record cannot be mistaken for
/// anything else sealed under the same key.
const RECORD_CONTEXT: &[u8] = b"otp-server kek record v1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error("the master key must be base64 of exactly 32 bytes")]
    BadFormat,
    #[error("a stored key-encryption key record is malformed")]
    Malformed,
    #[error(
        "the master key does not match the one the stored key-encryption key was sealed with, \
         or the record was tampered with"
    )]
    NotAuthentic,
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

    /// Whether `other` is the same key (compared in constant time).
    pub fn same_as(&self, other: &MasterKey) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&*other.0).into()
    }

    /// A 32-byte key for another purpose, derived from the master key and a label
    /// (HMAC-SHA256(master key, label)), so every instance sharing the master key
    /// derives the same one and none reveals the master key.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_ref());
        let tag = ring::hmac::sign(&key, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.as_ref()))
    }

    /// The stored form of a KEK: version, creation time, nonce, and the key sealed with
    /// its id and creation time as associated data.
    pub fn seal(&self, kek: &KeyEncryptionKey) -> Vec<u8> {
        let created = kek.created_at_ms().to_be_bytes();
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(&kek.id(), &created);
        // Sealing 32 bytes with AES-GCM cannot fail.
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: kek.key_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(KEK_RECORD_LEN);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&created);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Rebuilds the KEK `id` from its stored form, if the record is authentic.
    pub fn open(&self, id: KekId, stored: &[u8]) -> Result<KeyEncryptionKey, MasterKeyError> {
        if stored.len() != KEK_RECORD_LEN || stored[0] != RECORD_VERSION {
            return Err(MasterKeyError::Malformed);
        }
        let created: [u8; 8] = stored[1..9]
            .try_into()
            .map_err(|_| MasterKeyError::Malformed)?;
        let aad = associated_data(&id, &created);
        let key = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(&stored[9..21]),
                    Payload {
                        msg: &stored[21..],
                        aad: &aad,
                    },
                )
                .map_err(|_| MasterKeyError::NotAuthentic)?,
        );
        let key: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| MasterKeyError::Malformed)?;
        Ok(KeyEncryptionKey::from_parts(
            id,
            key,
            u64::from_be_bytes(created),
        ))
    }
}

fn associated_data(id: &KekId, created: &[u8; 8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(RECORD_CONTEXT.len() + 24);
    aad.extend_from_slice(RECORD_CONTEXT);
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(created);
    aad
}

/// The master key records are sealed with, and while it is being replaced, the previous
/// one, which still opens records not yet re-sealed.
#[derive(Debug)]
pub struct MasterKeys {
    current: MasterKey,
    previous: Option<MasterKey>,
}

impl MasterKeys {
    pub fn new(current: MasterKey, previous: Option<MasterKey>) -> MasterKeys {
        MasterKeys { current, previous }
    }

    /// Both keys from their base64 forms (see [`MasterKey::from_base64`]).
    pub fn from_base64(
        current: &str,
        previous: Option<&str>,
    ) -> Result<MasterKeys, MasterKeyError> {
        Ok(MasterKeys {
            current: MasterKey::from_base64(current)?,
            previous: previous.map(MasterKey::from_base64).transpose()?,
        })
    }

    pub fn seal(&self, kek: &KeyEncryptionKey) -> Vec<u8> {
        self.current.seal(kek)
    }

    pub fn open(&self, id: KekId, stored: &[u8]) -> Result<KeyEncryptionKey, MasterKeyError> {
        match self.current.open(id, stored) {
            Err(MasterKeyError::NotAuthentic) => match &self.previous {
                Some(previous) => previous.open(id, stored),
                None => Err(MasterKeyError::NotAuthentic),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> MasterKey {
        MasterKey::from_base64(&STANDARD.encode([byte; 32])).unwrap()
    }

    #[test]
    fn seals_and_opens() {
        let kek = KeyEncryptionKey::generate(1234);
        let stored = master(1).seal(&kek);
        assert_eq!(stored.len(), KEK_RECORD_LEN);
        assert!(
            !stored.windows(32).any(|w| w == kek.key_bytes()),
            "the key is not stored in the clear"
        );
        let back = master(1).open(kek.id(), &stored).unwrap();
        assert_eq!(back.key_bytes(), kek.key_bytes());
        assert_eq!(back.created_at_ms(), 1234);
        assert_ne!(stored, master(1).seal(&kek), "a fresh nonce every time");
    }

    #[test]
    fn a_wrong_master_key_or_a_damaged_record_is_refused() {
        let kek = KeyEncryptionKey::generate(0);
        let stored = master(1).seal(&kek);
        assert_eq!(
            master(2).open(kek.id(), &stored).unwrap_err(),
            MasterKeyError::NotAuthentic
        );
        assert_eq!(
            master(1).open(kek.id(), &stored[1..]).unwrap_err(),
            MasterKeyError::Malformed
        );
    }

    #[test]
    fn creation_time_and_id_are_bound_in() {
        let kek = KeyEncryptionKey::generate(5_000);
        let stored = master(1).seal(&kek);
        // Pushing the creation time to the far future (so rotation never comes due).
        let mut later = stored.clone();
        later[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            master(1).open(kek.id(), &later).unwrap_err(),
            MasterKeyError::NotAuthentic
        );
        // Passing the record off as another key's.
        assert_eq!(
            master(1).open(KekId::random(), &stored).unwrap_err(),
            MasterKeyError::NotAuthentic
        );
        // Any flipped bit of the sealed part.
        for at in 9..KEK_RECORD_LEN {
            let mut flipped = stored.clone();
            flipped[at] ^= 1;
            assert!(master(1).open(kek.id(), &flipped).is_err(), "byte {at}");
        }
    }

    #[test]
    fn both_master_keys_open_while_replacing() {
        let kek = KeyEncryptionKey::generate(0);
        let old = master(1).seal(&kek);
        let keys = MasterKeys::new(master(2), Some(master(1)));
        assert!(keys.open(kek.id(), &old).is_ok());
        let new = keys.seal(&kek);
        assert!(master(2).open(kek.id(), &new).is_ok());
        assert!(MasterKeys::new(master(2), None)
            .open(kek.id(), &old)
            .is_err());
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
