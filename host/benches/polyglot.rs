//! One hook call per polyglot plugin (JavaScript, Python, C), instantiation included: a
//! fresh store and instance per call, exactly as a request pays for it. Before the
//! measurements it prints each component's size and how long wasmtime takes to compile it
//! (no cache).
//!
//! Needs the components from `scripts/build-polyglot-plugins.sh`. Run with
//! `cargo bench -p otp-server --bench polyglot`.

use criterion::{criterion_group, criterion_main, Criterion};
use otp_server::plugins::{
    CodeDelivery, Credential, Hook, PluginRuntime, RequestContext, RuntimeOptions, SendKind,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A sender's whole deadline: these benches time single senders, not failover chains.
const SEND_BUDGET: Duration = Duration::from_secs(10);

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist-polyglot")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run scripts/build-polyglot-plugins.sh)",
            path.display()
        )
    })
}

fn polyglot(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("a plugin runtime");
    let ctx = RequestContext {
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("bench".into()),
        accept_language: Some("fr-CH, fr;q=0.9, en;q=0.8".into()),
        request_id: "bench".into(),
        locale: None,
    };

    // Sizes and compile times; the runtime has no cache, so each load compiles.
    let mut loaded = Vec::new();
    for name in ["js-username-validator", "py-log-sender", "c-json-final"] {
        let bytes = component(name);
        let runs = if name.starts_with("py") { 1 } else { 3 };
        let mut times = Vec::new();
        let mut plugin = None;
        for _ in 0..runs {
            let started = Instant::now();
            plugin = Some(runtime.load(name, &bytes).expect(name));
            times.push(started.elapsed());
        }
        times.sort();
        eprintln!(
            "{name}: {} bytes, compiled in {:?} (median of {runs})",
            bytes.len(),
            times[times.len() / 2]
        );
        loaded.push(plugin.unwrap());
    }
    let [validator, sender, finalizer] = <[_; 3]>::try_from(loaded).unwrap();

    let mut group = c.benchmark_group("polyglot_call");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("js-username-validator/validate", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .validate(&validator, "{\"username\": \"Someone_42\"}", &ctx)
                .await
                .expect("valid")
        })
    });

    let delivery = CodeDelivery {
        credential_id: "someone_42".into(),
        channel: "default".into(),
        code: "abcdefghij".into(),
        expires_at_ms: 1_800_000_000_000,
        kind: SendKind::First,
    };
    // The sender logs through the host's `tracing`; with no subscriber installed the line
    // is dropped, so this measures the call, not a terminal.
    group.bench_function("py-log-sender/send", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .send(&sender, &delivery, &ctx, SEND_BUDGET)
                .await
                .expect("sent")
        })
    });

    let credential = Credential {
        id: "someone_42".into(),
        channel: "default".into(),
        group: None,
    };
    group.bench_function("c-json-final/complete", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .complete(
                    &finalizer,
                    runtime
                        .reserve(&finalizer, Hook::FinalAction)
                        .await
                        .expect("a slot"),
                    &credential,
                    &ctx,
                )
                .await
                .expect("done")
        })
    });
    group.finish();
}

criterion_group!(benches, polyglot);
criterion_main!(benches);
