//! One hook call per default plugin, instantiation included: a fresh store and
//! instance per call, exactly as a request pays for it. Also `webhook-sender` (a signed
//! POST to a minimal HTTP responder on 127.0.0.1, new connection each call, as in
//! production) and `session-token-final` (an HS256 JWT), with their manifests.
//!
//! The `contract` group calls the same three plugins built for each contract version
//! (`plugins/fixtures/v010-*` from the frozen 0.1.0 WIT, the shipped ones on the 0.2.0
//! guest SDK). Benchmarks run one after another, and this machine's speed drifts by
//! several per cent between them, so each `contract/<hook>` interleaves the two builds —
//! one call of each per iteration, in alternating order — and reports the pair's time,
//! then prints each version's mean per call and the ratio of the two.
//!
//! `contract/complete-abi` and `contract/complete-sdk` split the final action's change
//! in two: `v020raw-json-final` is `json-final` on the 0.2.0 WIT with raw wit-bindgen,
//! as the 0.1.0 fixture is written, so the first pair (0.1.0 raw, 0.2.0 raw) is what the
//! contract's types cost and the second (0.2.0 raw, 0.2.0 SDK) what the SDK costs.
//!
//! Both compare builds of one target, `wasm32-wasip2`: the 0.2.0 side is the
//! `wasip2-*` build of the default plugins, which ship built for
//! `wasm32-unknown-unknown`. The `target` group interleaves those two builds of each
//! default plugin, as `contract` does: what importing no WASI saves a call.
//!
//! Needs the components from `scripts/build-plugins.sh`. Run with
//! `cargo bench -p otp-server --bench hooks`.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use otp_server::plugins::{
    CodeDelivery, Credential, Hook, LoadedPlugin, Manifest, PluginEnv, PluginResponse,
    PluginRuntime, RequestContext, RuntimeOptions, SendKind,
};
use std::cell::Cell;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A sender's whole deadline: these benches time single senders, not failover chains.
const SEND_BUDGET: Duration = Duration::from_secs(10);

fn component(name: &str) -> Vec<u8> {
    let folder = if matches!(name, "webhook-sender" | "session-token-final") {
        "../plugins/dist-extra"
    } else if ["v010-", "v020raw-", "wasip2-"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
    {
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
        b.to_async(&rt).iter(|| async {
            runtime
                .send(&sender, &delivery, &ctx, SEND_BUDGET)
                .await
                .expect("sent")
        })
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
                .send(&webhook, &delivery, &ctx, SEND_BUDGET)
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

const VERSIONS: [&str; 2] = ["0.1.0", "0.2.0"];

/// The same validator, sender and final action built for 0.1.0 and for 0.2.0.
fn contract(c: &mut Criterion) {
    let pairs = HookPairs::new(Some("email:example.com"));
    let mut group = c.benchmark_group("contract");
    let finalizers = pairs.bench(&mut group, "contract", VERSIONS, |name| {
        [format!("v010-{name}"), format!("wasip2-{name}")]
    });
    let (rt, runtime, ctx, credential) = (&pairs.rt, &pairs.runtime, &pairs.ctx, &pairs.credential);
    let raw = pairs.load("v020raw-json-final");
    let pairs = [
        (
            "complete-abi",
            [&finalizers[0], &raw],
            ["0.1.0", "0.2.0 raw"],
        ),
        (
            "complete-sdk",
            [&raw, &finalizers[1]],
            ["0.2.0 raw", "0.2.0 SDK"],
        ),
    ];
    for (name, pair, labels) in &pairs {
        let totals = PairTotals::default();
        group.bench_function(*name, |b| {
            b.to_async(rt).iter_custom(|iters| {
                interleaved(iters, &totals, |v| async move {
                    complete(runtime, pair[v], credential, ctx).await;
                })
            })
        });
        totals.report(&format!("contract/{name}"), *labels);
    }
    group.finish();
}

const TARGETS: [&str; 2] = ["wasm32-wasip2", "wasm32-unknown-unknown"];

/// Each default plugin built for wasm32-wasip2 and as shipped, for wasm32-unknown-unknown.
fn target(c: &mut Criterion) {
    let pairs = HookPairs::new(None);
    let mut group = c.benchmark_group("target");
    pairs.bench(&mut group, "target", TARGETS, |name| {
        [format!("wasip2-{name}"), name.to_string()]
    });
    group.finish();
}

/// What the interleaved groups call the hooks with.
struct HookPairs {
    rt: tokio::runtime::Runtime,
    runtime: PluginRuntime,
    ctx: RequestContext,
    delivery: CodeDelivery,
    credential: Credential,
}

impl HookPairs {
    fn new(group: Option<&str>) -> HookPairs {
        HookPairs {
            rt: tokio::runtime::Runtime::new().expect("a tokio runtime"),
            runtime: PluginRuntime::new(RuntimeOptions::default()).expect("a plugin runtime"),
            ctx: RequestContext {
                client_ip: Some("127.0.0.1".into()),
                user_agent: Some("bench".into()),
                accept_language: Some("en".into()),
                request_id: "bench".into(),
                locale: Some("en".into()),
            },
            delivery: CodeDelivery {
                credential_id: "someone@example.com".into(),
                channel: "email".into(),
                code: "abcdefghij".into(),
                expires_at_ms: 1_800_000_000_000,
                kind: SendKind::First,
            },
            credential: Credential {
                id: "someone@example.com".into(),
                channel: "email".into(),
                group: group.map(Into::into),
            },
        }
    }

    fn load(&self, name: &str) -> LoadedPlugin {
        self.runtime.load(name, &component(name)).expect(name)
    }

    /// `validate`, `send` and `complete` in `group`, each interleaving the two builds
    /// `files(plugin)` names of `default-credential`, `dev-sender` and `json-final`, and
    /// each pair's report as `{prefix}/{bench}`. Returns the two final actions.
    fn bench(
        &self,
        group: &mut BenchmarkGroup<'_, WallTime>,
        prefix: &str,
        labels: [&str; 2],
        files: impl Fn(&str) -> [String; 2],
    ) -> [LoadedPlugin; 2] {
        let builds = |name: &str| files(name).map(|file| self.load(&file));
        let validators = builds("default-credential");
        let senders = builds("dev-sender");
        let finalizers = builds("json-final");
        // References, so that each call's `async move` copies them.
        let (runtime, ctx, delivery, credential) =
            (&self.runtime, &self.ctx, &self.delivery, &self.credential);
        let (validators, senders, finalizers_ref) = (&validators, &senders, &finalizers);
        let totals = PairTotals::default();
        group.bench_function("validate", |b| {
            b.to_async(&self.rt).iter_custom(|iters| {
                interleaved(iters, &totals, |v| async move {
                    runtime
                        .validate(&validators[v], "{\"email\":\"someone@example.com\"}", ctx)
                        .await
                        .expect("valid");
                })
            })
        });
        totals.report(&format!("{prefix}/validate"), labels);
        let totals = PairTotals::default();
        group.bench_function("send", |b| {
            b.to_async(&self.rt).iter_custom(|iters| {
                interleaved(iters, &totals, |v| async move {
                    runtime
                        .send(&senders[v], delivery, ctx, SEND_BUDGET)
                        .await
                        .expect("sent");
                })
            })
        });
        totals.report(&format!("{prefix}/send"), labels);
        let totals = PairTotals::default();
        group.bench_function("complete", |b| {
            b.to_async(&self.rt).iter_custom(|iters| {
                interleaved(iters, &totals, |v| async move {
                    complete(runtime, &finalizers_ref[v], credential, ctx).await;
                })
            })
        });
        totals.report(&format!("{prefix}/complete"), labels);
        finalizers
    }
}

/// Time spent in each build's calls (`[before, after]`, e.g. `[0.1.0, 0.2.0]`) over a
/// benchmark's iterations.
#[derive(Default)]
struct PairTotals {
    iterations: Cell<u64>,
    spent: [Cell<Duration>; 2],
}

impl PairTotals {
    /// Prints the means and their ratio (nothing when the benchmark was filtered out).
    fn report(&self, bench: &str, [before, after]: [&str; 2]) {
        if self.iterations.get() == 0 {
            return;
        }
        let n = self.iterations.get() as f64;
        let [old, new] = [0, 1].map(|v| self.spent[v].get().as_secs_f64() * 1e6 / n);
        println!(
            "{bench}: {before} {old:.2} µs, {after} {new:.2} µs per call; {after} {:+.1} % \
             ({} interleaved calls of each)",
            (new / old - 1.0) * 100.0,
            self.iterations.get()
        );
    }
}

/// Runs `iters` iterations of one call of each build (`call(0)` before, `call(1)` after),
/// alternating which goes first; adds each build's time to `totals` and returns the sum.
async fn interleaved<F, Fut>(iters: u64, totals: &PairTotals, call: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut spent = [Duration::ZERO; 2];
    for i in 0..iters {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for v in order {
            let started = Instant::now();
            call(v).await;
            spent[v] += started.elapsed();
        }
    }
    totals.iterations.set(totals.iterations.get() + iters);
    for (total, more) in totals.spent.iter().zip(spent) {
        total.set(total.get() + more);
    }
    spent[0] + spent[1]
}

criterion_group!(benches, hooks, contract, target);
criterion_main!(benches);
