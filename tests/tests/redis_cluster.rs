//! Highly available Redis: two server instances on a 3-master + 3-replica Redis Cluster
//! (single use under a 64-way race; a master killed under load), and one on a
//! Sentinel-managed master that is killed. Each test starts its own deployment.
//!
//! The stated bound: with the cluster's `cluster-node-timeout` at 1 s (Sentinel's
//! `down-after-milliseconds` at 1 s), service resumes within 15 s of the kill; in
//! between, requests touching the dead master's slots answer 503 `STORE:UNAVAILABLE`.

use otp_server_blackbox::redis_cluster::{RedisCluster, RedisSentinel};
use otp_server_blackbox::{plugin, scratch_dir, Server, StatusCode, DEFAULT_PLUGINS};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RESUME_BOUND: Duration = Duration::from_secs(15);

fn plugins_folder() -> std::path::PathBuf {
    let dir = scratch_dir("ha-plugins");
    for name in DEFAULT_PLUGINS {
        otp_server_blackbox::install(&plugin(name), &dir, name);
    }
    dir
}

/// A server on `url`. Hook deadlines are generous: the load below runs on a busy test
/// machine, and a hook timing out (500 `PLUGIN:FAILED`) is not what these tests are about.
fn on(url: &str, plugins: &std::path::Path) -> Server {
    Server::builder()
        .plugins_dir(plugins)
        .store_url(url)
        .env("OTP_VALIDATE_DEADLINE_MS", "10000")
        .env("OTP_FINAL_DEADLINE_MS", "10000")
        .start()
}

/// What a request answered, for the failover checks: anything but these fails the test.
fn expect_allowed(answer: &otp_server_blackbox::Answer, allowed: &[(StatusCode, &str)]) {
    assert_ne!(
        answer.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        answer.text()
    );
    if answer.status == StatusCode::OK {
        return;
    }
    let error = answer.error();
    assert!(
        allowed
            .iter()
            .any(|(status, code)| *status == answer.status && *code == error)
            || (answer.status == StatusCode::SERVICE_UNAVAILABLE && error == "STORE:UNAVAILABLE"),
        "unexpected answer {}: {}",
        answer.status,
        answer.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_keeps_single_use_and_survives_losing_a_master() {
    let mut cluster = RedisCluster::start();
    let plugins = plugins_folder();
    let a = Arc::new(on(&cluster.url(), &plugins));
    let b = Arc::new(on(&cluster.url(), &plugins));

    // Create on A, verify on B, replay refused on both.
    let created = a.create("\"c@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let cookie = created.cookie().unwrap();
    let code = a.wait_code("\"c@example.com\"", 1);
    assert_eq!(b.verify(&code, Some(&cookie)).await.status, StatusCode::OK);
    for server in [&a, &b] {
        assert_eq!(
            server.verify(&code, Some(&cookie)).await.error(),
            "OTP:INVALID_COOKIE"
        );
    }

    // 64 simultaneous verifies of one cookie, split across both: exactly one success.
    let created = a.create("\"race@example.com\"", None).await;
    let cookie = created.cookie().unwrap();
    let code = a.wait_code("\"race@example.com\"", 1);
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let server = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (barrier, cookie, code) = (barrier.clone(), cookie.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = server.verify(&code, Some(&cookie)).await;
            let error = (answer.status != StatusCode::OK).then(|| answer.error());
            (answer.status, error)
        }));
    }
    let mut successes = 0;
    for task in tasks {
        match task.await.unwrap() {
            (StatusCode::OK, _) => successes += 1,
            (status, error) => assert_eq!(
                (status, error.as_deref()),
                (StatusCode::BAD_REQUEST, Some("OTP:INVALID_COOKIE"))
            ),
        }
    }
    assert_eq!(successes, 1);

    // A load of creates and verifies (with replays) on both instances; kill the master
    // serving the key store's slot (and a third of the sessions') in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));
    let last_unavailable: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let mut workers = Vec::new();
    for w in 0..6 {
        let (a, b) = (a.clone(), b.clone());
        let (stop, successes) = (stop.clone(), successes.clone());
        let last_unavailable = last_unavailable.clone();
        workers.push(tokio::spawn(async move {
            let unavailable = |answer: &otp_server_blackbox::Answer| {
                if answer.status == StatusCode::SERVICE_UNAVAILABLE {
                    *last_unavailable.lock().unwrap() = Some(Instant::now());
                }
            };
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (first, second) = if (w + i) % 2 == 0 { (&a, &b) } else { (&b, &a) };
                let credential = format!("\"w{w}-{i}@example.com\"");
                let created = first.create(&credential, None).await;
                expect_allowed(&created, &[]);
                unavailable(&created);
                let Some(cookie) = created.cookie() else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let code = tokio::task::block_in_place(|| first.wait_code(&credential, 1));
                let verified = second.verify(&code, Some(&cookie)).await;
                expect_allowed(
                    &verified,
                    &[(StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE")],
                );
                unavailable(&verified);
                if verified.status != StatusCode::OK {
                    continue;
                }
                successes.fetch_add(1, Ordering::Relaxed);
                // The used-up state is never accepted again, on either instance.
                for server in [first, second] {
                    let replay = server.verify(&code, Some(&cookie)).await;
                    unavailable(&replay);
                    assert!(
                        replay.status == StatusCode::BAD_REQUEST
                            && replay.error() == "OTP:INVALID_COOKIE"
                            || replay.status == StatusCode::SERVICE_UNAVAILABLE
                                && replay.error() == "STORE:UNAVAILABLE",
                        "a used cookie state answered {}: {}",
                        replay.status,
                        replay.text()
                    );
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        successes.load(Ordering::Relaxed) > 0,
        "the load runs before the kill"
    );
    let key_store_slot = cluster.slot_of("otp:kek:{keys}:current");
    let killed_at = Instant::now();
    let port = tokio::task::block_in_place(|| cluster.kill_master_of("otp:kek:{keys}:current"));
    // The replica takes over...
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let promoted = tokio::task::block_in_place(|| {
            cluster.master_for_slot(key_store_slot).is_some() && cluster.is_healthy()
        });
        if promoted {
            break;
        }
        assert!(
            killed_at.elapsed() < RESUME_BOUND,
            "no replica took over from port {port} within {RESUME_BOUND:?}"
        );
    }
    let promoted_after = killed_at.elapsed();
    // ...and the service resumes: the load keeps completing sessions, and for its last
    // two seconds nothing answers 503.
    let after = successes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();
    for worker in workers {
        worker
            .await
            .expect("a load worker failed (see its panic above)");
    }
    assert!(
        successes.load(Ordering::Relaxed) >= after + 12,
        "the load did not keep going after the failover"
    );
    let last_503 = *last_unavailable.lock().unwrap();
    if let Some(last) = last_503 {
        assert!(
            last + Duration::from_secs(2) < stopped_at,
            "still answering 503 {:?} after the kill",
            last.saturating_duration_since(killed_at)
        );
        assert!(last.saturating_duration_since(killed_at) < RESUME_BOUND);
    }
    eprintln!(
        "replica promoted {promoted_after:?} after the kill; last 503 {:?} after the kill",
        last_503.map(|last| last.saturating_duration_since(killed_at))
    );
    for server in [&a, &b] {
        let log = server.log_text();
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sentinel_failover_is_followed() {
    let mut sentinel = RedisSentinel::start();
    let plugins = plugins_folder();
    let server = on(&sentinel.url(), &plugins);

    let created = server.create("\"s@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let cookie = created.cookie().unwrap();
    let code = server.wait_code("\"s@example.com\"", 1);
    // Let the replica catch up (replication is asynchronous), then crash the master.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let old_master = sentinel.master_port();
    sentinel.kill_master();
    let killed_at = Instant::now();

    let mut n = 0;
    loop {
        n += 1;
        let credential = format!("\"after-{n}@example.com\"");
        let answer = server.create(&credential, None).await;
        expect_allowed(&answer, &[]);
        if answer.status == StatusCode::OK {
            let code = server.wait_code(&credential, 1);
            let verified = server.verify(&code, Some(&answer.cookie().unwrap())).await;
            assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
            break;
        }
        assert!(
            killed_at.elapsed() < RESUME_BOUND,
            "no service {RESUME_BOUND:?} after the master died: {}",
            answer.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("service resumed {:?} after the kill", killed_at.elapsed());
    assert_ne!(sentinel.reported_master(), Some(old_master));
    // The session created before the failover lives on the promoted replica.
    let verified = server.verify(&code, Some(&cookie)).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    assert!(!server.log_text().contains("panicked"));
}
