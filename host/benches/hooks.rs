//! One hook call per default plugin, instantiation included: a fresh store and
//! instance per call, exactly as a request pays for it. Also `webhook-sender` (a signed
//! POST to a minimal HTTP responder on 127.0.0.1, new connection each call, as in
//! production) and `session-token-final` (an HS256 JWT), with their manifests.
//!
//! The `contract` group calls the same three plugins built for each contract version
//! (`plugins/fixtures/v010-*` from the frozen 0.1.0 WIT, the shipped ones on the 0.2.0
//! guest SDK), so the cost of a version's bindings shows as a ratio within one run.
//!
//! Needs the components from `scripts/build-plugins.sh`. Run with
//! `cargo bench -p otp-server --bench hooks`.

use criterion::{criterion_group, criterion_main, Criterion};
use otp_server::plugins::{
    CodeDelivery, Credential, Hook, LoadedPlugin, Manifest, PluginEnv, PluginResponse,
    PluginRuntime, RequestContext, RuntimeOptions, SendKind,
};
use std::path::PathBuf;

fn component(name: &str) -> Vec<u8> {
    let folder = if matches!(name, "webhook-sender" | "session-token-final") {
        "../plugins/dist-extra"
    } else if name.starts_with("v010-") {
        "../plugins/dist-fixtures"
    } else {
        "../plugins/dist"
    };
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(folder)
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins.sh)", path.display()))
}

/// One final-action call as the service makes it: a slot, then the call.
async fn complete(
    runtime: &PluginRuntime,
    plugin: &LoadedPlugin,
    credential: &Credential,
    ctx: &RequestContext,
) -> PluginResponse {
    let slot = runtime
        .reserve(plugin, Hook::FinalAction)
        .await
        .expect("a slot");
    runtime
        .complete(plugin, slot, credential, ctx)
        .await
        .expect("a response")
}

fn hooks(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("a plugin runtime");
    let ctx = RequestContext {
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("bench".into()),
        accept_language: Some("en".into()),
        request_id: "bench".into(),
        locale: None,
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
        group: None,
    };
    group.bench_function("json-final/complete", |b| {
        b.to_async(&rt)
            .iter(|| async { complete(&runtime, &finalizer, &credential, &ctx).await })
    });

    // A responder that answers every request on a connection with 204.
    let port = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        // The signed JSON body fits one read; answer once per request head.
                        if socket
                            .write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        port
    });
    let env = PluginEnv::new(
        [],
        std::sync::Arc::new(|name: &str| match name {
            "OTP_PLUGIN_WEBHOOK_SECRET" => {
                Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string())
            }
            "OTP_PLUGIN_SESSION_SECRET" => {
                Some("bench-session-secret-0123456789abcdef".to_string())
            }
            _ => None,
        }),
    )
    .expect("an empty plugin_env");
    let manifest = |text: &str| {
        Manifest::parse(text, &env, runtime.max_memory_bytes()).expect("a valid manifest")
    };
    let webhook = runtime
        .load("webhook-sender", &component("webhook-sender"))
        .expect("webhook-sender")
        .with_manifest(manifest(&format!(
            "[outbound]\nallow = [\"http://127.0.0.1:{port}\"]\n[config]\nurl = \"http://127.0.0.1:{port}/hook\"\nsecret = \"${{OTP_PLUGIN_WEBHOOK_SECRET}}\"\n"
        )))
        .expect("webhook-sender manifest");
    group.bench_function("webhook-sender/send", |b| {
        b.to_async(&rt).iter(|| async {
            runtime
                .send(&webhook, &delivery, &ctx)
                .await
                .expect("delivered")
        })
    });

    let token = runtime
        .load("session-token-final", &component("session-token-final"))
        .expect("session-token-final")
        .with_manifest(manifest(
            "[config]\nsecret = \"${OTP_PLUGIN_SESSION_SECRET}\"\nissuer = \"bench\"\ncookie = \"session\"\n",
        ))
        .expect("session-token-final manifest");
    group.bench_function("session-token-final/complete", |b| {
        b.to_async(&rt)
            .iter(|| async { complete(&runtime, &token, &credential, &ctx).await })
    });
    group.finish();
}

/// The same validator, sender and final action built for 0.1.0 and for 0.2.0.
fn contract(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let runtime = PluginRuntime::new(RuntimeOptions::default()).expect("a plugin runtime");
    let ctx = RequestContext {
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("bench".into()),
        accept_language: Some("en".into()),
        request_id: "bench".into(),
        locale: Some("en".into()),
    };
    let delivery = CodeDelivery {
        credential_id: "someone@example.com".into(),
        channel: "email".into(),
        code: "abcdefghij".into(),
        expires_at_ms: 1_800_000_000_000,
        kind: SendKind::First,
    };
    let credential = Credential {
        id: "someone@example.com".into(),
        channel: "email".into(),
        group: Some("email:example.com".into()),
    };
    let mut group = c.benchmark_group("contract");
    for (version, prefix) in [("0.1.0", "v010-"), ("0.2.0", "")] {
        let load = |name: &str| {
            let file = format!("{prefix}{name}");
            runtime.load(&file, &component(&file)).expect(name)
        };
        let validator = load("default-credential");
        group.bench_function(format!("validate/{version}"), |b| {
            b.to_async(&rt).iter(|| async {
                runtime
                    .validate(&validator, "{\"email\":\"someone@example.com\"}", &ctx)
                    .await
                    .expect("valid")
            })
        });
        let sender = load("dev-sender");
        group.bench_function(format!("send/{version}"), |b| {
            b.to_async(&rt)
                .iter(|| async { runtime.send(&sender, &delivery, &ctx).await.expect("sent") })
        });
        let finalizer = load("json-final");
        group.bench_function(format!("complete/{version}"), |b| {
            b.to_async(&rt)
                .iter(|| complete(&runtime, &finalizer, &credential, &ctx))
        });
    }
    group.finish();
}

criterion_group!(benches, hooks, contract);
criterion_main!(benches);
