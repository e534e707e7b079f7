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

/// A rule of [`Settings`] that a value breaks: which field, and the rule in the field's
/// own unit (milliseconds for durations). The configuration layer names its settings
/// and their units from this; [`std::fmt::Display`] speaks the protocol's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsError {
    pub field: SettingsField,
    pub rule: Rule,
}

/// The fields [`Settings::validate`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsField {
    CodeLength,
    SessionMaxAge,
    MaxAttempts,
    BlockAtAttemptsLeft,
    BlockDuration,
    ResendCooldown,
    MaxCredentials,
    MaxCredentialIdLen,
    MaxChannelLen,
}

impl SettingsField {
    /// The field's name in [`Settings`].
    pub fn name(self) -> &'static str {
        match self {
            SettingsField::CodeLength => "code_length",
            SettingsField::SessionMaxAge => "session_max_age_ms",
            SettingsField::MaxAttempts => "max_attempts",
            SettingsField::BlockAtAttemptsLeft => "block_at_attempts_left",
            SettingsField::BlockDuration => "block_duration_ms",
            SettingsField::ResendCooldown => "resend_cooldown_ms",
            SettingsField::MaxCredentials => "max_credentials",
            SettingsField::MaxCredentialIdLen => "max_credential_id_len",
            SettingsField::MaxChannelLen => "max_channel_len",
        }
    }
}

/// What a value must be, in its field's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Between {
        min: u64,
        max: u64,
        got: u64,
    },
    AtMost {
        max: u64,
    },
    /// Below `max_attempts` (the temporary block starts after a wrong code).
    BelowMaxAttempts {
        max_attempts: u64,
        got: u64,
    },
    /// Positive while the temporary block is on.
    PositiveWhileBlocking,
}

impl Rule {
    /// The rule in words, durations given by `duration` (say, in seconds).
    pub fn describe(self, duration: impl Fn(u64) -> String) -> String {
        match self {
            Rule::Between { min, max, got } => format!(
                "must be between {} and {}, got {}",
                duration(min),
                duration(max),
                duration(got)
            ),
            Rule::AtMost { max } => format!("must be at most {}", duration(max)),
            Rule::BelowMaxAttempts { max_attempts, got } => {
                format!("({got}) must be below max_attempts ({max_attempts})")
            }
            Rule::PositiveWhileBlocking => {
                "must be positive when the temporary block is on".to_string()
            }
        }
    }
}

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}",
            self.field.name(),
            self.rule.describe(|n| n.to_string())
        )
    }
}

impl Settings {
    /// Rejects settings that are internally inconsistent or exceed what the cookie codec
    /// can carry, naming the offending field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |field, rule| Err(SettingsError { field, rule });
        let between = |field, min: u64, max: u64, got: u64| {
            if (min..=max).contains(&got) {
                Ok(())
            } else {
                fail(field, Rule::Between { min, max, got })
            }
        };
        let count = |n: usize| n as u64;
        between(
            SettingsField::CodeLength,
            count(MIN_CODE_LEN),
            count(HARD_MAX_CODE_LEN),
            count(self.code_length),
        )?;
        between(
            SettingsField::SessionMaxAge,
            1000,
            MAX_SESSION_AGE_MS,
            self.session_max_age_ms,
        )?;
        between(
            SettingsField::MaxAttempts,
            1,
            u64::from(u8::MAX),
            u64::from(self.max_attempts),
        )?;
        if self.block_at_attempts_left >= self.max_attempts {
            return fail(
                SettingsField::BlockAtAttemptsLeft,
                Rule::BelowMaxAttempts {
                    max_attempts: u64::from(self.max_attempts),
                    got: u64::from(self.block_at_attempts_left),
                },
            );
        }
        if self.block_at_attempts_left > 0 && self.block_duration_ms == 0 {
            return fail(SettingsField::BlockDuration, Rule::PositiveWhileBlocking);
        }
        for (field, ms) in [
            (SettingsField::BlockDuration, self.block_duration_ms),
            (SettingsField::ResendCooldown, self.resend_cooldown_ms),
        ] {
            if ms > MAX_SESSION_AGE_MS {
                return fail(
                    field,
                    Rule::AtMost {
                        max: MAX_SESSION_AGE_MS,
                    },
                );
            }
        }
        between(
            SettingsField::MaxCredentials,
            1,
            count(HARD_MAX_TOKENS),
            count(self.max_credentials),
        )?;
        between(
            SettingsField::MaxCredentialIdLen,
            1,
            count(HARD_MAX_CREDENTIAL_ID_LEN),
            count(self.max_credential_id_len),
        )?;
        between(
            SettingsField::MaxChannelLen,
            1,
            count(HARD_MAX_CHANNEL_LEN),
            count(self.max_channel_len),
        )
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
