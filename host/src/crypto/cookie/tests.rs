//! Cookie sealing tests: roundtrips, every refusal reason, tamper resistance, size budget.

use proptest::prelude::*;

use super::*;
use crate::crypto::KeyRing;
use crate::protocol::{SessionId, Token, HARD_MAX_CREDENTIAL_ID_LEN, HARD_MAX_TOKENS};

const RETENTION: u64 = 180_000;
/// `__Host-Http-o=` plus `; Path=/; Secure; HttpOnly; SameSite=Strict; Expires=…`, rounded up.
const NAME_AND_ATTRIBUTES: usize = 120;

fn token(credential_id: String, channel: String) -> Token {
    Token {
        credential_id,
        channel,
        code: "abc123xyz0".into(),
        created_at_ms: 1_795_730_853_000,
        expires_at_ms: 1_795_731_033_000,
        attempts_left: 3,
        resends_used: 0,
        resend_allowed_at_ms: 1_795_730_883_000,
        blocked_until_ms: 0,
        blocked: false,
    }
}

fn three_credentials() -> Session {
    Session {
        id: SessionId::random(),
        tokens: vec![
            token("alice@example.com".into(), "email".into()),
            token("+491701234567".into(), "sms".into()),
            token("alice".into(), "push".into()),
        ],
        current: 2,
    }
}

fn ring() -> KeyRing {
    KeyRing::new(0, RETENTION)
}

fn sealed(ring: &KeyRing) -> String {
    SessionCookie::seal_current(&three_credentials(), ring)
}

#[test]
fn roundtrip_three_credentials() {
    let ring = ring();
    let session = three_credentials();
    let cookie = SessionCookie::try_seal(&session, &ring.current()).expect("seals");
    assert!(cookie
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(SessionCookie::open(&cookie, &ring), Ok(session));
}

#[test]
fn each_seal_is_fresh() {
    let ring = ring();
    let session = three_credentials();
    let a = SessionCookie::seal_current(&session, &ring);
    let b = SessionCookie::seal_current(&session, &ring);
    assert_ne!(a, b);
    assert_eq!(
        SessionCookie::open(&a, &ring),
        SessionCookie::open(&b, &ring)
    );
}

#[test]
fn retired_keys_open_until_pruned() {
    let ring = ring();
    let value = sealed(&ring);
    ring.rotate(1_000);
    assert!(SessionCookie::open(&value, &ring).is_ok());
    ring.prune(1_000 + RETENTION + 1);
    assert_eq!(
        SessionCookie::open(&value, &ring),
        Err(CookieError::UnknownKey)
    );
}

#[test]
fn wrong_kek_is_unknown_key() {
    let value = sealed(&ring());
    assert_eq!(
        SessionCookie::open(&value, &ring()),
        Err(CookieError::UnknownKey)
    );
}

#[test]
fn same_id_other_key_bytes_is_unauthentic() {
    let original = ring();
    let value = sealed(&original);
    let id = original.current().id();
    let impostor = KeyRing::with_current(KeyEncryptionKey::from_parts(id, [9; 32], 0), RETENTION);
    assert_eq!(
        SessionCookie::open(&value, &impostor),
        Err(CookieError::Unauthentic)
    );
}

#[test]
fn authentic_garbage_is_corrupt() {
    let ring = ring();
    let value = seal_bytes(b"this is not a session", &ring.current()).expect("seals");
    assert_eq!(
        SessionCookie::open(&value, &ring),
        Err(CookieError::Corrupt(Some(SessionId::from_bytes(
            *b"this is not a se"
        ))))
    );
    let value = seal_bytes(b"short", &ring.current()).expect("seals");
    assert_eq!(
        SessionCookie::open(&value, &ring),
        Err(CookieError::Corrupt(None))
    );
    // An encoded session followed by junk is just as corrupt.
    let session = three_credentials();
    let mut bytes = encode_session(&session).expect("encodes");
    bytes.push(0);
    let value = seal_bytes(&bytes, &ring.current()).expect("seals");
    assert_eq!(
        SessionCookie::open(&value, &ring),
        Err(CookieError::Corrupt(Some(session.id)))
    );
}

#[test]
fn malformed_values() {
    let ring = ring();
    let value = sealed(&ring);
    let too_long = "A".repeat(MAX_COOKIE_VALUE_LEN + 1);
    let padded = format!("{value}=");
    let short = URL_SAFE_NO_PAD.encode([COOKIE_FORMAT_VERSION; ENVELOPE_LEN - 1]);
    let mut bytes = URL_SAFE_NO_PAD.decode(&value).expect("base64");
    bytes[0] = 2;
    let future_version = URL_SAFE_NO_PAD.encode(&bytes);
    let standard_alphabet = value.replace('-', "+").replace('_', "/");
    for bad in [
        "",
        "not base64!",
        too_long.as_str(),
        padded.as_str(),
        short.as_str(),
        future_version.as_str(),
    ] {
        assert_eq!(
            SessionCookie::open(bad, &ring),
            Err(CookieError::Malformed),
            "{bad:.40}"
        );
    }
    if standard_alphabet != value {
        assert_eq!(
            SessionCookie::open(&standard_alphabet, &ring),
            Err(CookieError::Malformed)
        );
    }
}

#[test]
fn cookie_at_the_default_caps_fits_in_4k() {
    let settings = Settings::default();
    let ring = ring();
    let session = Session {
        id: SessionId::random(),
        tokens: (0..settings.max_credentials)
            .map(|i| {
                let mut id = format!("{i}");
                id.push_str(&"x".repeat(settings.max_credential_id_len - id.len()));
                token(id, "c".repeat(settings.max_channel_len))
            })
            .collect(),
        current: 0,
    };
    let cookie = SessionCookie::try_seal(&session, &ring.current()).expect("seals");
    let header_len = "__Host-Http-o=".len() + cookie.len() + NAME_AND_ATTRIBUTES;
    assert!(header_len < 4096, "{header_len}");
    assert_eq!(cookie.len(), worst_case_cookie_value_len(&settings));
    assert_eq!(
        validate_cookie_budget(&settings, NAME_AND_ATTRIBUTES),
        Ok(())
    );
}

#[test]
fn oversized_settings_fail_the_budget() {
    let settings = Settings {
        max_credentials: HARD_MAX_TOKENS,
        max_credential_id_len: HARD_MAX_CREDENTIAL_ID_LEN,
        ..Settings::default()
    };
    assert!(validate_cookie_budget(&settings, NAME_AND_ATTRIBUTES).is_err());
    let settings = Settings {
        max_credentials: 8,
        ..Settings::default()
    };
    assert!(validate_cookie_budget(&settings, NAME_AND_ATTRIBUTES).is_err());
}

#[test]
fn seal_refuses_what_open_would_refuse() {
    let ring = ring();
    let huge = Session {
        id: SessionId::random(),
        tokens: (0..HARD_MAX_TOKENS)
            .map(|_| token("x".repeat(HARD_MAX_CREDENTIAL_ID_LEN), "sms".into()))
            .collect(),
        current: 0,
    };
    assert!(matches!(
        SessionCookie::try_seal(&huge, &ring.current()),
        Err(SealError::TooLarge(_))
    ));
    let empty = Session {
        tokens: Vec::new(),
        ..three_credentials()
    };
    assert!(matches!(
        SessionCookie::try_seal(&empty, &ring.current()),
        Err(SealError::Unencodable(_))
    ));
    // The infallible form degrades to an empty value, which opens as "no session".
    let value = SessionCookie::seal_current(&empty, &ring);
    assert_eq!(value, "");
    assert_eq!(
        SessionCookie::open(&value, &ring),
        Err(CookieError::Malformed)
    );
}

/// The base64url alphabet, for mutations that stay decodable.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_text_mutation_is_refused(
        at in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
        from_alphabet in any::<prop::sample::Index>(),
        use_alphabet in any::<bool>(),
    ) {
        let ring = ring();
        let value = sealed(&ring);
        let mut text = value.clone().into_bytes();
        let at = at.index(text.len());
        let new = if use_alphabet { ALPHABET[from_alphabet.index(ALPHABET.len())] } else { replacement };
        prop_assume!(text[at] != new);
        text[at] = new;
        let text = String::from_utf8_lossy(&text).into_owned();
        prop_assert!(SessionCookie::open(&text, &ring).is_err());
    }

    #[test]
    fn text_truncation_and_extension_are_refused(
        cut in any::<prop::sample::Index>(),
        extra in "[A-Za-z0-9_=+/-]{1,16}",
    ) {
        let ring = ring();
        let value = sealed(&ring);
        let cut = cut.index(value.len());
        prop_assert!(SessionCookie::open(&value[..cut], &ring).is_err());
        let extended = format!("{value}{extra}");
        prop_assert!(SessionCookie::open(&extended, &ring).is_err());
    }

    #[test]
    fn any_byte_mutation_is_refused(
        at in any::<prop::sample::Index>(),
        xor in 1u8..,
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 1..32),
    ) {
        let ring = ring();
        let bytes = URL_SAFE_NO_PAD.decode(sealed(&ring)).unwrap_or_default();

        let mut flipped = bytes.clone();
        let at = at.index(flipped.len());
        flipped[at] ^= xor;
        prop_assert!(SessionCookie::open(&URL_SAFE_NO_PAD.encode(&flipped), &ring).is_err());

        let cut = cut.index(bytes.len());
        prop_assert!(SessionCookie::open(&URL_SAFE_NO_PAD.encode(&bytes[..cut]), &ring).is_err());

        let mut extended = bytes.clone();
        extended.extend_from_slice(&extra);
        prop_assert!(SessionCookie::open(&URL_SAFE_NO_PAD.encode(&extended), &ring).is_err());
    }

    #[test]
    fn arbitrary_text_never_opens(text in ".{0,600}") {
        prop_assert!(SessionCookie::open(&text, &ring()).is_err());
    }

    #[test]
    fn arbitrary_envelopes_with_a_known_key_never_open(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let ring = ring();
        let mut bytes = vec![COOKIE_FORMAT_VERSION];
        bytes.extend_from_slice(ring.current().id().as_bytes());
        bytes.extend_from_slice(&body);
        prop_assert!(SessionCookie::open(&URL_SAFE_NO_PAD.encode(&bytes), &ring).is_err());
    }
}
