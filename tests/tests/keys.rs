//! The shared key store on Redis: a current pointer naming a deleted record (or not an
//! id at all) is repaired, a key rotated from a host whose clock is behind is adopted
//! everywhere, a tampered record is refused, `otp-server keys rotate --revoke-current` ends every
//! cookie sealed with the revoked key on every instance, and `otp-server keys rewrap`
//! moves the stored keys to a new master key without ending a session. Each test starts
//! its own `redis-server` and runs the real `otp-server` binary.

use base64::Engine;
use otp_server_blackbox::{
    plugin, scratch_dir, server_binary, RedisServer, Server, StatusCode, DEFAULT_PLUGINS,
    TEST_MASTER_KEY,
};
use std::time::Duration;

const POINTER: &str = "otp:kek:{keys}:current";

fn plugins_folder() -> std::path::PathBuf {
    let dir = scratch_dir("keys-plugins");
    for name in DEFAULT_PLUGINS {
        otp_server_blackbox::install(&plugin(name), &dir, name);
    }
    dir
}

fn on(redis: &RedisServer, plugins: &std::path::Path) -> Server {
    Server::builder().plugins_dir(plugins).redis(redis).start()
}

fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn current_id(redis: &RedisServer) -> String {
    redis::cmd("GET")
        .arg(POINTER)
        .query(&mut connection(redis))
        .unwrap()
}

/// Runs `otp-server keys ARGS…` against `redis`; (success, stdout + stderr).
fn keys_command(redis: &RedisServer, args: &[&str]) -> (bool, String) {
    keys_command_with(redis, args, &[("OTP_MASTER_KEY", TEST_MASTER_KEY)])
}

/// [`keys_command`] with these settings (the master keys among them).
fn keys_command_with(redis: &RedisServer, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(server_binary())
        .arg("keys")
        .args(args)
        .env_clear()
        .env("OTP_STORE", redis.url())
        .envs(env.iter().copied())
        .output()
        .expect("running otp-server keys");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

/// A wrong code on a cookie: `OTP:INCORRECT` if the cookie opened, with its successor.
async fn opens(server: &Server, cookie: &str) -> (String, Option<String>) {
    let answer = server.verify("0000000000", Some(cookie)).await;
    (answer.error(), answer.cookie())
}

#[tokio::test]
async fn a_current_pointer_naming_a_deleted_record_is_repaired() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    {
        let a = on(&redis, &plugins);
        let _ = a.create("\"x@example.com\"", None).await;
    }
    let first = current_id(&redis);
    let _: () = redis::cmd("DEL")
        .arg(format!("otp:kek:{{keys}}:{first}"))
        .query(&mut connection(&redis))
        .unwrap();

    // Every instance restarts: one repairs the pointer, all agree on the new key.
    let a = on(&redis, &plugins);
    let b = on(&redis, &plugins);
    let repaired = current_id(&redis);
    assert_ne!(repaired, first, "a new key is current");
    let record: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("otp:kek:{{keys}}:{repaired}"))
        .query(&mut connection(&redis))
        .unwrap();
    assert!(record.is_some(), "and its record exists");
    let repairs = [&a, &b]
        .iter()
        .filter(|s| s.log_text().contains("repaired with a new key"))
        .count();
    assert_eq!(repairs, 1, "exactly one instance repaired");
    for (sealer, opener) in [(&a, &b), (&b, &a)] {
        let created = sealer.create("\"agree@example.com\"", None).await;
        assert_eq!(created.status, StatusCode::OK, "{}", created.text());
        let (error, _) = opens(opener, &created.cookie().unwrap()).await;
        assert_eq!(error, "OTP:INCORRECT");
    }
}

/// An instance starting while the pointer needs repair and another holds the rotation
/// lock (one that crashed: the lock expires by itself) waits for it instead of exiting.
#[tokio::test]
async fn a_start_during_someone_elses_repair_waits_for_the_lock() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    drop(on(&redis, &plugins));
    let first = current_id(&redis);
    let mut con = connection(&redis);
    redis::cmd("DEL")
        .arg(format!("otp:kek:{{keys}}:{first}"))
        .query::<()>(&mut con)
        .unwrap();
    // Held for 6 s by a holder that will never release it: longer than the 5 s the key
    // store waits for the shared key to settle.
    redis::cmd("SET")
        .arg("otp:kek:{keys}:rotating")
        .arg("crashed-holder")
        .arg("PX")
        .arg(6000)
        .query::<()>(&mut con)
        .unwrap();
    let a = on(&redis, &plugins);
    assert!(
        a.log_text()
            .contains("waiting for the shared key-encryption key"),
        "{}",
        a.log_text()
    );
    assert_ne!(current_id(&redis), first, "repaired once the lock expired");
    let created = a.create("\"waited@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
}

#[tokio::test]
async fn a_current_pointer_that_is_not_an_id_is_repaired() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let _: () = redis::cmd("SET")
        .arg(POINTER)
        .arg("not-a-key-id")
        .query(&mut connection(&redis))
        .unwrap();
    // Both start (neither waits for a repair that never comes) and agree on one key.
    let a = on(&redis, &plugins);
    let b = on(&redis, &plugins);
    let repaired = current_id(&redis);
    assert_eq!(repaired.len(), 32, "a key id is current: {repaired}");
    let created = a.create("\"garbled@example.com\"", None).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    assert_eq!(
        opens(&b, &created.cookie().unwrap()).await.0,
        "OTP:INCORRECT"
    );
}

/// Waits up to 10 s for the shared pointer to name a key `ready` accepts; fails with
/// `why` otherwise.
async fn pointer_soon(redis: &RedisServer, ready: impl Fn(&str) -> bool, why: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready(&current_id(redis)) {
        assert!(std::time::Instant::now() < deadline, "{}", why());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cookie sealed by `sealer` opens on `opener` within a few seconds (instances adopt a
/// new shared key at their next maintenance tick).
async fn soon_opens_across(sealer: &Server, opener: &Server) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let cookie = sealer.create("\"across@example.com\"", None).await.cookie();
        if let Some(cookie) = cookie {
            if opens(opener, &cookie).await.0 == "OTP:INCORRECT" {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn a_key_rotated_from_a_clock_behind_the_newest_key_is_adopted_everywhere() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let b = on(&redis, &plugins);
    // a's clock runs two days ahead, so its scheduled rotation makes a key "created"
    // two days from now, which b adopts.
    let first = current_id(&redis);
    a.advance_clock(2 * 86_400_000).await;
    pointer_soon(&redis, |id| id != first, || "a never rotated".into()).await;
    assert!(soon_opens_across(&a, &b).await, "b adopts a's key");
    // An operator revokes it from a host on real time, two days behind that key. Every
    // instance must move to the operator's key, not to a key of its own that no other
    // instance can open cookies with.
    let revoked = current_id(&redis);
    let (ok, out) = keys_command(&redis, &["rotate", "--revoke-current"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("revoked: {revoked}")), "{out}");
    // (A cookie goes from a clock to one behind it only: a session sealed on b has
    // long expired by a's clock. c starts after the rotation, on real time.)
    let c = on(&redis, &plugins);
    assert!(
        soon_opens_across(&a, &b).await && soon_opens_across(&b, &c).await,
        "the instances split onto keys of their own:\n{}\n{}",
        a.log_text(),
        b.log_text()
    );
}

/// A pointer moved back to an older key that still exists (a failover losing the last
/// write, or a hand) is moved forward again by an instance using the newer key, so
/// rotation goes on.
#[tokio::test]
async fn a_pointer_moved_back_to_an_older_key_is_moved_forward_again() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let older = current_id(&redis);
    let (ok, out) = keys_command(&redis, &["rotate"]);
    assert!(ok, "{out}");
    let newer = current_id(&redis);
    assert_ne!(newer, older);
    // a adopts the newer key (its tick runs every second).
    let created = a.create("\"back@example.com\"", None).await;
    a.wait_for_log(
        "adopted the shared key-encryption key",
        Duration::from_secs(10),
    )
    .expect("a adopts the newer key");
    assert_eq!(created.status, StatusCode::OK);
    redis::cmd("SET")
        .arg(POINTER)
        .arg(&older)
        .query::<()>(&mut connection(&redis))
        .unwrap();
    pointer_soon(
        &redis,
        |id| id == newer,
        || format!("the pointer stayed on the older key:\n{}", a.log_text()),
    )
    .await;
}

#[tokio::test]
async fn a_tampered_key_record_is_refused() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let old_key = current_id(&redis);
    let cookie = a.create("\"t@example.com\"", None).await.cookie().unwrap();
    let (ok, out) = keys_command(&redis, &["rotate"]);
    assert!(ok, "{out}");
    assert!(out.contains("rotated"), "{out}");
    // B starts after the rotation, so it must fetch the old key to open the cookie.
    let b = on(&redis, &plugins);
    // Push the old key's creation time to the far future, as if to stop rotation.
    let mut con = connection(&redis);
    let record_key = format!("otp:kek:{{keys}}:{old_key}");
    let mut record: Vec<u8> = redis::cmd("GET").arg(&record_key).query(&mut con).unwrap();
    record[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
    let _: () = redis::cmd("SET")
        .arg(&record_key)
        .arg(record)
        .arg("KEEPTTL")
        .query(&mut con)
        .unwrap();

    let (error, _) = opens(&b, &cookie).await;
    assert_eq!(
        error, "OTP:INVALID_COOKIE",
        "the tampered record is not used"
    );
    assert!(
        b.wait_for_log("record refused", Duration::from_secs(5))
            .is_some(),
        "and the refusal is logged:\n{}",
        b.log_text()
    );
    // A, which loaded the key before the tampering, still holds the genuine one.
    let (error, _) = opens(&a, &cookie).await;
    assert_eq!(error, "OTP:INCORRECT");
}

#[tokio::test]
async fn key_commands_refuse_a_redis_or_prefix_without_keys_and_write_nothing() {
    let redis = RedisServer::start();
    let dbsize = || -> i64 { redis::cmd("DBSIZE").query(&mut connection(&redis)).unwrap() };
    let new_key = scratch_dir("keys-empty").join("new-master.key");
    std::fs::write(
        &new_key,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
    )
    .unwrap();
    let commands: [&[&str]; 3] = [
        &["rotate"],
        &["rotate", "--revoke-current"],
        &["rewrap", "--new-master-key-file", new_key.to_str().unwrap()],
    ];
    // An empty Redis: the wrong one, or a wrong database number.
    for args in commands {
        let (ok, out) = keys_command(&redis, args);
        assert!(!ok, "{args:?} succeeded on an empty Redis: {out}");
        assert!(out.contains("no key-encryption keys"), "{args:?}: {out}");
        assert_eq!(dbsize(), 0, "{args:?} wrote to the empty Redis");
    }
    // The instances' Redis under another prefix (a forgotten OTP_STORE_PREFIX).
    let plugins = plugins_folder();
    let _server = on(&redis, &plugins);
    let current = current_id(&redis);
    let keys_before = dbsize();
    for args in commands {
        let output = std::process::Command::new(server_binary())
            .arg("keys")
            .args(args)
            .env_clear()
            .env("OTP_STORE", redis.url())
            .env("OTP_STORE_PREFIX", "elsewhere:")
            .env("OTP_MASTER_KEY", TEST_MASTER_KEY)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {out}");
        assert!(
            out.contains("\"elsewhere:\""),
            "{args:?} names the prefix: {out}"
        );
    }
    assert_eq!(dbsize(), keys_before);
    assert_eq!(current_id(&redis), current, "the real keys are untouched");
    // The right store still works.
    let (ok, out) = keys_command(&redis, &["rotate"]);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn rotate_with_revoke_ends_old_cookies_on_every_instance() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let b = on(&redis, &plugins);
    let for_a = a.create("\"r1@example.com\"", None).await.cookie().unwrap();
    let for_b = b.create("\"r2@example.com\"", None).await.cookie().unwrap();
    let revoked = current_id(&redis);

    let (ok, out) = keys_command(&redis, &["rotate", "--revoke-current"]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("revoked: {revoked}")), "{out}");
    assert_ne!(current_id(&redis), revoked);
    for server in [&a, &b] {
        assert!(
            server
                .wait_for_log("revoked elsewhere", Duration::from_secs(5))
                .is_some(),
            "every instance drops the revoked key:\n{}",
            server.log_text()
        );
    }
    assert_eq!(opens(&a, &for_a).await.0, "OTP:INVALID_COOKIE");
    assert_eq!(opens(&b, &for_b).await.0, "OTP:INVALID_COOKIE");
    // New cookies are sealed with the new key and open on the other instance.
    let fresh = a.create("\"r3@example.com\"", None).await.cookie().unwrap();
    assert_eq!(opens(&b, &fresh).await.0, "OTP:INCORRECT");
}

#[tokio::test]
async fn rewrap_moves_to_a_new_master_key_without_ending_sessions() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let a = on(&redis, &plugins);
    let created = a.create("\"w@example.com\"", None).await;
    let cookie = created.cookie().unwrap();
    let code = a.wait_code("\"w@example.com\"", 1);

    // The index no longer lists the current key (evicted, or trimmed by a clock far
    // ahead): the rewrap still re-seals the key the pointer names.
    let removed: i64 = redis::cmd("ZREM")
        .arg("otp:kek:{keys}:index")
        .arg(current_id(&redis))
        .query(&mut connection(&redis))
        .unwrap();
    assert_eq!(removed, 1);

    let new_key = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let file = scratch_dir("new-master").join("master.key");
    std::fs::write(&file, format!("{new_key}\n")).unwrap();
    let (ok, out) = keys_command(
        &redis,
        &["rewrap", "--new-master-key-file", file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("1 key-encryption key record(s) re-sealed"),
        "{out}"
    );
    // Run on a configuration without the new key, it says what that costs.
    assert!(
        out.contains("warning: an instance configured like this one"),
        "{out}"
    );
    drop(a);

    // An instance on the new master key alone opens the session sealed before.
    let b = Server::builder()
        .plugins_dir(&plugins)
        .redis(&redis)
        .env("OTP_MASTER_KEY", &new_key)
        .start();
    let verified = b.verify(&code, Some(&cookie)).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
    // One on the old key alone no longer can: the records moved.
    let output = std::process::Command::new(server_binary())
        .env_clear()
        .env("OTP_STORE", redis.url())
        .env("OTP_MASTER_KEY", TEST_MASTER_KEY)
        .env("OTP_LISTEN", "127.0.0.1:0")
        .env("OTP_ADMIN_LISTEN", "127.0.0.1:0")
        .env("OTP_PLUGINS_DIR", &plugins)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("master key does not match"));
}

#[tokio::test]
async fn the_three_step_master_key_change_keeps_every_instance_able_to_restart() {
    let redis = RedisServer::start();
    let plugins = plugins_folder();
    let new_key = base64::engine::general_purpose::STANDARD.encode([43u8; 32]);
    let file = scratch_dir("new-master-3").join("master.key");
    std::fs::write(&file, &new_key).unwrap();
    let rewrap = ["rewrap", "--new-master-key-file", file.to_str().unwrap()];
    let with = |master: &str, previous: &str| {
        Server::builder()
            .plugins_dir(&plugins)
            .redis(&redis)
            .env("OTP_MASTER_KEY", master)
            .env("OTP_MASTER_KEY_PREVIOUS", previous)
            .start()
    };
    let a = on(&redis, &plugins);
    let created = a.create("\"steps@example.com\"", None).await;
    let cookie = created.cookie().unwrap();
    let code = a.wait_code("\"steps@example.com\"", 1);
    drop(a);
    // 1. Every instance takes the new key as its previous one.
    let step1 = [
        ("OTP_MASTER_KEY", TEST_MASTER_KEY),
        ("OTP_MASTER_KEY_PREVIOUS", new_key.as_str()),
    ];
    // 2. The rewrap: an instance of step 1 still (re)starts and opens the session.
    let (ok, out) = keys_command_with(&redis, &rewrap, &step1);
    assert!(
        ok && out.contains("next: give every instance the new key as master_key"),
        "{out}"
    );
    let b = with(TEST_MASTER_KEY, &new_key);
    let wrong = b.verify("0000000000", Some(&cookie)).await;
    assert_eq!(wrong.error(), "OTP:INCORRECT", "{}", wrong.text());
    let cookie = wrong.cookie().unwrap();
    drop(b);
    // 3. The new key as master, the old as previous; the second rewrap ends the change.
    let step3 = [
        ("OTP_MASTER_KEY", new_key.as_str()),
        ("OTP_MASTER_KEY_PREVIOUS", TEST_MASTER_KEY),
    ];
    let c = with(&new_key, TEST_MASTER_KEY);
    let (ok, out) = keys_command_with(&redis, &rewrap, &step3);
    assert!(
        ok && out.contains("done: once every instance runs"),
        "{out}"
    );
    let verified = c.verify(&code, Some(&cookie)).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.text());
}
