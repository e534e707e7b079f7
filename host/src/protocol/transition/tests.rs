//! Transition tests. `now` is a plain argument, so the schedule is driven by arithmetic on
//! `T0` rather than by a clock.

use proptest::prelude::*;

use super::*;
use crate::protocol::code::SequentialCodeSource;

const T0: u64 = 1_795_730_853_000;

fn settings() -> Settings {
    Settings::default()
}

fn start(credential_id: &str) -> Transition {
    create(
        None,
        SessionId::random(),
        credential_id,
        "email",
        T0,
        &settings(),
        &mut SequentialCodeSource::new(),
    )
    .expect("valid create")
}

fn code_of(session: &Session) -> String {
    session
        .current_token()
        .map(|t| t.code.clone())
        .unwrap_or_default()
}

fn rejected(outcome: Result<VerifyOutcome, ProtocolError>) -> (Session, ProtocolError) {
    match outcome {
        Ok(VerifyOutcome::Rejected { session, error }) => (session, error),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn create_without_session_starts_one_token() {
    let id = SessionId::random();
    let t = create(
        None,
        id,
        "user@example.com",
        "email",
        T0,
        &settings(),
        &mut SequentialCodeSource::new(),
    )
    .expect("create");
    assert_eq!(t.session.id, id);
    assert_eq!(t.session.current, 0);
    assert_eq!(
        t.send,
        Some(SendCode {
            kind: SendKind::First,
            token: 0
        })
    );
    let token = &t.session.tokens[0];
    assert_eq!(token.credential_id, "user@example.com");
    assert_eq!(token.channel, "email");
    assert!(settings().alphabet.is_valid_code(&token.code, 10));
    assert_eq!(token.created_at_ms, T0);
    assert_eq!(token.expires_at_ms, T0 + 180_000);
    assert_eq!(token.attempts_left, 3);
    assert_eq!(token.resends_used, 0);
    assert_eq!(token.resend_allowed_at_ms, T0 + 30_000);
    assert_eq!(token.blocked_until_ms, 0);
    assert!(!token.blocked);
    assert_eq!(t.session.expires_at_ms(), T0 + 180_000);
    assert_eq!(t.state.expires_at_ms, T0 + 180_000);
    assert_eq!(t.state.resend_blocked_until_ms, Some(T0 + 30_000));
    assert_eq!(t.state.otp_blocked_until_ms, None);
    assert!(!t.state.blocked);
}

#[test]
fn create_rejects_bad_credentials() {
    let s = settings();
    let long_id = "x".repeat(321);
    let max_id = "x".repeat(320);
    let long_channel = "c".repeat(33);
    let max_channel = "c".repeat(32);
    for (credential, channel) in [
        ("", "email"),
        (long_id.as_str(), "email"),
        ("user", ""),
        ("user", long_channel.as_str()),
    ] {
        let result = create(
            None,
            SessionId::random(),
            credential,
            channel,
            T0,
            &s,
            &mut SequentialCodeSource::new(),
        );
        assert_eq!(result, Err(ProtocolError::InvalidCredential));
    }
    // The caps count bytes, so a multi-byte character can push an id over.
    let multibyte = "é".repeat(161);
    assert_eq!(
        create(
            None,
            SessionId::random(),
            &multibyte,
            "email",
            T0,
            &s,
            &mut SequentialCodeSource::new()
        ),
        Err(ProtocolError::InvalidCredential)
    );
    assert!(create(
        None,
        SessionId::random(),
        &max_id,
        &max_channel,
        T0,
        &s,
        &mut SequentialCodeSource::new()
    )
    .is_ok());
}

#[test]
fn create_for_present_credential_switches_without_new_code() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let first = create(None, SessionId::random(), "a", "email", T0, &s, &mut codes).expect("a");
    let second = create(
        Some(&first.session),
        SessionId::random(),
        "b",
        "sms",
        T0 + 1_000,
        &s,
        &mut codes,
    )
    .expect("b");
    assert_eq!(second.session.current, 1);
    assert_eq!(second.session.tokens.len(), 2);
    assert_eq!(second.send.map(|send| send.token), Some(1));

    let new_id = SessionId::random();
    let back = create(
        Some(&second.session),
        new_id,
        "a",
        "whatever-channel",
        T0 + 2_000,
        &s,
        &mut codes,
    )
    .expect("back to a");
    assert_eq!(back.session.id, new_id);
    assert_eq!(back.session.current, 0);
    assert_eq!(back.send, None);
    assert_eq!(back.session.tokens, second.session.tokens);
    assert_eq!(code_of(&back.session), code_of(&first.session));
    assert_eq!(back.state.expires_at_ms, T0 + 180_000);
}

#[test]
fn recreating_does_not_escape_blocks() {
    let s = settings();
    let t = start("a");
    let code = code_of(&t.session);
    let (after1, _) = rejected(verify(&t.session, SessionId::random(), "wrong", T0, &s));
    let (after2, _) = rejected(verify(&after1, SessionId::random(), "wrong", T0, &s));
    // Temporary block running.
    let again = create(
        Some(&after2),
        SessionId::random(),
        "a",
        "email",
        T0 + 1,
        &s,
        &mut SequentialCodeSource::new(),
    )
    .expect("recreate");
    assert_eq!(again.send, None);
    assert_eq!(again.state.otp_blocked_until_ms, Some(T0 + 20_000));
    assert!(matches!(
        verify(&again.session, SessionId::random(), &code, T0 + 2, &s),
        Err(ProtocolError::VerificationNotAllowed(_))
    ));
    // Hard block.
    let (after3, _) = rejected(verify(
        &after2,
        SessionId::random(),
        "wrong",
        T0 + 20_000,
        &s,
    ));
    let again = create(
        Some(&after3),
        SessionId::random(),
        "a",
        "email",
        T0 + 20_001,
        &s,
        &mut SequentialCodeSource::new(),
    )
    .expect("recreate");
    assert!(again.state.blocked);
    assert_eq!(again.send, None);
    assert!(matches!(
        verify(&again.session, SessionId::random(), &code, T0 + 20_002, &s),
        Err(ProtocolError::VerificationNotAllowed(state)) if state.blocked
    ));
}

#[test]
fn credential_cap_counts_live_tokens_only() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let mut session = None::<Session>;
    for (i, credential) in ["a", "b", "c"].into_iter().enumerate() {
        let t = create(
            session.as_ref(),
            SessionId::random(),
            credential,
            "email",
            T0 + i as u64 * 1_000,
            &s,
            &mut codes,
        )
        .expect("under the cap");
        session = Some(t.session);
    }
    let full = session.expect("session");
    assert_eq!(
        create(
            Some(&full),
            SessionId::random(),
            "d",
            "email",
            T0 + 5_000,
            &s,
            &mut codes
        ),
        Err(ProtocolError::TooManyCredentials)
    );
    // "a" expires at T0+180s; then "d" fits and "a" is gone.
    let t = create(
        Some(&full),
        SessionId::random(),
        "d",
        "email",
        T0 + 180_000,
        &s,
        &mut codes,
    )
    .expect("after a expired");
    let credentials: Vec<&str> = t
        .session
        .tokens
        .iter()
        .map(|token| token.credential_id.as_str())
        .collect();
    assert_eq!(credentials, ["b", "c", "d"]);
    assert_eq!(t.session.current, 2);
    assert_eq!(t.send.map(|send| send.token), Some(2));
}

#[test]
fn expired_credential_gets_a_fresh_token() {
    let s = settings();
    let t = start("a");
    let later = T0 + 180_000;
    let again = create(
        Some(&t.session),
        SessionId::random(),
        "a",
        "email",
        later,
        &s,
        &mut SequentialCodeSource::new(),
    )
    .expect("fresh");
    assert_eq!(again.session.tokens.len(), 1);
    assert_eq!(again.session.tokens[0].created_at_ms, later);
    assert_eq!(again.session.tokens[0].expires_at_ms, later + 180_000);
    assert!(again.send.is_some());
}

#[test]
fn resend_follows_cooldown_and_limit() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let t = create(None, SessionId::random(), "a", "email", T0, &s, &mut codes).expect("create");

    match resend(&t.session, SessionId::random(), T0 + 29_999, &s, &mut codes) {
        Err(ProtocolError::ResendNotAllowed(state)) => {
            assert_eq!(state.resend_blocked_until_ms, Some(T0 + 30_000))
        }
        other => panic!("{other:?}"),
    }

    let new_id = SessionId::random();
    let r = resend(&t.session, new_id, T0 + 30_000, &s, &mut codes).expect("resend");
    assert_eq!(r.session.id, new_id);
    assert_eq!(
        r.send,
        Some(SendCode {
            kind: SendKind::Resend,
            token: 0
        })
    );
    let token = &r.session.tokens[0];
    assert_ne!(token.code, t.session.tokens[0].code);
    assert_eq!(token.resends_used, 1);
    assert_eq!(token.resend_allowed_at_ms, T0 + 60_000);
    assert_eq!(token.expires_at_ms, T0 + 180_000);
    assert_eq!(token.attempts_left, 3);
    // Resends used up: blocked until expiry, cooldown or not.
    assert_eq!(r.state.resend_blocked_until_ms, Some(T0 + 180_000));
    match resend(&r.session, SessionId::random(), T0 + 90_000, &s, &mut codes) {
        Err(ProtocolError::ResendNotAllowed(state)) => {
            assert_eq!(state.resend_blocked_until_ms, Some(T0 + 180_000))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn resend_keeps_spent_attempts_and_old_code_stops_working() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let t = create(None, SessionId::random(), "a", "email", T0, &s, &mut codes).expect("create");
    let old_code = code_of(&t.session);
    let (after1, _) = rejected(verify(&t.session, SessionId::random(), "x", T0, &s));
    let r = resend(&after1, SessionId::random(), T0 + 30_000, &s, &mut codes).expect("resend");
    assert_eq!(r.session.tokens[0].attempts_left, 2);
    let (after2, error) = rejected(verify(
        &r.session,
        SessionId::random(),
        &old_code,
        T0 + 30_001,
        &s,
    ));
    assert!(matches!(error, ProtocolError::Incorrect(_)));
    assert_eq!(after2.tokens[0].attempts_left, 1);
}

#[test]
fn resend_refused_when_expired_or_blocked() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let t = start("a");
    assert_eq!(
        resend(
            &t.session,
            SessionId::random(),
            T0 + 180_000,
            &s,
            &mut codes
        ),
        Err(ProtocolError::Expired)
    );
    let blocked = block_current(t, T0, &s);
    match resend(
        &blocked.session,
        SessionId::random(),
        T0 + 40_000,
        &s,
        &mut codes,
    ) {
        Err(ProtocolError::ResendNotAllowed(state)) => {
            assert!(state.blocked);
            assert_eq!(state.resend_blocked_until_ms, Some(T0 + 180_000));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn resend_during_temporary_block_is_allowed() {
    let s = settings();
    let t = start("a");
    let (after1, _) = rejected(verify(
        &t.session,
        SessionId::random(),
        "x",
        T0 + 30_000,
        &s,
    ));
    let (after2, _) = rejected(verify(&after1, SessionId::random(), "x", T0 + 30_000, &s));
    let r = resend(
        &after2,
        SessionId::random(),
        T0 + 30_001,
        &s,
        &mut SequentialCodeSource::new(),
    )
    .expect("resend");
    assert_eq!(r.session.tokens[0].blocked_until_ms, T0 + 50_000);
    assert_eq!(r.state.otp_blocked_until_ms, Some(T0 + 50_000));
}

#[test]
fn undeliverable_resend_hard_blocks() {
    let s = settings();
    let t = start("a");
    let r = resend(
        &t.session,
        SessionId::random(),
        T0 + 30_000,
        &s,
        &mut SequentialCodeSource::new(),
    )
    .expect("resend");
    let id = r.session.id;
    let blocked = block_current(r, T0 + 30_000, &s);
    assert_eq!(blocked.session.id, id);
    assert_eq!(blocked.send, None);
    assert!(blocked.session.tokens[0].blocked);
    assert!(blocked.state.blocked);
    let code = code_of(&blocked.session);
    assert!(matches!(
        verify(&blocked.session, SessionId::random(), &code, T0 + 30_001, &s),
        Err(ProtocolError::VerificationNotAllowed(state)) if state.blocked
    ));
}

#[test]
fn correct_code_verifies() {
    let s = settings();
    let t = start("user@example.com");
    let code = code_of(&t.session);
    assert_eq!(
        verify(&t.session, SessionId::random(), &code, T0 + 179_999, &s),
        Ok(VerifyOutcome::Verified {
            credential_id: "user@example.com".into(),
            channel: "email".into()
        })
    );
}

#[test]
fn verify_acts_on_the_current_token_only() {
    let s = settings();
    let mut codes = SequentialCodeSource::new();
    let a = create(None, SessionId::random(), "a", "email", T0, &s, &mut codes).expect("a");
    let code_a = code_of(&a.session);
    let b = create(
        Some(&a.session),
        SessionId::random(),
        "b",
        "sms",
        T0,
        &s,
        &mut codes,
    )
    .expect("b");
    let (after, _) = rejected(verify(&b.session, SessionId::random(), &code_a, T0, &s));
    assert_eq!(after.tokens[0].attempts_left, 3);
    assert_eq!(after.tokens[1].attempts_left, 2);
}

#[test]
fn default_schedule() {
    let s = settings();
    let t = start("a");
    let code = code_of(&t.session);

    // wrong #1: two attempts left, no block.
    let id1 = SessionId::random();
    let (s1, e1) = rejected(verify(&t.session, id1, "wrongwrong", T0 + 1_000, &s));
    assert_eq!(s1.id, id1);
    assert_eq!(s1.tokens[0].attempts_left, 2);
    assert!(matches!(e1, ProtocolError::Incorrect(state) if state.otp_blocked_until_ms.is_none()));

    // wrong #2: one attempt left, 20 s temporary block.
    let (s2, e2) = rejected(verify(
        &s1,
        SessionId::random(),
        "wrongwrong",
        T0 + 2_000,
        &s,
    ));
    assert_eq!(s2.tokens[0].attempts_left, 1);
    assert_eq!(s2.tokens[0].blocked_until_ms, T0 + 22_000);
    match &e2 {
        ProtocolError::Incorrect(state) => {
            assert_eq!(state.otp_blocked_until_ms, Some(T0 + 22_000));
            assert!(!state.blocked);
        }
        other => panic!("{other:?}"),
    }

    // During the block even the right code is refused, and nothing is spent.
    match verify(&s2, SessionId::random(), &code, T0 + 21_999, &s) {
        Err(ProtocolError::VerificationNotAllowed(state)) => {
            assert_eq!(state.otp_blocked_until_ms, Some(T0 + 22_000));
            assert!(!state.blocked);
        }
        other => panic!("{other:?}"),
    }

    // After the block the right code still works...
    assert!(matches!(
        verify(&s2, SessionId::random(), &code, T0 + 22_000, &s),
        Ok(VerifyOutcome::Verified { .. })
    ));

    // ...but wrong #3 hard-blocks.
    let (s3, e3) = rejected(verify(
        &s2,
        SessionId::random(),
        "wrongwrong",
        T0 + 22_000,
        &s,
    ));
    assert_eq!(s3.tokens[0].attempts_left, 0);
    assert!(s3.tokens[0].blocked);
    match &e3 {
        ProtocolError::TooManyAttempts(state) => {
            assert!(state.blocked);
            assert_eq!(state.otp_blocked_until_ms, None);
            assert_eq!(state.resend_blocked_until_ms, Some(T0 + 180_000));
        }
        other => panic!("{other:?}"),
    }

    // Then nothing is allowed any more.
    assert!(matches!(
        verify(&s3, SessionId::random(), &code, T0 + 100_000, &s),
        Err(ProtocolError::VerificationNotAllowed(state)) if state.blocked
    ));
    assert_eq!(
        verify(&s3, SessionId::random(), &code, T0 + 180_000, &s),
        Err(ProtocolError::Expired)
    );
}

#[test]
fn expired_token_cannot_be_verified() {
    let s = settings();
    let t = start("a");
    let code = code_of(&t.session);
    assert_eq!(
        verify(&t.session, SessionId::random(), &code, T0 + 180_000, &s),
        Err(ProtocolError::Expired)
    );
}

#[test]
fn temporary_block_can_be_disabled() {
    let s = Settings {
        block_at_attempts_left: 0,
        ..settings()
    };
    let t = start("a");
    let (s1, _) = rejected(verify(&t.session, SessionId::random(), "x", T0, &s));
    let (s2, e2) = rejected(verify(&s1, SessionId::random(), "x", T0, &s));
    assert_eq!(s2.tokens[0].blocked_until_ms, 0);
    assert!(matches!(e2, ProtocolError::Incorrect(_)));
    let (_, e3) = rejected(verify(&s2, SessionId::random(), "x", T0, &s));
    assert!(matches!(e3, ProtocolError::TooManyAttempts(_)));
}

#[test]
fn sessions_without_a_current_token_are_expired_not_panics() {
    let s = settings();
    let mut session = start("a").session;
    session.current = 7;
    let mut codes = SequentialCodeSource::new();
    assert_eq!(
        verify(&session, SessionId::random(), "x", T0, &s),
        Err(ProtocolError::Expired)
    );
    assert_eq!(
        resend(&session, SessionId::random(), T0 + 40_000, &s, &mut codes),
        Err(ProtocolError::Expired)
    );
    let unchanged = block_current(
        Transition {
            session: session.clone(),
            send: None,
            state: SessionState::of(&session.tokens[0], T0, &s),
        },
        T0,
        &s,
    );
    assert!(!unchanged.session.tokens[0].blocked);
    // Creating from such a session still works: it only reads the token list.
    assert!(create(
        Some(&session),
        SessionId::random(),
        "b",
        "email",
        T0,
        &s,
        &mut codes
    )
    .is_ok());
}

#[derive(Debug, Clone)]
enum Step {
    Create(u8),
    Resend,
    VerifyRight,
    VerifyWrong,
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..6).prop_map(Step::Create),
        Just(Step::Resend),
        Just(Step::VerifyRight),
        Just(Step::VerifyWrong),
        (0u64..60_000).prop_map(Step::Advance),
    ]
}

proptest! {
    /// Random request sequences: nothing panics and the invariants the product promises
    /// hold after every step.
    #[test]
    fn invariants_hold_for_any_request_sequence(steps in prop::collection::vec(step(), 1..60)) {
        let s = settings();
        let mut codes = SequentialCodeSource::new();
        let mut now = T0;
        let mut session: Option<Session> = None;
        for step in steps {
            let before = session.clone();
            match step {
                Step::Advance(ms) => now += ms,
                Step::Create(n) => {
                    let credential = format!("user{n}");
                    if let Ok(t) = create(session.as_ref(), SessionId::random(), &credential, "email", now, &s, &mut codes) {
                        prop_assert_eq!(t.session.current_token().map(|t| t.credential_id.as_str()), Some(credential.as_str()));
                        session = Some(t.session);
                    }
                }
                Step::Resend => {
                    if let Some(current) = session.as_ref() {
                        if let Ok(t) = resend(current, SessionId::random(), now, &s, &mut codes) {
                            session = Some(t.session);
                        }
                    }
                }
                Step::VerifyRight | Step::VerifyWrong => {
                    if let Some(current) = session.as_ref() {
                        let code = if matches!(step, Step::VerifyRight) { code_of(current) } else { "nope".into() };
                        match verify(current, SessionId::random(), &code, now, &s) {
                            Ok(VerifyOutcome::Verified { .. }) => {
                                let token = current.current_token().expect("verified token");
                                prop_assert!(!token.blocked && !token.is_temporarily_blocked(now) && !token.is_expired(now));
                                session = None;
                            }
                            Ok(VerifyOutcome::Rejected { session: next, .. }) => session = Some(next),
                            Err(_) => {}
                        }
                    }
                }
            }
            if let Some(current) = session.as_ref() {
                prop_assert!(current.tokens.len() <= s.max_credentials);
                prop_assert!(current.current < current.tokens.len());
                for token in &current.tokens {
                    prop_assert!(token.attempts_left <= s.max_attempts);
                    prop_assert!(token.resends_used <= s.max_resends);
                    prop_assert_eq!(token.expires_at_ms, token.created_at_ms + s.session_max_age_ms);
                    prop_assert_eq!(token.blocked, token.attempts_left == 0);
                    // A token carried over from the previous state keeps its block and expiry.
                    if let Some(old) = before.as_ref().and_then(|b| b.tokens.iter().find(|t| t.credential_id == token.credential_id && t.created_at_ms == token.created_at_ms)) {
                        prop_assert!(!old.blocked || token.blocked);
                        prop_assert!(token.attempts_left <= old.attempts_left);
                        prop_assert_eq!(token.expires_at_ms, old.expires_at_ms);
                    }
                }
            }
        }
    }
}
