//! Benchmarks of the per-request core: cookie seal/open, code generation, the verify and
//! create transitions, and the id store's `replace` with and without a million live ids.
//!
//! Run with `cargo bench -p otp-server --bench core`. Store operations are `async` only
//! for the sake of networked stores; the in-memory one completes on the first poll, so
//! the benchmark polls once with a no-op waker instead of paying for a runtime.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

use otp_server::crypto::{KeyRing, SessionCookie};
use otp_server::protocol::{
    create, verify, CodeSource, OsCodeSource, SequentialCodeSource, Session, SessionId, Settings,
};
use otp_server::store::{IdStore, MemoryIdStore};

const NOW: u64 = 1_795_730_853_000;

fn three_credential_session(settings: &Settings) -> Session {
    let mut codes = SequentialCodeSource::new();
    let mut session = None;
    for credential in ["alice@example.com", "+491701234567", "alice"] {
        match create(
            session.as_ref(),
            SessionId::random(),
            credential,
            "email",
            NOW,
            settings,
            &mut codes,
        ) {
            Ok(transition) => session = Some(transition.session),
            Err(error) => panic!("benchmark setup: {error}"),
        }
    }
    session.unwrap_or_else(|| panic!("benchmark setup: no session"))
}

/// Runs a future that is known to complete without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("in-memory store operation did not complete immediately"),
    }
}

/// Distinct, well-spread ids without a getrandom call each.
fn id(n: u64) -> SessionId {
    let mix = |mut x: u64| {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&mix(n).to_le_bytes());
    bytes[8..].copy_from_slice(&mix(!n).to_le_bytes());
    SessionId::from_bytes(bytes)
}

fn cookies(c: &mut Criterion) {
    let settings = Settings::default();
    let ring = KeyRing::new(NOW, settings.session_max_age_ms);
    let session = three_credential_session(&settings);
    let sealed = SessionCookie::seal_current(&session, &ring);

    c.bench_function("cookie/seal_3_credentials", |b| {
        b.iter(|| SessionCookie::seal_current(black_box(&session), &ring))
    });
    c.bench_function("cookie/open_3_credentials", |b| {
        b.iter(|| SessionCookie::open(black_box(&sealed), &ring))
    });
}

fn codes(c: &mut Criterion) {
    let settings = Settings::default();
    c.bench_function("code/os_generate_10", |b| {
        b.iter(|| OsCodeSource.generate(black_box(settings.alphabet), 10))
    });
}

fn transitions(c: &mut Criterion) {
    let settings = Settings::default();
    let session = three_credential_session(&settings);
    let new_id = SessionId::random();

    c.bench_function("transition/verify_wrong", |b| {
        b.iter(|| {
            verify(
                black_box(&session),
                new_id,
                "wrongwrong",
                NOW + 1,
                &settings,
            )
        })
    });
    c.bench_function("transition/create_switch_existing", |b| {
        let mut codes = SequentialCodeSource::new();
        b.iter(|| {
            create(
                Some(black_box(&session)),
                new_id,
                "alice@example.com",
                "email",
                NOW + 1,
                &settings,
                &mut codes,
            )
        })
    });
    c.bench_function("transition/create_new_session", |b| {
        let mut codes = OsCodeSource;
        b.iter(|| {
            create(
                None,
                new_id,
                black_box("alice@example.com"),
                "email",
                NOW,
                &settings,
                &mut codes,
            )
        })
    });
}

fn store(c: &mut Criterion) {
    let ttl = Settings::default().session_max_age_ms;
    let mut group = c.benchmark_group("store/replace");
    for live in [0u64, 1_000_000] {
        let store = MemoryIdStore::new();
        for n in 0..live {
            ready(store.create(id(n), ttl, NOW)).ok();
        }
        let mut current = id(u64::MAX);
        ready(store.create(current, ttl, NOW)).ok();
        let mut next = live;
        group.bench_function(format!("{live}_live_ids"), |b| {
            b.iter_batched(
                || {
                    next += 1;
                    id(next)
                },
                |new| {
                    let replaced = ready(store.replace(current, new, ttl, NOW));
                    current = new;
                    replaced
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, cookies, codes, transitions, store);
criterion_main!(benches);
