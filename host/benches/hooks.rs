//! One hook call per default plugin, instantiation included: a fresh store and
//! instance per call, exactly as a request pays for it.
//!
//! Needs the components from `scripts/build-plugins.sh`. Run with
//! `cargo bench -p otp-server --bench hooks`.

use criterion::{criterion_group, criterion_main, Criterion};
use otp_server::plugins::{
    CodeDelivery, Credential, PluginRuntime, RequestContext, RuntimeOptions, SendKind,
};
use std::path::PathBuf;

fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/dist")
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins.sh)", path.display()))
}

fn hooks(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("a plugin runtime");
    let ctx = RequestContext {
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("bench".into()),
        accept_language: Some("en".into()),
    };

    let mut group = c.benchmark_group("hook_call");
    for (name, body) in [
        ("default-credential", "{\"email\":\"someone@example.com\"}"),
        (
            "email-phone-credential",
            "{\"email\":\"Someone@Example.com\"}",
        ),
    ] {
        let plugin = runtime.load(name, &component(name)).expect(name);
        group.bench_function(format!("{name}/validate"), |b| {
            b.to_async(&rt)
                .iter(|| async { runtime.validate(&plugin, body, &ctx).await.expect("valid") })
        });
    }

    let sender = runtime
        .load("dev-sender", &component("dev-sender"))
        .expect("dev-sender");
    let delivery = CodeDelivery {
        credential_id: "someone@example.com".into(),
        channel: "email".into(),
        code: "abcdefghij".into(),
        expires_at_ms: 1_800_000_000_000,
        kind: SendKind::First,
    };
    // The dev sender logs through the host's `tracing`; with no subscriber installed
    // the line is dropped, so this measures the call, not a terminal.
    group.bench_function("dev-sender/send", |b| {
        b.to_async(&rt)
            .iter(|| async { runtime.send(&sender, &delivery, &ctx).await.expect("sent") })
    });

    let finalizer = runtime
        .load("json-final", &component("json-final"))
        .expect("json-final");
    let credential = Credential {
        id: "someone@example.com".into(),
        channel: "email".into(),
    };
    group.bench_function("json-final/complete", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .complete(&finalizer, &credential, &ctx)
                .await
                .expect("done")
        })
    });
    group.finish();
}

criterion_group!(benches, hooks);
criterion_main!(benches);
