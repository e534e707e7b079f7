//! The plugin runtime in-process, with the real plugin components: each default
//! plugin's hook called with exact results, faults contained within their limits,
//! and a fresh instance per call.
//!
//! The components come from `plugins/dist` and `plugins/dist-fixtures`, built by
//! `scripts/build-plugins.sh` (the README's test command runs it first).

use otp_server::plugins::{
    CodeDelivery, Credential, Hook, HookError, HookLimits, LoadError, LoadedPlugin, PluginRuntime,
    RequestContext, RuntimeOptions, SendKind,
};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn component(folder: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(folder)
        .join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/build-plugins.sh)", path.display()))
}

fn runtime() -> PluginRuntime {
    const MIB: usize = 1024 * 1024;
    let limits = |ms| HookLimits {
        deadline: Duration::from_millis(ms),
        memory_bytes: 32 * MIB,
    };
    PluginRuntime::new(RuntimeOptions {
        validate: limits(100),
        send: limits(1000),
        final_action: limits(1000),
        events: limits(1000),
        validate_slots: 16,
        send_slots: 16,
        final_slots: 16,
        cache_dir: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-wasm-cache"),
        ),
    })
    .expect("a runtime")
}

fn load(runtime: &PluginRuntime, folder: &str, name: &str) -> LoadedPlugin {
    runtime
        .load(name, &component(folder, name))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ctx() -> RequestContext {
    RequestContext {
        client_ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        accept_language: None,
        request_id: "bench".into(),
        locale: None,
    }
}

/// A first code for `a@example.com` by email.
fn delivery() -> CodeDelivery {
    CodeDelivery {
        credential_id: "a@example.com".into(),
        channel: "email".into(),
        code: "abc123".into(),
        expires_at_ms: 1_700_000_000_000,
        kind: SendKind::First,
    }
}

#[tokio::test]
async fn default_credential_accepts_what_the_reference_accepts() {
    let rt = runtime();
    let p = load(&rt, "plugins/dist", "default-credential");
    for (body, id) in [
        ("42", "42"),
        ("0", "0"),
        ("\"bob\"", "\"bob\""),
        (" {\"a\" : 1,\n \"b\": [1, 2]} ", "{\"a\":1,\"b\":[1,2]}"),
        ("[0]", "[0]"),
    ] {
        let c = rt.validate(&p, body, &ctx()).await.unwrap();
        assert_eq!(
            c,
            Credential {
                id: id.into(),
                channel: "default".into(),
                group: None,
            },
            "{body}"
        );
    }
    for body in ["false", "true", "null", "\"\"", "{}", "[]"] {
        match rt.validate(&p, body, &ctx()).await {
            Err(HookError::Rejected(reason)) => assert!(!reason.is_empty()),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn email_phone_credential_normalizes() {
    let rt = runtime();
    let p = load(&rt, "plugins/dist", "email-phone-credential");
    for (body, id, channel, group) in [
        (
            "{\"email\": \" Alice@Example.COM \"}",
            "Alice@example.com",
            "email",
            "email:example.com",
        ),
        (
            "\"bob@EXAMPLE.org\"",
            "bob@example.org",
            "email",
            "email:example.org",
        ),
        (
            "{\"phone\": \"+44 20 7946-0958\"}",
            "+442079460958",
            "sms",
            "sms:+44",
        ),
        ("\"+1 (415) 555.0100\"", "+14155550100", "sms", "sms:+1"),
    ] {
        let c = rt.validate(&p, body, &ctx()).await.unwrap();
        assert_eq!(
            c,
            Credential {
                id: id.into(),
                channel: channel.into(),
                group: Some(group.into()),
            },
            "{body}"
        );
    }
    for body in [
        "{\"email\": \"no-at-sign\"}",
        "{\"phone\": \"12345\"}",
        "{\"phone\": \"+0123456789\"}",
        "{\"email\": \"a@b.c\", \"phone\": \"+14155550100\"}",
        "{\"fax\": \"+14155550100\"}",
        "42",
        "\"neither\"",
    ] {
        assert!(
            matches!(
                rt.validate(&p, body, &ctx()).await,
                Err(HookError::Rejected(_))
            ),
            "{body}"
        );
    }
}

#[tokio::test]
async fn dev_sender_and_json_final() {
    let rt = runtime();
    let sender = load(&rt, "plugins/dist", "dev-sender");
    let delivery = delivery();
    rt.send(&sender, &delivery, &ctx(), rt.send_budget(&sender))
        .await
        .unwrap();

    let finalizer = load(&rt, "plugins/dist", "json-final");
    let credential = Credential {
        id: "a\"b".into(),
        channel: "default".into(),
        group: None,
    };
    let slot = rt.reserve(&finalizer, Hook::FinalAction).await.unwrap();
    let r = rt
        .complete(&finalizer, slot, &credential, &ctx())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v == "application/json"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"credential": "a\"b", "message": "successfully verified"})
    );
}

/// The default plugins are built for `wasm32-unknown-unknown`: they import no WASI, and
/// the guest SDK's allocator serves a call from the free part of the initial memory, so
/// no call grows it. The memory cap here is the initial memory (320 KiB, set in
/// `plugins/.cargo/config.toml`) plus less than a page: a growth fails the call. The
/// standard library's allocator on that target grows memory on a call's first allocation.
#[tokio::test]
async fn default_plugins_import_no_wasi_and_never_grow_their_memory() {
    const KIB: usize = 1024;
    let limits = HookLimits {
        deadline: Duration::from_secs(1),
        memory_bytes: 320 * KIB + 32 * KIB,
    };
    let rt = PluginRuntime::new(RuntimeOptions {
        validate: limits,
        send: limits,
        final_action: limits,
        events: limits,
        ..RuntimeOptions::default()
    })
    .expect("a runtime");
    let plugins = [
        "default-credential",
        "email-phone-credential",
        "dev-sender",
        "json-final",
    ]
    .map(|name| load(&rt, "plugins/dist", name));
    for p in &plugins {
        let wasi: Vec<_> = p
            .imports
            .iter()
            .filter(|i| i.starts_with("wasi:"))
            .collect();
        assert!(wasi.is_empty(), "{} imports {wasi:?}", p.name);
    }
    let [validator, email, sender, finalizer] = &plugins;

    // About 90 KB of heap for serde_json's values (a String per number): more than a page.
    let numbers = (0..2000)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for _ in 0..3 {
        let c = rt
            .validate(validator, &format!("[{numbers}]"), &ctx())
            .await
            .unwrap();
        assert_eq!(c.id, format!("[{numbers}]"));
    }
    let c = rt
        .validate(email, "{\"email\":\"Someone@Example.com\"}", &ctx())
        .await
        .unwrap();
    assert_eq!(c.id, "Someone@example.com");
    let delivery = delivery();
    rt.send(sender, &delivery, &ctx(), rt.send_budget(sender))
        .await
        .unwrap();
    let credential = Credential {
        id: "a@example.com".into(),
        channel: "email".into(),
        group: None,
    };
    let slot = rt.reserve(finalizer, Hook::FinalAction).await.unwrap();
    let r = rt
        .complete(finalizer, slot, &credential, &ctx())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn roles_are_detected_from_exports() {
    let rt = runtime();
    let names = |p: &LoadedPlugin| p.hooks.iter().map(|h| h.name()).collect::<Vec<_>>();
    assert_eq!(
        names(&load(&rt, "plugins/dist", "default-credential")),
        ["credential-validation"]
    );
    assert_eq!(names(&load(&rt, "plugins/dist", "dev-sender")), ["sending"]);
    assert_eq!(
        names(&load(&rt, "plugins/dist", "json-final")),
        ["final-action"]
    );
    assert_eq!(
        names(&load(&rt, "plugins/dist-fixtures", "fixture-all")),
        ["credential-validation", "sending", "final-action"]
    );
    match rt.load(
        "empty",
        &component("plugins/dist-fixtures", "fixture-empty"),
    ) {
        Err(LoadError::Contract(_)) => {}
        other => panic!("{other:?}"),
    }
    match rt.load("garbage", b"\0asm\x0d\0\x01\0nonsense") {
        Err(LoadError::Compile(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    let rt = runtime();
    let counter = load(&rt, "plugins/dist-fixtures", "fixture-counter");
    for _ in 0..5 {
        let c = rt.validate(&counter, "1", &ctx()).await.unwrap();
        assert_eq!(c.id, "1", "a static survived from one call to the next");
    }
}

#[tokio::test]
async fn faults_are_contained() {
    let rt = runtime();
    let good = load(&rt, "plugins/dist", "default-credential");

    let trap = load(&rt, "plugins/dist-fixtures", "fixture-trap");
    match rt.validate(&trap, "1", &ctx()).await {
        Err(HookError::Failed { plugin, reason }) => {
            assert_eq!(plugin, "fixture-trap");
            assert!(!reason.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(rt.validate(&good, "1", &ctx()).await.is_ok());

    let endless = load(&rt, "plugins/dist-fixtures", "fixture-loop");
    let started = Instant::now();
    match rt.validate(&endless, "1", &ctx()).await {
        Err(HookError::Failed { reason, .. }) => assert_eq!(reason, "deadline exceeded"),
        other => panic!("{other:?}"),
    }
    let took = started.elapsed();
    // Deadline 100 ms; the margin covers the epoch tick and a loaded CI machine.
    assert!(took < Duration::from_millis(600), "stopped after {took:?}");
    assert!(
        took >= Duration::from_millis(100),
        "stopped early: {took:?}"
    );
    assert!(rt.validate(&good, "1", &ctx()).await.is_ok());

    // The memory bomb gets a generous deadline so that it is the 16 MiB cap, not the
    // clock, that stops it, however loaded the machine is.
    let roomy = PluginRuntime::new(RuntimeOptions {
        validate: HookLimits {
            deadline: Duration::from_secs(5),
            memory_bytes: 16 * 1024 * 1024,
        },
        ..RuntimeOptions::default()
    })
    .expect("a runtime");
    let bomb = load(&roomy, "plugins/dist-fixtures", "fixture-alloc");
    match roomy.validate(&bomb, "1", &ctx()).await {
        Err(HookError::Failed { reason, .. }) => assert_eq!(reason, "memory cap exceeded"),
        other => panic!("{other:?}"),
    }
    assert!(rt.validate(&good, "1", &ctx()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_does_not_block_other_calls() {
    let rt = std::sync::Arc::new(runtime());
    let endless = std::sync::Arc::new(load(&rt, "plugins/dist-fixtures", "fixture-loop"));
    let good = load(&rt, "plugins/dist", "default-credential");
    let spinning = {
        let (rt, endless) = (rt.clone(), endless.clone());
        tokio::spawn(async move { rt.validate(&endless, "1", &ctx()).await })
    };
    // While the loop spins, other calls complete.
    for _ in 0..5 {
        assert!(rt.validate(&good, "1", &ctx()).await.is_ok());
    }
    assert!(spinning.await.unwrap().is_err());
}
