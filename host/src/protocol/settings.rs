//! Tunable rules of the protocol, with the product defaults.
//!
//! The HTTP layer builds [`Settings`] from its configuration and must call
//! [`Settings::validate`] before serving; the transitions assume validated settings (they
//! never panic on bad ones, but the rules would stop making sense).

use super::code::Alphabet;
use super::session::{
    HARD_MAX_CHANNEL_LEN, HARD_MAX_CODE_LEN, HARD_MAX_CREDENTIAL_ID_LEN, HARD_MAX_TOKENS,
};

/// Shortest code accepted by [`Settings::validate`]: below this even three guesses have a
/// real chance of success.
const MIN_CODE_LEN: usize = 4;
/// Sessions live for minutes; a day-long session would mean a day-long KEK retention and
/// id TTLs, which is a configuration mistake rather than a use case.
const MAX_SESSION_AGE_MS: u64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub code_length: usize,
    pub alphabet: Alphabet,
    /// Lifetime of each token, fixed when it is created.
    pub session_max_age_ms: u64,
    pub max_attempts: u8,
    /// When a wrong code leaves exactly this many attempts, verification is paused for
    /// `block_duration_ms`. 0 disables the temporary block.
    pub block_at_attempts_left: u8,
    pub block_duration_ms: u64,
    pub resend_cooldown_ms: u64,
    pub max_resends: u8,
    pub max_credentials: usize,
    /// In bytes (UTF-8), like every length cap here: they exist to bound the cookie size.
    pub max_credential_id_len: usize,
    pub max_channel_len: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            code_length: 10,
            alphabet: Alphabet::LowerAlnum,
            session_max_age_ms: 180_000,
            max_attempts: 3,
            block_at_attempts_left: 1,
            block_duration_ms: 20_000,
            resend_cooldown_ms: 30_000,
            max_resends: 1,
            max_credentials: 3,
            max_credential_id_len: 320,
            max_channel_len: 32,
        }
    }
}

impl Settings {
    /// Rejects settings that are internally inconsistent or exceed what the cookie codec
    /// can carry. The message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(MIN_CODE_LEN..=HARD_MAX_CODE_LEN).contains(&self.code_length) {
            return Err(format!(
                "code_length must be between {MIN_CODE_LEN} and {HARD_MAX_CODE_LEN}, got {}",
                self.code_length
            ));
        }
        if !(1000..=MAX_SESSION_AGE_MS).contains(&self.session_max_age_ms) {
            return Err(format!(
                "session_max_age_ms must be between 1000 and {MAX_SESSION_AGE_MS}, got {}",
                self.session_max_age_ms
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.block_at_attempts_left >= self.max_attempts {
            return Err(format!(
                "block_at_attempts_left ({}) must be below max_attempts ({})",
                self.block_at_attempts_left, self.max_attempts
            ));
        }
        if self.block_at_attempts_left > 0 && self.block_duration_ms == 0 {
            return Err("block_duration_ms must be positive when the temporary block is on".into());
        }
        if self.block_duration_ms > MAX_SESSION_AGE_MS {
            return Err(format!(
                "block_duration_ms must be at most {MAX_SESSION_AGE_MS}"
            ));
        }
        if self.resend_cooldown_ms > MAX_SESSION_AGE_MS {
            return Err(format!(
                "resend_cooldown_ms must be at most {MAX_SESSION_AGE_MS}"
            ));
        }
        if !(1..=HARD_MAX_TOKENS).contains(&self.max_credentials) {
            return Err(format!(
                "max_credentials must be between 1 and {HARD_MAX_TOKENS}, got {}",
                self.max_credentials
            ));
        }
        if !(1..=HARD_MAX_CREDENTIAL_ID_LEN).contains(&self.max_credential_id_len) {
            return Err(format!(
                "max_credential_id_len must be between 1 and {HARD_MAX_CREDENTIAL_ID_LEN}, got {}",
                self.max_credential_id_len
            ));
        }
        if !(1..=HARD_MAX_CHANNEL_LEN).contains(&self.max_channel_len) {
            return Err(format!(
                "max_channel_len must be between 1 and {HARD_MAX_CHANNEL_LEN}, got {}",
                self.max_channel_len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Settings::default().validate(), Ok(()));
    }

    #[test]
    fn nonsense_is_rejected() {
        let bad: Vec<fn(&mut Settings)> = vec![
            |s| s.code_length = 3,
            |s| s.code_length = 65,
            |s| s.session_max_age_ms = 0,
            |s| s.session_max_age_ms = MAX_SESSION_AGE_MS + 1,
            |s| s.max_attempts = 0,
            |s| s.block_at_attempts_left = 3,
            |s| s.block_duration_ms = 0,
            |s| s.block_duration_ms = u64::MAX,
            |s| s.resend_cooldown_ms = u64::MAX,
            |s| s.max_credentials = 0,
            |s| s.max_credentials = HARD_MAX_TOKENS + 1,
            |s| s.max_credential_id_len = 0,
            |s| s.max_credential_id_len = HARD_MAX_CREDENTIAL_ID_LEN + 1,
            |s| s.max_channel_len = 0,
            |s| s.max_channel_len = 256,
        ];
        for (index, mutate) in bad.into_iter().enumerate() {
            let mut settings = Settings::default();
            mutate(&mut settings);
            assert!(settings.validate().is_err(), "case {index} accepted");
        }
    }

    #[test]
    fn edge_values_are_accepted() {
        let settings = Settings {
            code_length: 4,
            alphabet: Alphabet::Digits,
            max_attempts: 1,
            block_at_attempts_left: 0,
            block_duration_ms: 0,
            max_resends: 0,
            resend_cooldown_ms: 0,
            max_credentials: HARD_MAX_TOKENS,
            ..Settings::default()
        };
        assert_eq!(settings.validate(), Ok(()));
    }
}
