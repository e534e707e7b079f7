//! Audit events: a record of what happened (codes sent, verifications, blocks, plugin
//! reloads, key rotations) for an operator's audit trail, handed to the `events` hook.
//!
//! The request path only *queues* an event: [`AuditLog::emit`] is a `try_send` into a
//! bounded queue and never waits. When the queue is full the event is dropped and
//! counted. A background task ([`spawn_delivery`]) takes events off the queue in
//! batches and hands each batch to an [`EventSink`] (the events plugin); a sink that
//! fails, traps or overruns its deadline loses that batch (logged and counted). After a
//! failure the task pauses before the next batch — 100 ms, doubling per failure in a row
//! up to 5 s, back to none after a success — so a sink that keeps failing is called a
//! few times a second at most instead of once per batch: meanwhile events wait in the
//! queue, and once it is full they are dropped and counted, which costs a request one
//! atomic operation. With no sink bound nothing is built at all. At shutdown
//! ([`AuditDelivery::finish`]) the queue closes, what it holds goes to the sink within a
//! grace period, and what is left then is counted as failed.
//!
//! Events are CloudEvents-shaped (`id`, `type`, `time`, `source`, `subject`, JSON
//! `data`). They never carry a code, a key or a secret. An event about a credential
//! names it by a keyed hash (`cred_<hex>`, HMAC-SHA256 under a server secret) unless
//! the operator turns on plain credential ids.

use crate::clock::Clock;
use crate::protocol::iso8601_ms;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// Events handed to the sink in one call at most.
const MAX_BATCH: usize = 100;
/// How long the delivery task waits for a batch to fill once it has one event.
const LINGER: Duration = Duration::from_millis(20);
/// The pause after a failed batch; it doubles with each failure in a row…
const FIRST_PAUSE: Duration = Duration::from_millis(100);
/// …up to this.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// The pause before the next batch after `failures` failed batches in a row.
fn pause_after(failures: u32) -> Duration {
    match failures {
        0 => Duration::ZERO,
        n => FIRST_PAUSE
            .saturating_mul(1 << (n - 1).min(16))
            .min(LONGEST_PAUSE),
    }
}

/// One audit event.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    /// `otp.code.sent`, `plugin.loaded`, …
    pub kind: String,
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub source: String,
    pub subject: Option<String>,
    /// A JSON object.
    pub data: String,
}

/// What an event is about.
pub enum Subject<'a> {
    /// A credential id: hashed unless the operator asked for plain ids.
    Credential(&'a str),
    /// Anything that is not personal data (a plugin's name).
    Plain(&'a str),
    None,
}

/// How events are made: the source, and how credentials are named.
#[derive(Clone, Debug)]
pub struct EventOptions {
    /// The CloudEvents `source` of every event.
    pub source: String,
    /// Put credential ids into `subject` as they are instead of a keyed hash.
    pub plain_credentials: bool,
    /// Events that may wait for the sink; more are dropped.
    pub queue: usize,
}

/// Counters of the audit pipeline, for `/ready` and metrics.
#[derive(Debug, Default)]
pub struct EventCounts {
    pub delivered: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Lost because the sink failed on their batch.
    pub failed: AtomicU64,
}

/// The sending side of the audit pipeline; cheap to share.
pub struct AuditLog {
    queue: mpsc::Sender<AuditEvent>,
    clock: Arc<dyn Clock>,
    options: EventOptions,
    /// Keys the credential pseudonyms (HMAC-SHA256, its padded states computed once).
    subject_key: ring::hmac::Key,
    /// Whether a sink is bound; events are neither built nor queued without one.
    sink_bound: AtomicBool,
    counts: Arc<EventCounts>,
}

impl AuditLog {
    /// A log and the receiving end for [`spawn_delivery`]. `subject_key` keys the hash
    /// that names credentials (see the module doc).
    pub fn new(
        options: EventOptions,
        subject_key: [u8; 32],
        clock: Arc<dyn Clock>,
    ) -> (AuditLog, mpsc::Receiver<AuditEvent>) {
        let (queue, receiver) = mpsc::channel(options.queue.max(1));
        let log = AuditLog {
            queue,
            clock,
            options,
            subject_key: ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                Zeroizing::new(subject_key).as_slice(),
            ),
            sink_bound: AtomicBool::new(false),
            counts: Arc::new(EventCounts::default()),
        };
        (log, receiver)
    }

    /// Tells the log whether a sink is bound (the plugin registry does on every change).
    pub fn set_sink_bound(&self, bound: bool) {
        self.sink_bound.store(bound, Ordering::Relaxed);
    }

    pub fn counts(&self) -> &Arc<EventCounts> {
        &self.counts
    }

    /// Queues an event without waiting; drops it (and counts it) when the queue is full.
    /// Nothing is built unless a sink is bound and the queue has room, so an event that
    /// nobody hears — no sink, or one that hangs — costs next to nothing.
    pub fn emit(&self, kind: &str, subject: Subject<'_>, data: impl FnOnce() -> serde_json::Value) {
        if !self.sink_bound.load(Ordering::Relaxed) {
            return;
        }
        let permit = match self.queue.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // Shut down (the queue was flushed and closed): counted like a full queue.
            Err(mpsc::error::TrySendError::Closed(())) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let data = data();
        let subject = match subject {
            Subject::Credential(id) if self.options.plain_credentials => Some(id.to_string()),
            Subject::Credential(id) => Some(self.credential_pseudonym(id)),
            Subject::Plain(text) => Some(text.to_string()),
            Subject::None => None,
        };
        let event = AuditEvent {
            id: crate::os_random::hex_id(),
            kind: kind.to_string(),
            time: iso8601_ms(self.clock.now_ms()),
            source: self.options.source.clone(),
            subject,
            data: data.to_string(),
        };
        permit.send(event);
    }

    /// `cred_` and the first 16 bytes of HMAC-SHA256(subject key, id), in hex.
    pub fn credential_pseudonym(&self, id: &str) -> String {
        let tag = ring::hmac::sign(&self.subject_key, id.as_bytes());
        format!("cred_{}", hex::encode(&tag.as_ref()[..16]))
    }
}

/// Where batches of events go: the events plugin.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Delivers a batch. `Ok(false)` when no sink is bound (the batch is discarded).
    async fn deliver(&self, batch: &[AuditEvent]) -> Result<bool, String>;
}

/// Resolves once [`AuditDelivery::finish`] has set a deadline; never, when the
/// `AuditDelivery` was dropped without it (start-up failed): delivery then goes on until
/// the log is dropped.
async fn stop_requested(stopping: &mut tokio::sync::watch::Receiver<Option<tokio::time::Instant>>) {
    if stopping.wait_for(Option::is_some).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `sink.deliver(batch)`, waited for without limit until shutdown begins and then until
/// its deadline; `None` when the deadline passes first.
async fn deliver_until_stopped(
    sink: &dyn EventSink,
    batch: &[AuditEvent],
    stopping: &mut tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
) -> Option<Result<bool, String>> {
    let deliver = sink.deliver(batch);
    tokio::pin!(deliver);
    tokio::select! {
        biased;
        result = &mut deliver => return Some(result),
        () = stop_requested(stopping) => {}
    }
    let deadline = (*stopping.borrow())?;
    tokio::time::timeout_at(deadline, deliver).await.ok()
}

/// The running delivery task of [`spawn_delivery`].
pub struct AuditDelivery {
    task: tokio::task::JoinHandle<()>,
    /// When set: stop taking events, and deliver what is queued until this instant.
    stop: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
}

impl AuditDelivery {
    /// Ends delivery at shutdown: the queue takes no more events, what it holds goes to
    /// the sink until `grace` has passed (no pauses after failures), and what is left
    /// then is counted as failed — nothing is lost uncounted.
    pub async fn finish(self, grace: Duration) {
        let _ = self.stop.send(Some(tokio::time::Instant::now() + grace));
        // The task keeps its own deadline; this one only guards against a sink call
        // that ignores cancellation.
        let _ = tokio::time::timeout(grace + Duration::from_secs(1), self.task).await;
    }
}

/// Takes events off the queue in batches of up to [`MAX_BATCH`] and hands them to
/// `sink`, one batch at a time, pausing after failures (see the module doc), until the
/// log is dropped or [`AuditDelivery::finish`] is called.
pub fn spawn_delivery(
    mut queue: mpsc::Receiver<AuditEvent>,
    sink: Arc<dyn EventSink>,
    counts: Arc<EventCounts>,
) -> AuditDelivery {
    let (stop, mut stopping) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut failures: u32 = 0;
        loop {
            // Once shutdown begins, what is queued is the flush's below.
            let first = tokio::select! {
                biased;
                () = stop_requested(&mut stopping) => None,
                first = queue.recv() => first,
            };
            let Some(first) = first else {
                break;
            };
            batch.push(first);
            let linger = tokio::time::sleep(LINGER);
            tokio::pin!(linger);
            while batch.len() < MAX_BATCH {
                tokio::select! {
                    next = queue.recv() => match next {
                        Some(event) => batch.push(event),
                        None => break,
                    },
                    _ = &mut linger => break,
                }
            }
            let n = batch.len() as u64;
            let Some(outcome) = deliver_until_stopped(&*sink, &batch, &mut stopping).await else {
                // Shutting down, and the sink did not answer by the deadline.
                counts.failed.fetch_add(n, Ordering::Relaxed);
                batch.clear();
                break;
            };
            match outcome {
                Ok(true) => {
                    counts.delivered.fetch_add(n, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(
                            failed_batches = failures,
                            "audit events delivered again after failures"
                        );
                    }
                    failures = 0;
                }
                Ok(false) => failures = 0,
                Err(reason) => {
                    counts.failed.fetch_add(n, Ordering::Relaxed);
                    failures = failures.saturating_add(1);
                    let pause = pause_after(failures);
                    tracing::warn!(
                        events = n,
                        %reason,
                        pause_ms = pause.as_millis() as u64,
                        "audit events lost: the events plugin failed"
                    );
                }
            }
            batch.clear();
            tokio::select! {
                _ = tokio::time::sleep(pause_after(failures)) => {}
                () = stop_requested(&mut stopping) => {}
            }
        }
        let Some(deadline) = *stopping.borrow() else {
            return; // the log is gone: nothing more can come
        };
        // Shutting down: nothing new comes in (later events count as dropped); what is
        // queued goes out by the deadline, and what is left then counts as failed.
        queue.close();
        let (mut delivered, mut failed) = (0u64, 0u64);
        loop {
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let outcome = if tokio::time::Instant::now() < deadline {
                tokio::time::timeout_at(deadline, sink.deliver(&batch)).await
            } else {
                Ok(Err(String::new())) // too late to start a call
            };
            let (delivered_now, failed_now) = match outcome {
                Ok(Ok(true)) => (n, 0),
                Ok(Ok(false)) => (0, 0),
                Ok(Err(_)) | Err(_) => (0, n),
            };
            counts.delivered.fetch_add(delivered_now, Ordering::Relaxed);
            counts.failed.fetch_add(failed_now, Ordering::Relaxed);
            delivered += delivered_now;
            failed += failed_now;
            batch.clear();
        }
        if delivered + failed > 0 {
            tracing::info!(delivered, failed, "audit events flushed at shutdown");
        }
    });
    AuditDelivery { task, stop }
}

/// 32 random hex digits.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Mutex;

    fn options(queue: usize) -> EventOptions {
        EventOptions {
            source: "/otp-server/test".into(),
            plain_credentials: false,
            queue,
        }
    }

    #[test]
    fn nothing_is_queued_without_a_sink() {
        let (log, mut rx) = AuditLog::new(options(4), [7; 32], Arc::new(ManualClock::new(0)));
        log.emit("otp.code.sent", Subject::None, || serde_json::json!({}));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (log, _rx) = AuditLog::new(options(2), [7; 32], Arc::new(ManualClock::new(0)));
        log.set_sink_bound(true);
        for _ in 0..5 {
            log.emit("otp.code.sent", Subject::None, || serde_json::json!({}));
        }
        assert_eq!(log.counts().dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn credentials_are_named_by_a_keyed_hash_unless_asked_otherwise() {
        let clock = Arc::new(ManualClock::new(0));
        let (log, mut rx) = AuditLog::new(options(4), [7; 32], clock.clone());
        log.set_sink_bound(true);
        log.emit(
            "otp.code.sent",
            Subject::Credential("me@example.com"),
            || serde_json::json!({}),
        );
        let hashed = rx.try_recv().unwrap().subject.unwrap();
        assert!(hashed.starts_with("cred_") && !hashed.contains("example"));
        assert_eq!(hashed, log.credential_pseudonym("me@example.com"));
        let (other, _) = AuditLog::new(options(4), [8; 32], clock.clone());
        assert_ne!(hashed, other.credential_pseudonym("me@example.com"));

        let plain = EventOptions {
            plain_credentials: true,
            ..options(4)
        };
        let (log, mut rx) = AuditLog::new(plain, [7; 32], clock);
        log.set_sink_bound(true);
        log.emit(
            "otp.code.sent",
            Subject::Credential("me@example.com"),
            || serde_json::json!({}),
        );
        assert_eq!(
            rx.try_recv().unwrap().subject.as_deref(),
            Some("me@example.com")
        );
    }

    struct Recording {
        batches: Mutex<Vec<Vec<String>>>,
        fail: bool,
    }

    #[async_trait]
    impl EventSink for Recording {
        async fn deliver(&self, batch: &[AuditEvent]) -> Result<bool, String> {
            self.batches
                .lock()
                .unwrap()
                .push(batch.iter().map(|e| e.kind.clone()).collect());
            if self.fail {
                Err("sink down".into())
            } else {
                Ok(true)
            }
        }
    }

    #[test]
    fn failures_in_a_row_pause_deliveries_longer_up_to_a_bound() {
        let pauses: Vec<u128> = (0..9).map(|n| pause_after(n).as_millis()).collect();
        assert_eq!(pauses, [0, 100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(pause_after(u32::MAX), LONGEST_PAUSE);
    }

    #[tokio::test]
    async fn a_failing_sink_is_called_less_often_and_recovers_at_once() {
        struct Flaky {
            calls: Mutex<Vec<std::time::Instant>>,
            failing: AtomicBool,
        }
        #[async_trait]
        impl EventSink for Flaky {
            async fn deliver(&self, _batch: &[AuditEvent]) -> Result<bool, String> {
                self.calls.lock().unwrap().push(std::time::Instant::now());
                if self.failing.load(Ordering::Relaxed) {
                    Err("sink down".into())
                } else {
                    Ok(true)
                }
            }
        }
        let (log, rx) = AuditLog::new(options(4), [7; 32], Arc::new(ManualClock::new(0)));
        log.set_sink_bound(true);
        let sink = Arc::new(Flaky {
            calls: Mutex::new(Vec::new()),
            failing: AtomicBool::new(true),
        });
        let _delivery = spawn_delivery(rx, sink.clone(), log.counts().clone());
        // Events keep coming for 1.2 s while the sink fails. Without pauses it would be
        // called every 20 ms or so; with them after 100, 200, 400 ms, ...: 5 calls at most.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(1200) {
            log.emit("a", Subject::None, || serde_json::json!({}));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let calls = sink.calls.lock().unwrap().clone();
        assert!((2..=5).contains(&calls.len()), "{} calls", calls.len());
        for (pair, pause) in calls.windows(2).zip([100, 200, 400, 800]) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(pause),
                "{gap:?} after {pause} ms"
            );
        }
        assert!(log.counts().dropped.load(Ordering::Relaxed) > 0);
        // Once the sink works, the pending batch goes out after the current pause (1.6 s
        // at most) and the next one follows without a pause.
        sink.failing.store(false, Ordering::Relaxed);
        let delivered = |n| log.counts().delivered.load(Ordering::Relaxed) >= n;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !delivered(1) {
            assert!(std::time::Instant::now() < deadline, "never delivered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let recovered = std::time::Instant::now();
        log.emit("b", Subject::None, || serde_json::json!({}));
        while !delivered(5) {
            assert!(
                std::time::Instant::now() < deadline,
                "the next batch never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Had the failures' pause carried on, it would be 1.6 s or more; the bound leaves
        // room for a loaded machine.
        assert!(
            recovered.elapsed() < Duration::from_millis(1000),
            "{:?}",
            recovered.elapsed()
        );
    }

    #[tokio::test]
    async fn at_shutdown_queued_events_are_delivered_and_new_ones_refused() {
        let (log, rx) = AuditLog::new(options(500), [7; 32], Arc::new(ManualClock::new(0)));
        log.set_sink_bound(true);
        let sink = Arc::new(Recording {
            batches: Mutex::new(Vec::new()),
            fail: false,
        });
        let delivery = spawn_delivery(rx, sink.clone(), log.counts().clone());
        for _ in 0..250 {
            log.emit("queued", Subject::None, || serde_json::json!({}));
        }
        delivery.finish(Duration::from_secs(5)).await;
        let delivered = log.counts().delivered.load(Ordering::Relaxed);
        assert_eq!(delivered, 250);
        assert_eq!(sink.batches.lock().unwrap().concat().len(), 250);
        // After the flush the queue is closed: an event emitted now (a plugin reload in
        // the last moment) is counted as dropped, never lost uncounted.
        assert_eq!(log.counts().dropped.load(Ordering::Relaxed), 0);
        log.emit("late", Subject::None, || serde_json::json!({}));
        assert_eq!(log.counts().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(sink.batches.lock().unwrap().concat().len(), 250);
    }

    #[tokio::test]
    async fn delivery_goes_on_when_its_handle_is_dropped_without_finishing() {
        let (log, rx) = AuditLog::new(options(16), [7; 32], Arc::new(ManualClock::new(0)));
        log.set_sink_bound(true);
        let sink = Arc::new(Recording {
            batches: Mutex::new(Vec::new()),
            fail: false,
        });
        drop(spawn_delivery(rx, sink.clone(), log.counts().clone()));
        log.emit("after", Subject::None, || serde_json::json!({}));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while log.counts().delivered.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "never delivered");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(sink.batches.lock().unwrap().concat(), ["after"]);
    }

    #[tokio::test]
    async fn at_shutdown_a_hanging_sink_costs_the_grace_and_its_events_are_counted() {
        struct Hanging;
        #[async_trait]
        impl EventSink for Hanging {
            async fn deliver(&self, _batch: &[AuditEvent]) -> Result<bool, String> {
                std::future::pending().await
            }
        }
        let (log, rx) = AuditLog::new(options(500), [7; 32], Arc::new(ManualClock::new(0)));
        log.set_sink_bound(true);
        let delivery = spawn_delivery(rx, Arc::new(Hanging), log.counts().clone());
        for _ in 0..250 {
            log.emit("queued", Subject::None, || serde_json::json!({}));
        }
        let started = std::time::Instant::now();
        delivery.finish(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert_eq!(log.counts().failed.load(Ordering::Relaxed), 250);
        assert_eq!(log.counts().delivered.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn events_reach_the_sink_in_order_and_failures_are_counted() {
        for fail in [false, true] {
            let (log, rx) = AuditLog::new(options(16), [7; 32], Arc::new(ManualClock::new(0)));
            log.set_sink_bound(true);
            let sink = Arc::new(Recording {
                batches: Mutex::new(Vec::new()),
                fail,
            });
            let delivery = spawn_delivery(rx, sink.clone(), log.counts().clone());
            for kind in ["a", "b", "c"] {
                log.emit(kind, Subject::None, || serde_json::json!({}));
            }
            let counts = log.counts().clone();
            drop(log);
            delivery.task.await.unwrap();
            let seen: Vec<String> = sink.batches.lock().unwrap().concat();
            assert_eq!(seen, ["a", "b", "c"]);
            let (delivered, failed) = (
                counts.delivered.load(Ordering::Relaxed),
                counts.failed.load(Ordering::Relaxed),
            );
            assert_eq!((delivered, failed), if fail { (0, 3) } else { (3, 0) });
        }
    }
}
