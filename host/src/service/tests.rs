//! The service's invariants, tested with fake hooks on the in-memory stores: no wasm,
//! no processes, no sleeping.

use super::*;
use crate::clock::ManualClock;
use crate::crypto::MemoryKeyStore;
use crate::events::EventOptions;
use crate::limits::memory::MemoryLimiterStore;
use crate::limits::{
    Check, FraudCheck, KeyHasher, LimiterKey, LimiterStore, LimitsConfig, Verdict,
};
use crate::plugins::{Credential, FinalAction, SendFailure, Sent};
use crate::store::MemoryIdStore;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::VecDeque;

const NOW: u64 = 1_700_000_000_000;

/// Hooks that accept every credential, record each send (with whether the id the
/// request came with was still live at that moment) and answer as scripted.
struct FakeHooks {
    ids: Arc<MemoryIdStore>,
    /// The id whose liveness each send records.
    watched: Mutex<Option<SessionId>>,
    sends: Mutex<Vec<(String, bool)>>,
    send_outcomes: Mutex<VecDeque<Result<(), SendFailure>>>,
    final_busy: Mutex<bool>,
    /// Whether the final action fails (after the session is spent).
    final_fails: Mutex<bool>,
    validations: Mutex<usize>,
}

#[async_trait]
impl Hooks for FakeHooks {
    async fn validate(&self, body: &str, _: &RequestContext) -> Result<Credential, HookError> {
        *self.validations.lock() += 1;
        Ok(Credential {
            id: body.trim_matches('"').to_string(),
            channel: "sms".into(),
            group: Some("sms:+44".into()),
        })
    }

    async fn send(&self, delivery: &CodeDelivery, _: &RequestContext) -> Result<Sent, SendFailure> {
        let watched = *self.watched.lock();
        let live = match watched {
            Some(id) => self.ids.contains(id, NOW).await.unwrap(),
            None => false,
        };
        self.sends.lock().push((delivery.code.clone(), live));
        let outcome = self.send_outcomes.lock().pop_front().unwrap_or(Ok(()));
        outcome.map(|()| Sent {
            sender: "fake-sender".into(),
        })
    }

    async fn reserve_final_action(&self) -> Result<Box<dyn FinalAction>, HookError> {
        if *self.final_busy.lock() {
            return Err(HookError::Busy(Hook::FinalAction));
        }
        Ok(Box::new(EchoFinalAction {
            fails: *self.final_fails.lock(),
        }))
    }
}

/// Answers with the credential id, or fails as a trapping plugin would.
struct EchoFinalAction {
    fails: bool,
}

#[async_trait]
impl FinalAction for EchoFinalAction {
    async fn complete(
        self: Box<Self>,
        credential: &Credential,
        _: &RequestContext,
    ) -> Result<PluginResponse, HookError> {
        if self.fails {
            return Err(HookError::Failed {
                plugin: "fake-final".into(),
                reason: "trapped".into(),
            });
        }
        Ok(PluginResponse {
            status: 200,
            headers: vec![],
            body: credential.id.clone().into_bytes(),
        })
    }
}

struct Fixture {
    service: OtpService,
    hooks: Arc<FakeHooks>,
    ids: Arc<MemoryIdStore>,
    keys: Arc<MemoryKeyStore>,
    events: tokio::sync::mpsc::Receiver<crate::events::AuditEvent>,
}

fn fixture() -> Fixture {
    fixture_with(|ids, clock| {
        (
            ids,
            Arc::new(MemoryLimiterStore::new(clock, 1 << 12)) as Arc<dyn LimiterStore>,
        )
    })
}

/// The fixture with the id store the service uses and the limiter's store made by
/// `stores` from the memory id store (which the fixture's own checks read) and the clock.
fn fixture_with(
    stores: impl FnOnce(
        Arc<MemoryIdStore>,
        Arc<ManualClock>,
    ) -> (Arc<dyn IdStore>, Arc<dyn LimiterStore>),
) -> Fixture {
    let ids = Arc::new(MemoryIdStore::new());
    let keys = Arc::new(MemoryKeyStore::new(NOW, 3_600_000, 86_400_000));
    let hooks = Arc::new(FakeHooks {
        ids: ids.clone(),
        watched: Mutex::new(None),
        sends: Mutex::new(Vec::new()),
        send_outcomes: Mutex::new(VecDeque::new()),
        final_busy: Mutex::new(false),
        final_fails: Mutex::new(false),
        validations: Mutex::new(0),
    });
    let clock = Arc::new(ManualClock::new(NOW));
    let options = EventOptions {
        source: "/test".into(),
        plain_credentials: true,
        queue: 100,
    };
    let (audit, events) = AuditLog::new(options, [1; 32], clock.clone());
    let clock_for_service: Arc<dyn crate::clock::Clock> = clock.clone();
    audit.set_sink_bound(true);
    let settings = Settings {
        resend_cooldown_ms: 0,
        ..Settings::default()
    };
    let (service_ids, limiter_store) = stores(ids.clone(), clock.clone());
    let service = OtpService::new(
        settings,
        keys.clone(),
        service_ids,
        clock_for_service,
        hooks.clone(),
        Arc::new(audit),
        Arc::new(Limits::new(
            LimitsConfig::default(),
            KeyHasher::random(),
            limiter_store,
        )),
    );
    Fixture {
        service,
        hooks,
        ids,
        keys,
        events,
    }
}

impl Fixture {
    fn session_of(&self, cookie: &CookieAction) -> Session {
        let CookieAction::Set { value, .. } = cookie else {
            panic!("expected a cookie, got {cookie:?}");
        };
        SessionCookie::open(value, &*self.keys).unwrap()
    }

    fn event_kinds(&mut self) -> Vec<String> {
        let mut kinds = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            kinds.push(event.kind);
        }
        kinds
    }

    async fn live(&self, id: SessionId) -> bool {
        self.ids.contains(id, NOW).await.unwrap()
    }
}

fn value(cookie: &CookieAction) -> &str {
    match cookie {
        CookieAction::Set { value, .. } => value,
        other => panic!("expected a cookie, got {other:?}"),
    }
}

fn ctx() -> RequestContext {
    RequestContext {
        request_id: "req-1".into(),
        ..RequestContext::default()
    }
}

#[tokio::test]
async fn a_resend_retires_the_old_id_before_the_code_goes_out() {
    let f = fixture();
    let created = f.service.create(None, "\"alice\"", &ctx()).await.unwrap();
    let first = f.session_of(&created.cookie);
    *f.hooks.watched.lock() = Some(first.id);
    let resent = f
        .service
        .resend(Some(value(&created.cookie)), &ctx())
        .await
        .unwrap();
    let sends = f.hooks.sends.lock().clone();
    assert_eq!(sends.len(), 2);
    assert!(
        !sends[1].1,
        "the old id was still live while the resend was sent"
    );
    assert!(!f.live(first.id).await);
    assert!(f.live(f.session_of(&resent.cookie).id).await);
}

#[tokio::test]
async fn a_failed_send_puts_the_ids_back_as_they_were() {
    let f = fixture();
    let created = f.service.create(None, "\"alice\"", &ctx()).await.unwrap();
    let first = f.session_of(&created.cookie);
    f.hooks
        .send_outcomes
        .lock()
        .push_back(Err(HookError::Unavailable("provider down".into()).into()));
    let error = f
        .service
        .resend(Some(value(&created.cookie)), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(error.kind, ServiceErrorKind::SendUnavailable));
    assert_eq!(error.cookie, CookieAction::Keep);
    assert!(
        f.live(first.id).await,
        "the client's cookie must keep working"
    );

    // A create whose first send fails leaves no live id behind.
    f.hooks
        .send_outcomes
        .lock()
        .push_back(Err(HookError::Unavailable("provider down".into()).into()));
    let error = f.service.create(None, "\"bob\"", &ctx()).await.unwrap_err();
    assert!(matches!(error.kind, ServiceErrorKind::SendUnavailable));
    assert_eq!(f.ids.len(), 1, "only alice's session id is live");
}

/// A sender that trapped or timed out may have handed the code to its provider: the
/// session moves on as if it had been sent. The error answer sets the new cookie, the
/// code that may arrive verifies with it, and a resend counts against the allowance.
#[tokio::test]
async fn a_send_that_may_have_gone_out_moves_the_session_on() {
    let f = fixture();
    let timed_out = || {
        f.hooks
            .send_outcomes
            .lock()
            .push_back(Err(HookError::Failed {
                plugin: "fake-sender".into(),
                reason: "deadline exceeded".into(),
            }
            .into()))
    };
    timed_out();
    let created = f
        .service
        .create(None, "\"gina\"", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(
        created.kind,
        ServiceErrorKind::PluginFailed { .. }
    ));
    let first = f.session_of(&created.cookie);
    assert!(f.live(first.id).await);
    timed_out();
    let resent = f
        .service
        .resend(Some(value(&created.cookie)), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(resent.kind, ServiceErrorKind::PluginFailed { .. }));
    let second = f.session_of(&resent.cookie);
    assert!(!f.live(first.id).await, "the old state is spent");
    assert!(f.live(second.id).await);
    assert!(
        second.current_token().unwrap().resends_used > first.current_token().unwrap().resends_used,
        "the resend counts"
    );
    // The code of the send that timed out is the one in force.
    let code = f.hooks.sends.lock().last().unwrap().0.clone();
    let verified = f
        .service
        .verify(Some(value(&resent.cookie)), &code, &ctx())
        .await;
    assert!(verified.is_ok(), "{:?}", verified.err().map(|e| e.kind));
    let other = f.service.create(None, "\"hana\"", &ctx()).await.unwrap();
    // A chain whose later sender calls the destination undeliverable blocks it as
    // always, whatever an earlier sender did.
    f.hooks.send_outcomes.lock().push_back(Err(SendFailure {
        error: HookError::Undeliverable("no such number".into()),
        maybe_sent: true,
    }));
    let blocked = f
        .service
        .resend(Some(value(&other.cookie)), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            blocked.kind,
            ServiceErrorKind::Undeliverable { state: Some(_) }
        ),
        "blocked in the session: {:?}",
        blocked.kind
    );
}

#[tokio::test]
async fn an_undeliverable_resend_blocks_the_credential_in_the_session() {
    let mut f = fixture();
    let created = f.service.create(None, "\"alice\"", &ctx()).await.unwrap();
    f.hooks
        .send_outcomes
        .lock()
        .push_back(Err(HookError::Undeliverable("no such number".into()).into()));
    let error = f
        .service
        .resend(Some(value(&created.cookie)), &ctx())
        .await
        .unwrap_err();
    let ServiceErrorKind::Undeliverable { state: Some(state) } = &error.kind else {
        panic!("{error:?}");
    };
    assert!(state.blocked);
    let blocked = f.session_of(&error.cookie);
    assert!(blocked.current_token().unwrap().blocked);
    assert!(f.live(blocked.id).await);
    // The blocked session refuses another resend without sending anything.
    let sends_before = f.hooks.sends.lock().len();
    let refused = f
        .service
        .resend(Some(value(&error.cookie)), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(
        refused.kind,
        ServiceErrorKind::Refused(ProtocolError::ResendNotAllowed(_))
    ));
    assert_eq!(f.hooks.sends.lock().len(), sends_before);
    assert_eq!(
        f.event_kinds(),
        [
            "otp.code.sent",
            "otp.code.send_failed",
            "otp.session.blocked"
        ]
    );
}

#[tokio::test]
async fn a_verified_user_keeps_the_session_when_the_final_action_cannot_run() {
    let mut f = fixture();
    let created = f.service.create(None, "\"alice\"", &ctx()).await.unwrap();
    let code = f.hooks.sends.lock()[0].0.clone();
    let id = f.session_of(&created.cookie).id;

    *f.hooks.final_busy.lock() = true;
    let error = f
        .service
        .verify(Some(value(&created.cookie)), &code, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(
        error.kind,
        ServiceErrorKind::PluginUnavailable {
            hook: Hook::FinalAction,
            busy: true
        }
    ));
    assert_eq!(error.cookie, CookieAction::Keep);
    assert!(f.live(id).await, "the session id must not be spent");

    *f.hooks.final_busy.lock() = false;
    let verified = f
        .service
        .verify(Some(value(&created.cookie)), &code, &ctx())
        .await
        .unwrap();
    assert_eq!(verified.response.body, b"alice");
    assert_eq!(verified.cookie, CookieAction::Delete);
    assert!(!f.live(id).await);
    assert_eq!(
        f.event_kinds(),
        ["otp.code.sent", "otp.verification.succeeded"]
    );
}

#[tokio::test]
async fn wrong_codes_are_recorded_and_the_block_is_an_event() {
    let mut f = fixture();
    let created = f.service.create(None, "\"alice\"", &ctx()).await.unwrap();
    let code = f.hooks.sends.lock()[0].0.clone();
    let wrong: String = code
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let mut cookie = value(&created.cookie).to_string();
    for _ in 0..2 {
        let error = f
            .service
            .verify(Some(&cookie), &wrong, &ctx())
            .await
            .unwrap_err();
        assert!(matches!(
            error.kind,
            ServiceErrorKind::Refused(ProtocolError::Incorrect(_))
        ));
        cookie = value(&error.cookie).to_string();
    }
    let kinds = f.event_kinds();
    assert_eq!(
        kinds,
        [
            "otp.code.sent",
            "otp.verification.failed",
            "otp.verification.failed",
            "otp.session.blocked"
        ]
    );
    // A live blocked state refused is a failed verification; the same state once spent
    // (a resend moved the session on) is only a spent cookie, recorded as nothing.
    let refused = f
        .service
        .verify(Some(&cookie), &wrong, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.kind,
            ServiceErrorKind::Refused(ProtocolError::VerificationNotAllowed(_))
        ),
        "{refused:?}"
    );
    assert_eq!(f.event_kinds(), ["otp.verification.failed"]);
    f.service.resend(Some(&cookie), &ctx()).await.unwrap();
    f.event_kinds();
    let replayed = f
        .service
        .verify(Some(&cookie), &wrong, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(replayed.kind, ServiceErrorKind::InvalidCookie),
        "{replayed:?}"
    );
    assert_eq!(f.event_kinds(), Vec::<String>::new());
}

#[tokio::test]
async fn a_send_over_budget_changes_nothing_and_sends_nothing() {
    let f = fixture();
    // Five sends per credential per ten minutes (the default), whatever the cookie.
    for _ in 0..5 {
        f.service.create(None, "\"bob\"", &ctx()).await.unwrap();
    }
    let mut previous = f.service.create(None, "\"carol\"", &ctx()).await.unwrap();
    let carol = f.session_of(&previous.cookie);
    let refused = f
        .service
        .create(Some(value(&previous.cookie)), "\"bob\"", &ctx())
        .await
        .unwrap_err();
    match &refused.kind {
        ServiceErrorKind::RateLimited(limited) => {
            assert!(limited.retry_after_secs >= 1, "{limited:?}");
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    assert!(matches!(refused.cookie, CookieAction::Keep));
    assert_eq!(
        f.hooks.sends.lock().len(),
        6,
        "the sixth send to bob went out"
    );
    assert!(
        f.live(carol.id).await,
        "the refused create retired the session id"
    );
    // Another credential is not affected.
    previous = f.service.create(None, "\"dave\"", &ctx()).await.unwrap();
    assert!(f.live(f.session_of(&previous.cookie).id).await);
}

#[tokio::test]
async fn a_send_that_sent_nothing_costs_no_send_budget() {
    let f = fixture();
    let fail_next = |error: HookError| f.hooks.send_outcomes.lock().push_back(Err(error.into()));
    // A provider outage: five tries that send nothing, every sender unavailable or no
    // call slot free. The user's five sends per ten minutes are all still there.
    for n in 0..5 {
        fail_next(match n % 2 {
            0 => HookError::Unavailable("provider down".into()),
            _ => HookError::Busy(Hook::Sending),
        });
        let error = f
            .service
            .create(None, "\"erin\"", &ctx())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error.kind,
                ServiceErrorKind::SendUnavailable | ServiceErrorKind::PluginUnavailable { .. }
            ),
            "{error:?}"
        );
    }
    for _ in 0..5 {
        f.service.create(None, "\"erin\"", &ctx()).await.unwrap();
    }
    let refused = f
        .service
        .create(None, "\"erin\"", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
    // A sender that trapped or timed out may have handed the code to its provider
    // first: that send stays charged.
    for _ in 0..5 {
        fail_next(HookError::Failed {
            plugin: "fake-sender".into(),
            reason: "deadline exceeded".into(),
        });
        f.service
            .create(None, "\"frank\"", &ctx())
            .await
            .unwrap_err();
    }
    let refused = f
        .service
        .create(None, "\"frank\"", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
    // So does a failover chain whose last sender was unavailable after an earlier one
    // timed out: the client hears "unavailable", but a code may have gone out. (From
    // another network: this one has spent its ten sends.)
    let ctx = || RequestContext {
        client_ip: Some("192.0.2.77".into()),
        ..ctx()
    };
    for _ in 0..5 {
        f.hooks.send_outcomes.lock().push_back(Err(SendFailure {
            error: HookError::Unavailable("provider down".into()),
            maybe_sent: true,
        }));
        let error = f
            .service
            .create(None, "\"hank\"", &ctx())
            .await
            .unwrap_err();
        assert!(matches!(error.kind, ServiceErrorKind::SendUnavailable));
    }
    let refused = f
        .service
        .create(None, "\"hank\"", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
}

#[tokio::test]
async fn a_network_out_of_requests_runs_no_plugin() {
    let f = fixture();
    // 120 requests per minute (the default): spent on verifies without a cookie.
    for _ in 0..120 {
        let error = f.service.verify(None, "123456", &ctx()).await.unwrap_err();
        assert!(!matches!(error.kind, ServiceErrorKind::RateLimited(_)));
    }
    let refused = f.service.verify(None, "123456", &ctx()).await.unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
    let refused = f
        .service
        .create(None, "\"gina\"", &ctx())
        .await
        .unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
    assert_eq!(*f.hooks.validations.lock(), 0, "the validator ran");
}

#[tokio::test]
async fn a_spent_cookie_with_the_right_code_answers_like_any_spent_cookie() {
    let f = fixture();
    let created = f.service.create(None, "\"erin\"", &ctx()).await.unwrap();
    let code = f.hooks.sends.lock()[0].0.clone();
    // A wrong code spends this cookie state and hands out its successor.
    let wrong = "0".repeat(code.len());
    let error = f
        .service
        .verify(Some(value(&created.cookie)), &wrong, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(error.kind, ServiceErrorKind::Refused(_)));
    // The spent state with the right code, while the final action is busy: still only
    // "invalid cookie" — a 503 would tell the replayer the code was right.
    *f.hooks.final_busy.lock() = true;
    assert_spent(&f, value(&created.cookie), &code, &ctx()).await;
}

/// Replays a spent cookie state with `code`: "invalid cookie", whatever the code.
async fn assert_spent(f: &Fixture, cookie: &str, code: &str, context: &RequestContext) {
    let replayed = f
        .service
        .verify(Some(cookie), code, context)
        .await
        .unwrap_err();
    assert!(
        matches!(replayed.kind, ServiceErrorKind::InvalidCookie),
        "{:?}",
        replayed.kind
    );
}

/// The id store and the limiter's store as one Redis makes them, counting round trips:
/// the limiter's store makes the id changes it is handed with its charge (not counted
/// apart), and the service's own id store calls are counted.
struct OneRedis {
    ids: Arc<MemoryIdStore>,
    limiter: MemoryLimiterStore,
    trips: std::sync::atomic::AtomicUsize,
}

impl OneRedis {
    fn trip(&self) {
        self.trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn take_trips(&self) -> usize {
        self.trips.swap(0, std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl LimiterStore for OneRedis {
    async fn charge(&self, c: &[Check], f: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        self.trip();
        self.limiter.charge(c, f).await
    }
    async fn charge_with(
        &self,
        checks: &[Check],
        fraud: Option<&FraudCheck>,
        change: IdChange,
    ) -> Result<(Verdict, Option<bool>), StoreError> {
        self.trip();
        let verdict = self.limiter.charge(checks, fraud).await?;
        if !matches!(verdict, Verdict::Allowed { .. }) {
            return Ok((verdict, None));
        }
        let taken = change.apply(&*self.ids, NOW).await?;
        Ok((verdict, Some(taken)))
    }
    async fn settle(&self, r: &[Check], v: Option<LimiterKey>) -> Result<(), StoreError> {
        self.trip();
        self.limiter.settle(r, v).await
    }
}

#[async_trait]
impl IdStore for OneRedis {
    async fn create(&self, id: SessionId, ttl: u64, now: u64) -> Result<(), StoreError> {
        self.trip();
        self.ids.create(id, ttl, now).await
    }
    async fn extend(&self, id: SessionId, ttl: u64, now: u64) -> Result<bool, StoreError> {
        self.trip();
        self.ids.extend(id, ttl, now).await
    }
    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.trip();
        self.ids.replace(old, new, ttl, now).await
    }
    async fn consume(&self, id: SessionId, now: u64) -> Result<bool, StoreError> {
        self.trip();
        self.ids.consume(id, now).await
    }
    async fn contains(&self, id: SessionId, now: u64) -> Result<bool, StoreError> {
        self.trip();
        self.ids.contains(id, now).await
    }
}

/// A spent cookie state replayed with the right code and with a wrong one: the same
/// answer after the same store round trips (one: the charge asks whether the id is
/// live), so neither the answer nor its timing tells the replayer which code was right.
#[tokio::test]
async fn a_spent_cookie_costs_the_same_round_trips_whatever_its_code() {
    let mut one_redis = None;
    let f = fixture_with(|ids, clock| {
        let store = Arc::new(OneRedis {
            ids,
            limiter: MemoryLimiterStore::new(clock, 1 << 12),
            trips: Default::default(),
        });
        one_redis = Some(store.clone());
        (
            store.clone() as Arc<dyn IdStore>,
            store as Arc<dyn LimiterStore>,
        )
    });
    let one_redis = one_redis.unwrap();
    let context = RequestContext {
        client_ip: Some("192.0.2.1".into()),
        ..ctx()
    };
    let created = f.service.create(None, "\"erin\"", &context).await.unwrap();
    let code = f.hooks.sends.lock()[0].0.clone();
    // Wrong in every place, so never the code by chance.
    let wrong: String = code
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let spent = value(&created.cookie).to_string();
    let next = f
        .service
        .verify(Some(&spent), &wrong, &context)
        .await
        .unwrap_err();
    let next = value(&next.cookie).to_string();
    let mut trips = Vec::new();
    for guess in [&code, &wrong, &code] {
        one_redis.take_trips();
        assert_spent(&f, &spent, guess, &context).await;
        trips.push(one_redis.take_trips());
    }
    assert_eq!(
        trips,
        [1, 1, 1],
        "store round trips per replay: right, wrong, right"
    );
    // The live successor still verifies with the code.
    let verified = f.service.verify(Some(&next), &code, &context).await;
    assert!(verified.is_ok(), "{:?}", verified.err().map(|e| e.kind));
}

/// An id store that answers every liveness question "live": a spent state then passes
/// resend's check and loses only at the id change, as a request does that races
/// another use of the same state between the two.
struct AlwaysLive(Arc<MemoryIdStore>);

#[async_trait]
impl IdStore for AlwaysLive {
    async fn create(&self, id: SessionId, ttl: u64, now: u64) -> Result<(), StoreError> {
        self.0.create(id, ttl, now).await
    }
    async fn extend(&self, id: SessionId, ttl: u64, now: u64) -> Result<bool, StoreError> {
        self.0.extend(id, ttl, now).await
    }
    async fn replace(
        &self,
        old: SessionId,
        new: SessionId,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.0.replace(old, new, ttl, now).await
    }
    async fn consume(&self, id: SessionId, now: u64) -> Result<bool, StoreError> {
        self.0.consume(id, now).await
    }
    async fn contains(&self, _: SessionId, _: u64) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// A resend that loses the race for its cookie state sends nothing, so the send
/// budgets it was charged are given back: double clicks cannot use up a user's sends.
#[tokio::test]
async fn a_resend_that_loses_its_race_gives_its_send_budget_back() {
    let f = fixture_with(|ids, clock| {
        (
            Arc::new(AlwaysLive(ids)) as Arc<dyn IdStore>,
            Arc::new(MemoryLimiterStore::new(clock, 1 << 12)) as Arc<dyn LimiterStore>,
        )
    });
    let created = f.service.create(None, "\"ivy\"", &ctx()).await.unwrap();
    let spent = value(&created.cookie).to_string();
    let resent = f.service.resend(Some(&spent), &ctx()).await.unwrap();
    for _ in 0..5 {
        let lost = f.service.resend(Some(&spent), &ctx()).await.unwrap_err();
        assert!(
            matches!(lost.kind, ServiceErrorKind::InvalidCookie),
            "{lost:?}"
        );
    }
    // Two codes went out: three more fit in the credential's five per ten minutes.
    assert!(f.live(f.session_of(&resent.cookie).id).await);
    for _ in 0..3 {
        f.service.create(None, "\"ivy\"", &ctx()).await.unwrap();
    }
    let refused = f.service.create(None, "\"ivy\"", &ctx()).await.unwrap_err();
    assert!(matches!(refused.kind, ServiceErrorKind::RateLimited(_)));
    assert_eq!(f.hooks.sends.lock().len(), 5);
}

/// The limiter's memory store, remembering the credentials each settle records as
/// verified (the fraud guard's conversions).
struct ConversionsSeen {
    inner: MemoryLimiterStore,
    verified: Mutex<Vec<LimiterKey>>,
}

#[async_trait]
impl LimiterStore for ConversionsSeen {
    async fn charge(&self, c: &[Check], f: Option<&FraudCheck>) -> Result<Verdict, StoreError> {
        self.inner.charge(c, f).await
    }
    async fn settle(&self, r: &[Check], v: Option<LimiterKey>) -> Result<(), StoreError> {
        self.verified.lock().extend(v);
        self.inner.settle(r, v).await
    }
}

/// A right code that spent the session counts as a conversion for the fraud guard even
/// when the final action then fails: the code did reach the user.
#[tokio::test]
async fn a_right_code_is_a_conversion_even_when_the_final_action_fails() {
    let mut seen = None;
    let f = fixture_with(|ids, clock| {
        let store = Arc::new(ConversionsSeen {
            inner: MemoryLimiterStore::new(clock, 1 << 12),
            verified: Mutex::new(Vec::new()),
        });
        seen = Some(store.clone());
        (ids as Arc<dyn IdStore>, store as Arc<dyn LimiterStore>)
    });
    let seen = seen.unwrap();
    *f.hooks.final_fails.lock() = true;
    let created = f.service.create(None, "\"jo\"", &ctx()).await.unwrap();
    let code = f.hooks.sends.lock()[0].0.clone();
    let error = f
        .service
        .verify(Some(value(&created.cookie)), &code, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(error.kind, ServiceErrorKind::PluginFailed { .. }),
        "{error:?}"
    );
    assert!(!f.live(f.session_of(&created.cookie).id).await);
    assert_eq!(seen.verified.lock().len(), 1);
}
