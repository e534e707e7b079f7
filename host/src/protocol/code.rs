//! One-time codes: their alphabet, how they are generated and how they are compared.
//!
//! Generation sits behind the [`CodeSource`] trait so the state machine stays deterministic
//! under test while production draws from the OS CSPRNG via [`OsCodeSource`] (through
//! [`crate::os_random`]).

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The characters a code is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alphabet {
    /// `a–z0–9`: 36 symbols, about 5.17 bits per character.
    #[default]
    LowerAlnum,
    /// `0–9`: for channels where users type on a numeric keypad.
    Digits,
}

impl Alphabet {
    pub fn chars(&self) -> &'static str {
        match self {
            Alphabet::LowerAlnum => "abcdefghijklmnopqrstuvwxyz0123456789",
            Alphabet::Digits => "0123456789",
        }
    }

    /// Whether `s` could have been generated with this alphabet and length.
    pub fn is_valid_code(&self, s: &str, len: usize) -> bool {
        let chars = self.chars().as_bytes();
        s.len() == len && s.bytes().all(|b| chars.contains(&b))
    }
}

/// Where new codes come from.
pub trait CodeSource {
    fn generate(&mut self, alphabet: Alphabet, len: usize) -> String;
}

/// Uniformly random codes from the operating system's CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsCodeSource;

impl CodeSource for OsCodeSource {
    fn generate(&mut self, alphabet: Alphabet, len: usize) -> String {
        let chars = alphabet.chars().as_bytes();
        let symbols = chars.len();
        // Rejection sampling: a byte is only used if it falls below the largest multiple of
        // the alphabet size, so `byte % symbols` is uniform (no modulo bias). At most 16 of
        // 256 byte values are rejected for any alphabet here, so one batch nearly always
        // suffices and we make one getrandom call per code instead of one per character.
        let accept_below = 256 - (256 % symbols);
        let mut code = String::with_capacity(len);
        let mut batch = [0u8; 64];
        while code.len() < len {
            crate::os_random::fill(&mut batch);
            for &byte in &batch {
                if code.len() == len {
                    break;
                }
                if usize::from(byte) < accept_below {
                    if let Some(&c) = chars.get(usize::from(byte) % symbols) {
                        code.push(char::from(c));
                    }
                }
            }
        }
        // The bytes that made the code, and those left over, go with it.
        zeroize::Zeroize::zeroize(&mut batch);
        code
    }
}

/// Deterministic codes for tests: the n-th call returns n written in the alphabet's base,
/// left-padded with the alphabet's first symbol, so consecutive codes always differ.
#[derive(Debug, Clone, Default)]
pub struct SequentialCodeSource {
    next: u64,
}

impl SequentialCodeSource {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CodeSource for SequentialCodeSource {
    fn generate(&mut self, alphabet: Alphabet, len: usize) -> String {
        self.next = self.next.wrapping_add(1);
        let chars = alphabet.chars().as_bytes();
        let base = chars.len() as u64;
        let mut value = self.next;
        let mut reversed = Vec::with_capacity(len);
        for _ in 0..len {
            let digit = (value % base) as usize;
            reversed.push(chars.get(digit).copied().unwrap_or(b'0'));
            value /= base;
        }
        reversed.iter().rev().map(|&b| char::from(b)).collect()
    }
}

/// Compares a submitted code with the expected one without leaking, through timing, how
/// many leading characters were right. Lengths are public (the alphabet and length are
/// configuration), so comparing them first reveals nothing.
pub fn codes_match(expected: &str, submitted: &str) -> bool {
    expected.len() == submitted.len() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn os_codes_have_the_right_shape() {
        for alphabet in [Alphabet::LowerAlnum, Alphabet::Digits] {
            for len in [4, 10, 64, 200] {
                let code = OsCodeSource.generate(alphabet, len);
                assert!(alphabet.is_valid_code(&code, len), "{alphabet:?} {len}");
            }
        }
    }

    #[test]
    fn os_codes_cover_the_whole_alphabet() {
        // 36 symbols over 3600 draws: the chance a given symbol never appears is ~e^-100.
        let code = OsCodeSource.generate(Alphabet::LowerAlnum, 3600);
        for c in Alphabet::LowerAlnum.chars().chars() {
            assert!(code.contains(c), "{c} never drawn");
        }
    }

    #[test]
    fn os_codes_differ() {
        let a = OsCodeSource.generate(Alphabet::LowerAlnum, 10);
        let b = OsCodeSource.generate(Alphabet::LowerAlnum, 10);
        assert_ne!(a, b);
    }

    #[test]
    fn sequential_codes_are_distinct_and_valid() {
        let mut source = SequentialCodeSource::new();
        let first = source.generate(Alphabet::Digits, 6);
        let second = source.generate(Alphabet::Digits, 6);
        assert_eq!(first, "000001");
        assert_eq!(second, "000002");
        let alnum = source.generate(Alphabet::LowerAlnum, 10);
        assert!(Alphabet::LowerAlnum.is_valid_code(&alnum, 10));
    }

    #[test]
    fn code_validation() {
        assert!(Alphabet::LowerAlnum.is_valid_code("abc123xyz0", 10));
        assert!(!Alphabet::LowerAlnum.is_valid_code("ABC123XYZ0", 10));
        assert!(!Alphabet::LowerAlnum.is_valid_code("abc123xyz", 10));
        assert!(!Alphabet::Digits.is_valid_code("12345a", 6));
        assert!(!Alphabet::Digits.is_valid_code("１２３４", 4));
        assert!(Alphabet::Digits.is_valid_code("123456", 6));
    }

    #[test]
    fn alphabet_config_names() {
        assert_eq!(
            serde_json::to_string(&Alphabet::LowerAlnum).ok().as_deref(),
            Some("\"lower-alnum\"")
        );
        assert_eq!(
            serde_json::from_str::<Alphabet>("\"digits\"").ok(),
            Some(Alphabet::Digits)
        );
    }

    proptest! {
        #[test]
        fn codes_match_is_equality(a in "[a-z0-9]{0,12}", b in "[a-z0-9]{0,12}") {
            prop_assert_eq!(codes_match(&a, &b), a == b);
        }
    }
}
