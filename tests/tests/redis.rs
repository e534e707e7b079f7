//! Scale-out on Redis: two server processes sharing one Redis, restarts, Redis
//! crashes, and what Redis holds. Each test starts its own `redis-server`.

use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use otp_server_blackbox::{
    plugin, scratch_dir, server_binary, RedisServer, Server, StatusCode, DEFAULT_PLUGINS,
    TEST_MASTER_KEY,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn plugins_folder() -> std::path::PathBuf {
    let dir = scratch_dir("shared-plugins");
    for name in DEFAULT_PLUGINS {
        otp_server_blackbox::install(&plugin(name), &dir, name);
    }
    dir
}

fn on(redis: &RedisServer, plugins: &std::path::Path) -> Server {
    Server::builder().plugins_dir(plugins).redis(redis).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_sessions_and_single_use() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = Arc::new(on(&redis, &plugins));
    let b = Arc::new(on(&redis, &plugins));

    // Create on A, resend and verify on B.
    let created = a.create("\"shared@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let cookie = created.cookie().unwrap();
    b.advance_clock(31_000).await;
    let resent = b.resend(Some(&cookie)).await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text());
    let cookie2 = resent.cookie().unwrap();
    let code = b.wait_code("\"shared@example.com\"", 1);
    // The pre-resend state is dead on both instances.
    for server in [&a, &b] {
        let replay = server.verify(&code, Some(&cookie)).await;
        assert_eq!(replay.error(), "OTP:INVALID_COOKIE");
    }
    let ok = a.verify(&code, Some(&cookie2)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let again = b.verify(&code, Some(&cookie2)).await;
    assert_eq!(again.error(), "OTP:INVALID_COOKIE");

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
            (
                answer.status,
                if answer.status == StatusCode::OK {
                    String::new()
                } else {
                    answer.error()
                },
            )
        }));
    }
    let mut successes = 0;
    for task in tasks {
        let (status, error) = task.await.unwrap();
        if status == StatusCode::OK {
            successes += 1;
        } else {
            assert_eq!(
                (status, error.as_str()),
                (StatusCode::BAD_REQUEST, "OTP:INVALID_COOKIE")
            );
        }
    }
    assert_eq!(successes, 1);
}

#[tokio::test]
async fn sessions_survive_restarting_every_instance() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let created = a.create("\"restart@example.com\"", None).await;
    let cookie = created.cookie().unwrap();
    let code = a.wait_code("\"restart@example.com\"", 1);
    drop(a);
    // New processes: the KEK comes back from Redis, unwrapped with the master key.
    let b = on(&redis, &plugins);
    let c = on(&redis, &plugins);
    let wrong = c.verify("0000000000", Some(&cookie)).await;
    let cookie = if wrong.status == StatusCode::FORBIDDEN {
        wrong.cookie().unwrap()
    } else {
        panic!("the cookie did not open after a restart: {}", wrong.text());
    };
    let ok = b.verify(&code, Some(&cookie)).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

#[tokio::test]
async fn redis_down_fails_closed_and_recovers() {
    let mut redis = RedisServer::start();
    let plugins = plugins_folder();
    let server = on(&redis, &plugins);
    let created = server.create("\"a@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK);
    assert_eq!(server.ready_details().await.status, StatusCode::OK);

    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let a = server.create("\"b@example.com\"", None).await;
        let took = started.elapsed();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
        assert_eq!(a.error(), "STORE:UNAVAILABLE");
        assert!(took < Duration::from_secs(2), "answered after {took:?}");
        let v = server
            .verify("abcdefghij", Some(&created.cookie().unwrap()))
            .await;
        assert_eq!(v.error(), "STORE:UNAVAILABLE", "{}", v.text());
    }
    assert_eq!(server.get("/health").await.status, StatusCode::OK);
    let ready = server.ready_details().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["store"], "unavailable");
    // The public /ready follows within its second of reuse.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.get("/ready").await.status != StatusCode::SERVICE_UNAVAILABLE {
        assert!(Instant::now() < deadline, "public /ready still says ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = server.create("\"c@example.com\"", None).await;
        if a.status == StatusCode::OK {
            let cookie = a.cookie().unwrap();
            let code = server.wait_code("\"c@example.com\"", 1);
            assert_eq!(
                server.verify(&code, Some(&cookie)).await.status,
                StatusCode::OK
            );
            break;
        }
        assert_ne!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", a.text());
        assert!(Instant::now() < deadline, "not served again: {}", a.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!server.log_text().contains("panicked"));
}

#[tokio::test]
async fn a_flood_of_public_ready_probes_pings_redis_about_once_a_second() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let server = on(&redis, &plugins);
    let pings = || -> u64 {
        let mut c = redis::Client::open(redis.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut c)
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |n| n.parse().unwrap())
    };
    let before = pings();
    let started = Instant::now();
    for _ in 0..200 {
        assert_eq!(server.get("/ready").await.status, StatusCode::OK);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let pinged = pings() - before;
    assert!(
        pinged <= 2 * (seconds + 1),
        "{pinged} pings for 200 probes in {seconds} s"
    );
}

/// Without the limits (which make a request's id change in their own script on one
/// Redis) a wrong code's successor id goes through the id store's replace: the successor
/// lives as long as the session has left (not as long as the old id was given), and the
/// spent state's replace finds nothing and is refused.
#[tokio::test]
async fn a_successor_id_gets_the_sessions_remaining_life_and_a_spent_one_is_refused() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let server = Server::builder()
        .plugins_dir(&plugins)
        .redis(&redis)
        .env("OTP_LIMITS_ENABLED", "false")
        .start();
    let credential = "\"successor@example.com\"";
    let created = server.create(credential, None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let cookie = created.cookie().unwrap();
    let code = server.wait_code(credential, 1);
    let mut con = redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let ttl_of_the_live_id = |con: &mut redis::Connection| -> i64 {
        let keys: Vec<String> = redis::cmd("KEYS").arg("otp:s:*").query(con).unwrap();
        assert_eq!(keys.len(), 1, "one live id: {keys:?}");
        redis::cmd("PTTL").arg(&keys[0]).query(con).unwrap()
    };
    // Created with the session's 180 s.
    assert!(ttl_of_the_live_id(&mut con) > 170_000);

    // 60 s later (the server's clock) a wrong code: the successor has 120 s left.
    server.advance_clock(60_000).await;
    let last = code.chars().last().expect("a code");
    let wrong = format!(
        "{}{}",
        &code[..code.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    let rejected = server.verify(&wrong, Some(&cookie)).await;
    assert_eq!(rejected.error(), "OTP:INCORRECT", "{}", rejected.text());
    let successor = rejected.cookie().expect("the successor state");
    let ttl = ttl_of_the_live_id(&mut con);
    assert!((100_000..=121_000).contains(&ttl), "successor TTL {ttl} ms");

    // The spent state: its id is gone, so the rename is refused and nothing changes.
    let replayed = server.verify(&wrong, Some(&cookie)).await;
    assert_eq!(
        replayed.error(),
        "OTP:INVALID_COOKIE",
        "{}",
        replayed.text()
    );
    assert!((100_000..=121_000).contains(&ttl_of_the_live_id(&mut con)));
    let verified = server.verify(&code, Some(&successor)).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
}

#[tokio::test]
async fn redis_holds_no_credential_code_or_key() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let server = on(&redis, &plugins);
    let mut codes = Vec::new();
    let mut cookie: Option<String> = None;
    for (i, credential) in ["alice@example.com", "bob@example.org", "+14155550100"]
        .iter()
        .enumerate()
    {
        let a = server
            .create(&format!("\"{credential}\""), cookie.as_deref())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        cookie = a.cookie();
        codes.push(server.wait_code(&format!("\"{credential}\""), 1));
        assert_eq!(codes.len(), i + 1);
    }

    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(!keys.is_empty());
    let mut everything: Vec<Vec<u8>> = Vec::new();
    let mut wrapped_keks = Vec::new();
    for key in &keys {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut con).unwrap();
        let value: Vec<u8> = match kind.as_str() {
            "string" => redis::cmd("GET").arg(key).query(&mut con).unwrap(),
            // The key store's index and revocation list: ids and times.
            "zset" => {
                let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query(&mut con)
                    .unwrap();
                members.concat()
            }
            other => panic!("unexpected {other} at {}", String::from_utf8_lossy(key)),
        };
        let name = String::from_utf8_lossy(key).to_string();
        if let Some(id) = name
            .strip_prefix("otp:kek:{keys}:")
            .filter(|id| id.len() == 32)
        {
            wrapped_keks.push((id.to_string(), value.clone()));
        }
        everything.push(key.clone());
        everything.push(value);
    }
    assert!(!wrapped_keks.is_empty(), "the KEK is in Redis: {keys:?}");
    // Open the stored KEKs with the master key the way the server does (AES-256-GCM,
    // id and creation time authenticated), to know what the plaintext key looks like —
    // and find it nowhere.
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(TEST_MASTER_KEY)
            .unwrap(),
    )
    .unwrap();
    let mut plaintext_keys = Vec::new();
    for (id, stored) in &wrapped_keks {
        assert_eq!(
            stored.len(),
            69,
            "version, creation time, nonce, sealed key"
        );
        let mut aad = b"otp-server kek record v1".to_vec();
        aad.extend_from_slice(&hex::decode(id).unwrap());
        aad.extend_from_slice(&stored[1..9]);
        let key = cipher
            .decrypt(
                aes_gcm::Nonce::from_slice(&stored[9..21]),
                aes_gcm::aead::Payload {
                    msg: &stored[21..],
                    aad: &aad,
                },
            )
            .expect("sealed with the master key");
        plaintext_keys.push(key);
    }
    let needles: Vec<Vec<u8>> = [
        "alice@example.com",
        "bob@example.org",
        "+14155550100",
        "alice",
        "4155550100",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain(codes.iter().map(|c| c.as_bytes().to_vec()))
    .chain(plaintext_keys.iter().map(|k| k.to_vec()))
    .chain(plaintext_keys.iter().map(|k| hex::encode(k).into_bytes()))
    .collect();
    for blob in &everything {
        for needle in &needles {
            assert!(
                !blob.windows(needle.len()).any(|w| w == needle.as_slice()),
                "found a secret in Redis: {:?}",
                String::from_utf8_lossy(blob)
            );
        }
    }
}

#[test]
fn redis_mode_needs_the_right_master_key() {
    let redis = RedisServer::start();
    let run = |key: Option<&str>| {
        let mut command = std::process::Command::new(server_binary());
        command
            .env("OTP_STORE", redis.url())
            .env("OTP_LISTEN", "127.0.0.1:0")
            .env("OTP_ADMIN_LISTEN", "127.0.0.1:0")
            .env("OTP_PLUGINS_DIR", scratch_dir("masterkey"))
            .env("OTP_CACHE_DIR", "");
        if let Some(key) = key {
            command.env("OTP_MASTER_KEY", key);
        }
        command
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // No master key: refuses to start, saying so.
    let output = run(None).wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("OTP_MASTER_KEY"));

    // A first server stores its KEK wrapped with the test key...
    let plugins = plugins_folder();
    let first = on(&redis, &plugins);
    drop(first);
    // ...so a different master key is reported as such.
    let other = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let output = run(Some(&other)).wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("master key does not match"), "{stderr}");
}

#[tokio::test]
async fn one_instance_rotates_and_the_others_follow() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let rotating = |s: otp_server_blackbox::ServerBuilder| s.env("OTP_KEK_ROTATION_SECS", "60");
    let a = rotating(Server::builder().plugins_dir(&plugins).redis(&redis)).start();
    let b = rotating(Server::builder().plugins_dir(&plugins).redis(&redis)).start();
    let before = a
        .create("\"old@example.com\"", None)
        .await
        .cookie()
        .unwrap();

    // A's clock passes the rotation interval: A rotates, B adopts the new key.
    a.advance_clock(61_000).await;
    a.wait_for_log(
        "key-encryption key rotated (shared)",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("A did not rotate:\n{}", a.log_text()));
    let after = a
        .create("\"new@example.com\"", None)
        .await
        .cookie()
        .unwrap();
    // B opens a cookie sealed with the new key at once (fetching it if needed)...
    let answer = b.verify("0000000000", Some(&after)).await;
    assert_eq!(answer.error(), "OTP:INCORRECT", "{}", answer.text());
    // ...and one sealed before the rotation still opens everywhere.
    let answer = b.verify("0000000000", Some(&before)).await;
    assert_eq!(answer.error(), "OTP:INCORRECT", "{}", answer.text());
    b.wait_for_log(
        "adopted the shared key-encryption key",
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("B did not adopt the new key:\n{}", b.log_text()));
    // Only one instance rotated.
    assert!(!b.log_text().contains("key-encryption key rotated (shared)"));
}
