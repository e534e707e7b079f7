//! Unit tests of the checks with the memory store on a manual clock, a store that fails
//! (fail closed / fail open), and one that makes the id changes charges carry.

use super::memory::MemoryLimiterStore;
use super::*;
use crate::clock::ManualClock;
use zeroize::Zeroizing;

fn limits(config: LimitsConfig) -> (Arc<ManualClock>, Limits) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = Arc::new(MemoryLimiterStore::new(clock.clone(), 1 << 16));
    (clock, Limits::new(config, hasher(), store))
}

fn policy<T: std::fmt::Debug>(result: Result<T, LimitError>) -> &'static str {
    match result {
        Err(LimitError::Limited(answer)) => answer.policy,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn five_sends_per_credential_then_429_until_the_window_passes() {
    let (clock, limits) = limits(LimitsConfig::default());
    let ip = Some("192.0.2.1");
    for _ in 0..5 {
        limits
            .before_send(ip, "bob", Some("default"), None)
            .await
            .unwrap();
    }
    let Err(LimitError::Limited(answer)) =
        limits.before_send(ip, "bob", Some("default"), None).await
    else {
        panic!("the sixth send is refused");
    };
    assert_eq!(answer.policy, "sends-per-credential");
    assert_eq!((answer.quota, answer.window_secs), (5, 600));
    assert_eq!(answer.retry_after_secs, 120);
    // From another network the credential's budget is just as spent.
    assert_eq!(
        policy(
            limits
                .before_send(Some("198.51.100.9"), "bob", Some("default"), None)
                .await
        ),
        "sends-per-credential"
    );
    clock.advance(600_000);
    for _ in 0..5 {
        limits
            .before_send(ip, "bob", Some("default"), None)
            .await
            .unwrap();
    }
    assert_eq!(limits.counters().rate_limited.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_send_that_sent_nothing_gives_its_send_budgets_back_but_not_the_request() {
    let config = LimitsConfig {
        requests_per_network: Some(gcra::Rate::per(5, 60_000)),
        ..LimitsConfig::default()
    };
    let (_clock, limits) = limits(config);
    let ip = Some("192.0.2.1");
    // Five sends that never left (a provider outage) cost bob none of his five.
    for _ in 0..5 {
        let charge = limits
            .before_send(ip, "bob", Some("default"), None)
            .await
            .unwrap();
        limits.after_unsent(charge).await;
    }
    for _ in 0..5 {
        let _ = limits
            .before_send(Some("198.51.100.2"), "bob", Some("default"), None)
            .await
            .unwrap();
    }
    assert_eq!(
        policy(
            limits
                .before_send(Some("198.51.100.3"), "bob", Some("default"), None)
                .await
        ),
        "sends-per-credential"
    );
    // Each of them still counted as a request of its network: a sixth is one too many.
    assert_eq!(
        policy(limits.before_request(ip).await),
        "requests-per-network"
    );
}

/// The memory store, counting the charges that reach it.
struct CountingStore {
    inner: MemoryLimiterStore,
    charges: AtomicU64,
}

#[async_trait::async_trait]
impl LimiterStore for CountingStore {
    async fn charge(&self, c: &[Check], f: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        self.charges.fetch_add(1, Ordering::Relaxed);
        self.inner.charge(c, f).await
    }
    async fn settle(&self, r: &[Check], v: Option<LimiterKey>) -> Result<(), StoreError> {
        self.inner.settle(r, v).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_network_out_of_requests_is_refused_first_thing_without_asking_the_store() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = Arc::new(CountingStore {
        inner: MemoryLimiterStore::new(clock, 1 << 16),
        charges: AtomicU64::new(0),
    });
    let config = LimitsConfig {
        requests_per_network: Some(gcra::Rate::per(3, 3_600_000)),
        ..LimitsConfig::default()
    };
    let spent = Limits::new(config, hasher(), store.clone());
    let ip = Some("192.0.2.1");
    spent.before_anything(ip).unwrap();
    for _ in 0..3 {
        spent.before_request(ip).await.unwrap();
    }
    assert_eq!(
        policy(spent.before_request(ip).await),
        "requests-per-network"
    );
    let asked = store.charges.load(Ordering::Relaxed);
    let Err(LimitError::Limited(answer)) = spent.before_anything(ip) else {
        panic!("the spent network is refused first thing");
    };
    assert_eq!(answer.policy, "requests-per-network");
    // The Retry-After it was given, still counting down (about 20 minutes).
    assert!(
        (1_100..=1_200).contains(&answer.retry_after_secs),
        "{answer:?}"
    );
    assert_eq!(
        store.charges.load(Ordering::Relaxed),
        asked,
        "no store call"
    );
    // Another network, and the spent one's neighbour, are not affected.
    spent.before_anything(Some("192.0.2.2")).unwrap();
    spent.before_request(Some("192.0.2.2")).await.unwrap();
    // A refusal by another budget is not remembered.
    let (_, limits) = limits(LimitsConfig::default());
    for _ in 0..5 {
        let _ = limits
            .before_send(ip, "dana", Some("default"), None)
            .await
            .unwrap();
    }
    let refused = limits.before_send(ip, "dana", Some("default"), None).await;
    assert_eq!(policy(refused), "sends-per-credential");
    limits.before_anything(ip).unwrap();
}

#[tokio::test]
async fn a_network_spraying_credentials_is_capped_and_others_are_not() {
    let (_clock, limits) = limits(LimitsConfig::default());
    let attacker = Some("203.0.113.5");
    let mut sent = 0;
    for n in 0..100 {
        if limits
            .before_send(attacker, &format!("victim{n}"), Some("default"), None)
            .await
            .is_ok()
        {
            sent += 1;
        }
    }
    assert_eq!(sent, 10, "the burst of sends per network");
    limits
        .before_send(Some("203.0.113.6"), "victim0", Some("default"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn failures_are_reserved_and_refunded_and_never_keyed_on_the_credential_alone() {
    let (_clock, limits) = limits(LimitsConfig::default());
    let attacker = Some("203.0.113.5");
    for _ in 0..10 {
        let (reservation, _) = limits.before_verify(attacker, "bob", None).await.unwrap();
        limits.after_verify(reservation, GuessOutcome::Failed).await;
    }
    assert!(matches!(
        limits.before_verify(attacker, "bob", None).await,
        Err(LimitError::Limited(RateLimited {
            policy: "failed-verifications-per-credential-network",
            ..
        }))
    ));
    // The owner on another network is unaffected.
    let (reservation, _) = limits
        .before_verify(Some("198.51.100.1"), "bob", None)
        .await
        .unwrap();
    limits
        .after_verify(reservation, GuessOutcome::Verified)
        .await;
    // Right guesses and non-guesses give the reservation back.
    for _ in 0..50 {
        let (reservation, _) = limits
            .before_verify(Some("198.51.100.2"), "carol", None)
            .await
            .unwrap();
        limits
            .after_verify(reservation, GuessOutcome::NoGuess)
            .await;
        let (reservation, _) = limits
            .before_verify(Some("198.51.100.2"), "carol", None)
            .await
            .unwrap();
        limits
            .after_verify(reservation, GuessOutcome::Verified)
            .await;
    }
}

#[tokio::test]
async fn safe_lists_groups_and_switching_off() {
    let config = LimitsConfig {
        safe_credentials: vec!["+15550000000".into()],
        safe_networks: vec!["10.1.0.0/16".parse().unwrap()],
        deny_groups: vec!["sms:+7".into(), "sms:+99*".into()],
        ..LimitsConfig::default()
    };
    let (_clock, limits) = limits(config);
    for _ in 0..50 {
        limits
            .before_send(Some("192.0.2.1"), "+15550000000", Some("sms:+1"), None)
            .await
            .unwrap();
        limits
            .before_send(Some("10.1.2.3"), "alice", Some("sms:+1"), None)
            .await
            .unwrap();
    }
    for group in ["sms:+7", "sms:+991"] {
        assert!(matches!(
            limits
                .before_send(Some("10.1.2.3"), "x", Some(group), None)
                .await,
            Err(LimitError::NotAllowed)
        ));
    }
    limits.check_group("sms:+77").unwrap();
    let allow_only = LimitsConfig {
        allow_groups: vec!["email:*".into()],
        ..LimitsConfig::default()
    };
    let (_clock, limits) = limits_with(allow_only);
    limits.check_group("email:example.com").unwrap();
    assert!(limits.check_group("sms:+44").is_err());
    let (_clock, off) = limits_with(LimitsConfig {
        enabled: false,
        ..LimitsConfig::default()
    });
    for _ in 0..200 {
        off.before_request(Some("192.0.2.1")).await.unwrap();
        off.before_send(Some("192.0.2.1"), "bob", Some("x"), None)
            .await
            .unwrap();
    }
}

fn limits_with(config: LimitsConfig) -> (Arc<ManualClock>, Limits) {
    limits(config)
}

#[tokio::test]
async fn requests_per_network_and_unknown_addresses_share_a_budget() {
    let (clock, limits) = limits(LimitsConfig::default());
    for _ in 0..120 {
        limits.before_request(None).await.unwrap();
    }
    assert_eq!(
        policy(limits.before_request(Some("garbage")).await),
        "requests-per-network"
    );
    limits.before_request(Some("192.0.2.1")).await.unwrap();
    clock.advance(500);
    limits.before_request(None).await.unwrap();
}

struct FailingStore;

#[async_trait::async_trait]
impl LimiterStore for FailingStore {
    async fn charge(&self, _: &[Check], _: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn settle(&self, _: &[Check], _: Option<LimiterKey>) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
}

/// A store whose charges fail and whose settlements are counted.
#[derive(Default)]
struct ChargesFailStore {
    settled: AtomicU64,
}

#[async_trait::async_trait]
impl LimiterStore for ChargesFailStore {
    async fn charge(&self, _: &[Check], _: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        Err(StoreError::Unavailable("down".into()))
    }
    async fn settle(&self, _: &[Check], _: Option<LimiterKey>) -> Result<(), StoreError> {
        self.settled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn served_without_limits_a_request_gives_back_nothing_it_never_took() {
    let store = Arc::new(ChargesFailStore::default());
    let open = Limits::new(
        LimitsConfig {
            fail_open: true,
            ..LimitsConfig::default()
        },
        hasher(),
        store.clone(),
    );
    let ip = Some("192.0.2.1");
    let (reservation, _) = open.before_verify(ip, "bob", None).await.unwrap();
    open.after_verify(reservation, GuessOutcome::NoGuess).await;
    let charge = open.before_send(ip, "bob", Some("g"), None).await.unwrap();
    open.after_unsent(charge).await;
    assert_eq!(store.settled.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_failing_store_fails_closed_or_open() {
    let hasher = || KeyHasher::new(Zeroizing::new([1; 32]));
    let closed = Limits::new(LimitsConfig::default(), hasher(), Arc::new(FailingStore));
    assert!(matches!(
        closed.before_request(Some("192.0.2.1")).await,
        Err(LimitError::Unavailable(_))
    ));
    assert!(!closed.ready().await);
    let open = Limits::new(
        LimitsConfig {
            fail_open: true,
            ..LimitsConfig::default()
        },
        hasher(),
        Arc::new(FailingStore),
    );
    open.before_request(Some("192.0.2.1")).await.unwrap();
    open.before_send(Some("192.0.2.1"), "bob", Some("g"), None)
        .await
        .unwrap();
    assert!(open.ready().await);
    let status = open.status().await;
    assert_eq!(status["servedWithoutLimits"], 2);
    assert_eq!(status["store"], "unavailable (serving without limits)");
}

/// A store over the memory store that makes every id change it is handed (as one Redis
/// does) and records them.
struct ChangingStore {
    inner: MemoryLimiterStore,
    made: std::sync::Mutex<Vec<crate::store::IdChange>>,
}

#[async_trait::async_trait]
impl LimiterStore for ChangingStore {
    async fn charge(&self, c: &[Check], f: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        self.inner.charge(c, f).await
    }
    async fn charge_with(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: crate::store::IdChange,
    ) -> Result<(Verdict, Option<bool>), StoreError> {
        let verdict = self.inner.charge(checks, fraud).await?;
        if !matches!(verdict, Verdict::Allowed { .. }) {
            return Ok((verdict, None));
        }
        self.made.lock().unwrap().push(change);
        Ok((verdict, Some(true)))
    }
    async fn settle(&self, r: &[Check], v: Option<LimiterKey>) -> Result<(), StoreError> {
        self.inner.settle(r, v).await
    }
}

#[tokio::test]
async fn an_id_change_is_made_with_an_allowed_charge_only_and_reported() {
    use crate::protocol::SessionId;
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let store = Arc::new(ChangingStore {
        inner: MemoryLimiterStore::new(clock, 1 << 16),
        made: Default::default(),
    });
    let limits = Limits::new(LimitsConfig::default(), hasher(), store.clone());
    let ip = Some("192.0.2.1");
    let create = |n: u8| crate::store::IdChange::Create {
        id: SessionId::from_bytes([n; 16]),
        ttl_ms: 1000,
    };
    for n in 0..5 {
        let made = limits
            .before_send(ip, "bob", Some("g"), Some(create(n)))
            .await;
        assert_eq!(made.unwrap().made, Some(true));
    }
    // The sixth send is refused: no change made, none reported.
    let refused = limits
        .before_send(ip, "bob", Some("g"), Some(create(5)))
        .await;
    assert_eq!(policy(refused), "sends-per-credential");
    assert_eq!(store.made.lock().unwrap().len(), 5);
    // A charge without a change reports none; an exempt request is not charged at all.
    assert_eq!(
        limits
            .before_send(ip, "carol", None, None)
            .await
            .unwrap()
            .made,
        None
    );
    let (_, made) = limits
        .before_verify(ip, "bob", Some(create(6)))
        .await
        .unwrap();
    assert_eq!(made, Some(true));
    let off = Limits::new(
        LimitsConfig {
            enabled: false,
            ..LimitsConfig::default()
        },
        hasher(),
        store.clone(),
    );
    assert_eq!(
        off.before_send(ip, "bob", None, Some(create(7)))
            .await
            .unwrap()
            .made,
        None
    );
    assert_eq!(store.made.lock().unwrap().len(), 6);
}

fn hasher() -> KeyHasher {
    KeyHasher::new(Zeroizing::new([7; 32]))
}
