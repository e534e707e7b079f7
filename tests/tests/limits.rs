//! Black-box tests of the abuse controls: the real binary over HTTP, on the in-memory
//! store and (with `OTP_BLACKBOX_STORE=redis`, or where a test starts its own) Redis.
//!
//! Loopback clients bind their own 127.x.y.z source address to act as different client
//! networks; IPv6 /64 sharing goes through a trusted proxy's `X-Forwarded-For`. Windows
//! pass by the test clock in memory mode; Redis judges time by its own `TIME`, so there
//! the tests configure short windows and sleep instead.

use otp_server_blackbox::redis_cluster::RedisCluster;
use otp_server_blackbox::{
    cluster_mode, redis_mode, Answer, RedisServer, Server, ServerBuilder, StatusCode,
};
use std::net::IpAddr;
use std::time::Duration;

/// Whether budgets run on Redis `TIME` (Redis or Cluster mode), which the test clock
/// does not move: windows must really pass there.
fn on_redis_time() -> bool {
    redis_mode() || cluster_mode()
}

/// A client bound to one loopback source address.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn from(server: &Server, source: &str) -> Client {
        let address: IpAddr = source.parse().expect("an address");
        Client {
            http: reqwest::Client::builder()
                .local_address(address)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            base: server.base.clone(),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: Option<(&str, String)>,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("o={cookie}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("the server answers");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("a body").to_vec(),
        }
    }

    async fn create(&self, credential: &str, headers: &[(&str, &str)]) -> Answer {
        let body = serde_json::Value::String(credential.into()).to_string();
        self.post(
            "/api/otp/create",
            Some(("application/json", body)),
            None,
            headers,
        )
        .await
    }

    async fn verify(&self, code: &str, cookie: &str) -> Answer {
        self.post(
            "/api/otp/verify",
            Some(("application/x-www-form-urlencoded", format!("otp={code}"))),
            Some(cookie),
            &[],
        )
        .await
    }
}

/// The dev sender logs the credential id as JSON text (default-credential's id).
fn id(credential: &str) -> String {
    serde_json::Value::String(credential.into()).to_string()
}

/// A refused answer: 429 `RATE:LIMITED` with the headers and body the API promises;
/// returns the policy name.
fn assert_limited(answer: &Answer) -> String {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.text()
    );
    let body = answer.json();
    assert_eq!(body["error"], "RATE:LIMITED");
    let retry: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(retry >= 1);
    assert_eq!(body["retryAfter"].as_u64(), Some(retry));
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let policy = answer.header("ratelimit-policy").expect("RateLimit-Policy");
    let state = answer.header("ratelimit").expect("RateLimit");
    let name = policy
        .split(';')
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert!(policy.contains(";q=") && policy.contains(";w="), "{policy}");
    assert_eq!(state, format!("\"{name}\";r=0;t={retry}"));
    name
}

/// A server with the default plugins and the limits on (the harness turns them off for
/// the other suites).
fn builder() -> ServerBuilder {
    Server::builder()
        .default_plugins()
        .env("OTP_LIMITS_ENABLED", "true")
}

/// Limits on, with `email-phone-credential` as validator: credentials get real
/// destination groups (`sms:+44`, `email:example.com`).
fn grouped_builder() -> ServerBuilder {
    Server::builder()
        .env("OTP_LIMITS_ENABLED", "true")
        .plugin_as(
            otp_server_blackbox::plugin("email-phone-credential"),
            "validator",
        )
        .plugin_as(otp_server_blackbox::plugin("dev-sender"), "dev-sender")
        .plugin_as(otp_server_blackbox::plugin("json-final"), "json-final")
}

/// Lets a window of `memory_ms` (test clock) or `redis_secs` (real time) pass.
async fn let_window_pass(server: &Server, memory_ms: u64, redis_secs: u64) {
    if on_redis_time() {
        tokio::time::sleep(Duration::from_secs(redis_secs)).await;
    } else {
        server.advance_clock(memory_ms).await;
    }
}

#[tokio::test]
async fn fifty_creates_for_one_credential_send_exactly_five() {
    let mut b = builder();
    if on_redis_time() {
        b = b.env("OTP_LIMITS_SENDS_PER_CREDENTIAL", "5/6s");
    }
    let server = b.start();
    let client = Client::from(&server, "127.0.0.1");
    let mut ok = 0;
    for _ in 0..50 {
        let answer = client.create("+15550001111", &[]).await;
        if answer.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(assert_limited(&answer), "sends-per-credential");
            // Nothing changed: no cookie is set.
            assert!(answer.set_cookies().is_empty());
        }
    }
    assert_eq!(ok, 5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.codes_for(&id("+15550001111")).len(), 5);
    let_window_pass(&server, 600_000, 6).await;
    assert_eq!(
        client.create("+15550001111", &[]).await.status,
        StatusCode::OK
    );
    server.wait_code(&id("+15550001111"), 6);
}

#[tokio::test]
async fn a_network_spraying_credentials_is_capped_and_another_is_not() {
    let server = builder().start();
    let attacker = Client::from(&server, "127.0.0.2");
    let mut sent = 0;
    for n in 0..100 {
        let answer = attacker.create(&format!("victim-{n}"), &[]).await;
        if answer.status == StatusCode::OK {
            sent += 1;
        } else {
            assert_eq!(assert_limited(&answer), "sends-per-network");
        }
    }
    // 30 per hour with a burst of 10.
    assert_eq!(sent, 10);
    let other = Client::from(&server, "127.0.0.3");
    assert_eq!(other.create("victim-0", &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn requests_per_network_bound_every_endpoint() {
    let server = builder()
        .env("OTP_LIMITS_REQUESTS_PER_NETWORK", "5/1m")
        .start();
    let client = Client::from(&server, "127.0.0.4");
    for _ in 0..5 {
        // Bad input still counts as a request.
        let answer = client.post("/api/otp/resend", None, None, &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    }
    // A code of the right shape: one of the wrong shape is refused before the limits,
    // for the price of a length check.
    let answer = client.verify("zzzzzzzzzz", "x").await;
    assert_eq!(assert_limited(&answer), "requests-per-network");
    assert_eq!(
        Client::from(&server, "127.0.0.5")
            .create("someone", &[])
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_addresses_only_from_trusted_proxies_and_ipv6_by_slash_64() {
    let server = builder()
        .env("OTP_LIMITS_TRUSTED_PROXIES", "127.0.0.10")
        .env("OTP_LIMITS_SENDS_PER_NETWORK", "2/1h")
        .start();
    // An untrusted peer's X-Forwarded-For is ignored: all of it counts to the peer.
    let untrusted = Client::from(&server, "127.0.0.11");
    for n in 0..2 {
        let xff = format!("198.51.100.{n}");
        let answer = untrusted
            .create(&format!("u{n}"), &[("x-forwarded-for", &xff)])
            .await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let answer = untrusted
        .create("u9", &[("x-forwarded-for", "198.51.100.99")])
        .await;
    assert_eq!(assert_limited(&answer), "sends-per-network");
    // From the trusted proxy, the forwarded address is the client.
    let proxy = Client::from(&server, "127.0.0.10");
    let via = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(
        proxy.create("p1", &via("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        proxy.create("p2", &via("198.51.100.1")).await.status,
        StatusCode::OK
    );
    assert_limited(&proxy.create("p3", &via("198.51.100.1")).await);
    // A forged entry to the left of the proxy's gains nothing.
    assert_limited(
        &proxy
            .create("p4", &[("x-forwarded-for", "203.0.113.50, 198.51.100.1")])
            .await,
    );
    assert_eq!(
        proxy.create("p5", &via("198.51.100.2")).await.status,
        StatusCode::OK
    );
    // IPv6 addresses of one /64 share a budget; the next /64 has its own.
    assert_eq!(
        proxy.create("v1", &via("2001:db8:1:2::1")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        proxy
            .create("v2", &via("2001:db8:1:2:ffff::9"))
            .await
            .status,
        StatusCode::OK
    );
    assert_limited(&proxy.create("v3", &via("2001:db8:1:2::abcd")).await);
    assert_eq!(
        proxy.create("v4", &via("2001:db8:1:3::1")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn two_instances_on_one_redis_share_every_budget() {
    let redis = RedisServer::start();
    let dir = otp_server_blackbox::scratch_dir("limits-two").join("plugins");
    let a = builder().redis(&redis).plugins_dir(&dir).start();
    let b = builder().redis(&redis).plugins_dir(&dir).start();
    let clients = [Client::from(&a, "127.0.0.1"), Client::from(&b, "127.0.0.1")];
    let clients = std::sync::Arc::new(clients);
    let mut tasks = Vec::new();
    for n in 0..64 {
        let clients = clients.clone();
        tasks.push(tokio::spawn(async move {
            clients[n % 2].create("+15550002222", &[]).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        if answer.status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(assert_limited(&answer), "sends-per-credential");
        }
    }
    assert_eq!(ok, 5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let codes = a.codes_for(&id("+15550002222")).len() + b.codes_for(&id("+15550002222")).len();
    assert_eq!(codes, 5, "5 codes in all, not 10");
}

/// Creates a session for `credential` and returns its cookie and code.
async fn session(server: &Server, client: &Client, credential: &str) -> Option<(String, String)> {
    let before = server.codes_for(&id(credential)).len();
    let answer = client.create(credential, &[]).await;
    if answer.status != StatusCode::OK {
        assert_limited(&answer);
        return None;
    }
    let code = server.wait_code(&id(credential), before + 1);
    Some((answer.cookie().expect("a cookie"), code))
}

/// A code of the same shape that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().expect("digits");
    format!("{:04}", (n + 1) % 10_000)
}

#[tokio::test]
async fn cross_session_brute_force_gets_a_bounded_number_of_guesses() {
    // 4-digit codes, and sessions that allow many attempts: only the limits stop guessing.
    let server = builder()
        .env("OTP_CODE_ALPHABET", "digits")
        .env("OTP_CODE_LENGTH", "4")
        .env("OTP_MAX_ATTEMPTS", "20")
        .env("OTP_BLOCK_AT_ATTEMPTS_LEFT", "0")
        // New sessions all hour long (20 sends a day would stop them after ~40 min):
        // only the failure budgets bound the guessing here.
        .env("OTP_LIMITS_SENDS_PER_CREDENTIAL_DAILY", "off")
        .start();
    let attacker = Client::from(&server, "127.0.0.20");
    // The bound per hour for one credential from one network: the burst of 10 failures
    // per (credential, network) plus one more every 90 s (10 per 15 min):
    // 10 + 3600 / 90 = 50 guesses of 10 000 possible codes (0.5 %).
    const BOUND_PER_HOUR: usize = 50;
    // Redis judges time by its own clock, so there the test covers one window.
    let steps = if on_redis_time() { 1 } else { 120 };
    let mut guesses = 0;
    for step in 0..steps {
        if step > 0 {
            server.advance_clock(30_000).await;
        }
        let Some((mut cookie, code)) = session(&server, &attacker, "victim").await else {
            continue;
        };
        loop {
            let answer = attacker.verify(&wrong(&code), &cookie).await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(
                    assert_limited(&answer),
                    "failed-verifications-per-credential-network"
                );
                break;
            }
            assert_eq!(answer.error(), "OTP:INCORRECT", "{}", answer.text());
            guesses += 1;
            cookie = answer.cookie().expect("a successor cookie");
        }
    }
    if on_redis_time() {
        assert_eq!(guesses, 10, "one window: the burst");
    } else {
        assert!(guesses <= BOUND_PER_HOUR, "{guesses} guesses in an hour");
        assert!(guesses > 40, "the budget refills: {guesses}");
    }
}

#[tokio::test]
async fn an_attackers_failures_do_not_stop_the_owner_and_a_refused_guess_costs_nothing() {
    let mut b = builder()
        .env("OTP_MAX_ATTEMPTS", "20")
        .env("OTP_BLOCK_AT_ATTEMPTS_LEFT", "0");
    if on_redis_time() {
        b = b.env(
            "OTP_LIMITS_FAILED_VERIFIES_PER_CREDENTIAL_NETWORK",
            "10/20s",
        );
    }
    let server = b.start();
    let attacker = Client::from(&server, "127.0.0.30");
    let (mut cookie, code) = session(&server, &attacker, "owner").await.unwrap();
    for _ in 0..10 {
        let answer = attacker.verify("wrongcode1", &cookie).await;
        assert_eq!(answer.error(), "OTP:INCORRECT", "{}", answer.text());
        cookie = answer.cookie().unwrap();
    }
    let refused = attacker.verify("wrongcode1", &cookie).await;
    assert_limited(&refused);
    assert!(refused.set_cookies().is_empty(), "the cookie is untouched");
    // The owner, on another network, verifies at once.
    let owner = Client::from(&server, "127.0.0.31");
    let (owner_cookie, owner_code) = session(&server, &owner, "owner").await.unwrap();
    let answer = owner.verify(&owner_code, &owner_cookie).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    // The refused guess spent no attempt and retired no id: once the budget has room
    // again, the same cookie still verifies with its code.
    let_window_pass(&server, 90_000, 2).await;
    let answer = attacker.verify(&code, &cookie).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn resends_count_for_the_fraud_guard_of_their_group() {
    let server = grouped_builder()
        .env("OTP_LIMITS_FRAUD_GUARD", "deny")
        .start();
    let client = Client::from(&server, "127.0.4.1");
    let first = client.create("+15550000200", &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let other = client.create("+15550000201", &[]).await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    // The resend is the group's third unverified send (the cookie keeps no group: the
    // credential's pending send names it).
    server.advance_clock(31_000).await;
    let client = &client;
    let resend = |cookie: String| async move {
        client
            .post("/api/otp/resend", None, Some(&cookie), &[])
            .await
    };
    let resent = resend(first.cookie().unwrap()).await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text());
    // So the fourth trips the hourly floor of 3, a create as well as a resend.
    let answer = Client::from(&server, "127.0.4.3")
        .create("+15550000202", &[])
        .await;
    assert_eq!(assert_limited(&answer), "fraud-guard");
    let refused = resend(other.cookie().unwrap()).await;
    assert_eq!(assert_limited(&refused), "fraud-guard");
    // Two codes went to the first credential (the log is written in batches: wait),
    // and the refused resend sent none.
    server.wait_code("+15550000200", 2);
    server.wait_code("+15550000201", 1);
    assert_eq!(server.codes_for("+15550000201").len(), 1);
}

/// A kept copy of a spent cookie state, replayed to resend, is turned away before the
/// charge: it uses up none of its credential's send budget (5 per 10 minutes) and
/// sends nothing, so it cannot lock the owner out without a code going out.
#[tokio::test]
async fn a_spent_cookie_replayed_to_resend_charges_nothing() {
    let server = builder()
        .env("OTP_RESEND_COOLDOWN_SECS", "0")
        .env("OTP_MAX_RESENDS", "10")
        .start();
    let credential = "replayed@example.com";
    let client = Client::from(&server, "127.0.5.1");
    let created = client.create(credential, &[]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let spent = created.cookie().unwrap();
    let client = &client;
    let resend = |cookie: String| async move {
        client
            .post("/api/otp/resend", None, Some(&cookie), &[])
            .await
    };
    let resent = resend(spent.clone()).await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text());
    for _ in 0..6 {
        let replay = resend(spent.clone()).await;
        assert_eq!(
            replay.json()["error"],
            "OTP:INVALID_COOKIE",
            "{}",
            replay.text()
        );
    }
    // Two sends so far: three more fit in the credential's budget, the next does not.
    let mut cookie = resent.cookie().unwrap();
    for _ in 0..3 {
        let answer = resend(cookie).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        cookie = answer.cookie().unwrap();
    }
    assert_eq!(
        assert_limited(&resend(cookie).await),
        "sends-per-credential"
    );
    server.wait_code(&id(credential), 5);
    assert_eq!(server.codes_for(&id(credential)).len(), 5);
}

#[tokio::test]
async fn fraud_guard_records_by_default_and_denies_one_group_in_deny_mode() {
    // Record (default): the fourth unverified send to a group within the hour trips.
    let server = builder().start();
    for n in 0..4 {
        let client = Client::from(&server, &format!("127.0.1.{}", n + 1));
        assert_eq!(
            client.create(&format!("r{n}"), &[]).await.status,
            StatusCode::OK
        );
    }
    server
        .wait_for_log("otp.fraud_guard", Duration::from_secs(5))
        .expect("a warning line");
    let ready = server.ready_details().await.json();
    assert!(
        ready["limits"]["fraudGuardTripped"].as_u64() >= Some(1),
        "{ready}"
    );

    // Deny: two groups (channels of email-phone-credential); only the tripped one stops.
    let server = grouped_builder()
        .env("OTP_LIMITS_FRAUD_GUARD", "deny")
        .start();
    let mut first = None;
    for n in 0..3 {
        let client = Client::from(&server, &format!("127.0.2.{}", n + 1));
        let answer = client.create(&format!("+1555000010{n}"), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        first.get_or_insert((client, answer.cookie().unwrap()));
    }
    let client = Client::from(&server, "127.0.2.9");
    let answer = client.create("+15550000109", &[]).await;
    assert_eq!(assert_limited(&answer), "fraud-guard");
    assert!(server.codes_for("+15550000109").is_empty());
    // The other group is served.
    let answer = client.create("someone@example.com", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    // A verified send converts: the group's unverified count falls and sends resume.
    let (first_client, cookie) = first.unwrap();
    let code = server.wait_code("+15550000100", 1);
    let answer = first_client.verify(&code, &cookie).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let answer = client.create("+15550000109", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn a_denied_group_answers_403_and_nothing_is_sent() {
    let server = builder().env("OTP_LIMITS_DENY_GROUPS", "default").start();
    let answer = Client::from(&server, "127.0.0.40")
        .create("dave", &[])
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error(), "CREDENTIAL:NOT_ALLOWED");
    assert!(answer.set_cookies().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.codes_for(&id("dave")).is_empty());

    // Groups named by the validator (contract 0.2.0): one country refused, another served.
    let server = grouped_builder()
        .env("OTP_LIMITS_DENY_GROUPS", "sms:+44,email:spam.example")
        .start();
    let client = Client::from(&server, "127.0.0.41");
    for denied in ["+447700900123", "bob@spam.example"] {
        let answer = client.create(denied, &[]).await;
        assert_eq!(
            answer.error(),
            "CREDENTIAL:NOT_ALLOWED",
            "{}",
            answer.text()
        );
    }
    let answer = client.create("+15550000177", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.codes_for("+447700900123").is_empty());
    assert_eq!(server.codes_for("+15550000177").len(), 1);

    // An allow list: a resend of an allowed destination is not judged by its channel
    // (the cookie carries no group).
    let server = grouped_builder()
        .env("OTP_LIMITS_ALLOW_GROUPS", "sms:+1*")
        .env("OTP_RESEND_COOLDOWN_SECS", "0")
        .start();
    let client = Client::from(&server, "127.0.0.42");
    let created = client.create("+15550000188", &[]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text());
    let resent = server.resend(created.cookie().as_deref()).await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text());
    let answer = client.create("someone@example.com", &[]).await;
    assert_eq!(
        answer.error(),
        "CREDENTIAL:NOT_ALLOWED",
        "{}",
        answer.text()
    );
}

#[tokio::test]
async fn redis_holds_no_plaintext_credential_or_address_and_fails_closed_or_open() {
    let mut redis = RedisServer::start();
    let server = builder()
        .redis(&redis)
        .env("OTP_LIMITS_TRUSTED_PROXIES", "127.0.0.50")
        .start();
    let proxy = Client::from(&server, "127.0.0.50");
    let direct = Client::from(&server, "127.0.0.51");
    let secret = "+447700900123";
    let forwarded = "198.51.100.77";
    let answer = proxy
        .create(secret, &[("x-forwarded-for", forwarded)])
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let code = server.wait_code(&id(secret), 1);
    let cookie = answer.cookie().unwrap();
    let wrong_answer = direct.verify("zzzzzzzzzz", &cookie).await;
    assert_eq!(wrong_answer.error(), "OTP:INCORRECT");
    let answer = direct.verify(&code, &wrong_answer.cookie().unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    direct.create("alice@example.com", &[]).await;

    let mut con = connection(&redis);
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert!(
        keys.iter().any(|k| k.windows(5).any(|w| w == b"lim:{")),
        "limiter keys exist"
    );
    let mut everything = Vec::new();
    for key in &keys {
        everything.extend_from_slice(key);
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut con).unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(key).query(&mut con).unwrap()],
            "hash" => redis::cmd("HGETALL").arg(key).query(&mut con).unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query(&mut con)
                .unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(key).query(&mut con).unwrap(),
            other => panic!("unexpected key type {other}"),
        };
        for value in values {
            everything.push(b' ');
            everything.extend_from_slice(&value);
        }
    }
    let dump = String::from_utf8_lossy(&everything);
    for needle in [
        "447700900123",
        "alice",
        "example.com",
        "198.51.100.77",
        "127.0.0.5",
        &hex_of("198.51.100.77"),
    ] {
        assert!(!dump.contains(needle), "Redis holds {needle:?}");
    }

    // Redis stopped: fail closed with 503, or (fail_open) the limits step aside and
    // say so — the session store still needs Redis, so the answer is 503 either way.
    let open = builder()
        .redis(&redis)
        .env("OTP_LIMITS_FAIL_OPEN", "true")
        .start();
    redis.stop();
    let answer = direct.create("bob", &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.error(), "STORE:UNAVAILABLE");
    server
        .wait_for_log("refusing (fail closed)", Duration::from_secs(5))
        .expect("the limits refused");
    let ready = server.ready_details().await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["limits"]["store"], "unavailable");

    let answer = Client::from(&open, "127.0.0.52").create("bob", &[]).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    open.wait_for_log("serving WITHOUT limits", Duration::from_secs(5))
        .expect("the log says the limits are off");
    let ready = open.ready_details().await.json();
    assert_eq!(ready["limits"]["failOpen"], true);
    assert_eq!(
        ready["limits"]["store"],
        "unavailable (serving without limits)"
    );
    assert!(ready["limits"]["servedWithoutLimits"].as_u64() >= Some(1));
}

fn hex_of(address: &str) -> String {
    let ip: std::net::Ipv4Addr = address.parse().unwrap();
    ip.octets().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_answers_are_documented_in_openapi() {
    let text = std::fs::read_to_string(otp_server_blackbox::workspace_root().join("openapi.json"))
        .expect("openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in ["RATE:LIMITED", "CREDENTIAL:NOT_ALLOWED"] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code}"
        );
    }
    for path in ["/api/otp/create", "/api/otp/resend", "/api/otp/verify"] {
        let responses = &doc["paths"][path]["post"]["responses"];
        let limited = &responses["429"];
        assert_eq!(
            limited["x-error-codes"],
            serde_json::json!(["RATE:LIMITED"]),
            "{path}"
        );
        for header in ["Retry-After", "RateLimit-Policy", "RateLimit"] {
            assert!(limited["headers"].get(header).is_some(), "{path} {header}");
        }
        // Only a create checks the group lists (a resend's credential was checked when
        // its session was created).
        let forbidden = responses["403"]["x-error-codes"].as_array().unwrap();
        assert_eq!(
            forbidden.iter().any(|c| c == "CREDENTIAL:NOT_ALLOWED"),
            path == "/api/otp/create",
            "{path}"
        );
    }
    let body = &doc["components"]["schemas"]["RateLimited"]["required"];
    assert_eq!(body, &serde_json::json!(["error", "message", "retryAfter"]));
}

/// `redis-cli MONITOR` on a Redis: every command a client sends, one line each.
struct Monitor {
    port: u16,
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Monitor {
    fn start(port: u16) -> Monitor {
        use std::io::BufRead;
        let mut child = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "monitor"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-cli monitor");
        let stdout = child.stdout.take().expect("its output");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while lines.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "MONITOR never answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Monitor { port, child, lines }
    }

    /// The commands clients sent so far (not those scripts ran) that name a session id
    /// key (`otp:s:{TAG}:REST`).
    fn session_id_commands(&self) -> Vec<String> {
        // Everything sent before the marker has been seen once the marker has.
        let marker = "end-of-monitored-requests";
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("ECHO")
            .arg(marker)
            .query::<String>(&mut con)
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(marker))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "MONITOR lost the marker"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("\"otp:s:{") && !line.contains(" lua]"))
            .cloned()
            .collect()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain connection to the test's own Redis, to look at what the server stored.
fn connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

fn live_session_ids(redis: &RedisServer) -> usize {
    let mut con = connection(redis);
    let keys: Vec<String> = redis::cmd("KEYS").arg("otp:s:*").query(&mut con).unwrap();
    keys.len()
}

/// On one Redis a request the limits charge is one round trip: the limiter's script
/// makes the request's id change as well (a create registers its id, a wrong code
/// retires the cookie's), and a refused request registers nothing. (A resend that would
/// send asks first whether its state is live: one `EXISTS` before its charge.)
#[tokio::test]
async fn on_one_redis_a_charged_request_is_one_round_trip() {
    let redis = RedisServer::start();
    let server = builder()
        .redis(&redis)
        .env("OTP_CODE_ALPHABET", "digits")
        .env("OTP_CODE_LENGTH", "4")
        .env("OTP_RESEND_COOLDOWN_SECS", "0")
        .start();
    let client = Client::from(&server, "127.0.0.1");
    // The first request loads the scripts; watch from the second on.
    session(&server, &client, "warm@example.com").await.unwrap();
    let monitor = Monitor::start(redis.port);
    let (cookie, code) = session(&server, &client, "once@example.com").await.unwrap();
    let answer = client.verify(&wrong(&code), &cookie).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert_eq!(answer.json()["error"], "OTP:INCORRECT");
    let successor = answer.cookie().expect("the next cookie");
    // The spent cookie is refused, the successor works: the script made the change.
    assert_eq!(
        client.verify(&wrong(&code), &cookie).await.json()["error"],
        "OTP:INVALID_COOKIE"
    );
    // A resend retires the cookie's id for its successor, in its charge as well.
    let resent = server.resend(Some(&successor)).await;
    assert_eq!(resent.status, StatusCode::OK, "{}", resent.text());
    assert_eq!(
        server.resend(Some(&successor)).await.error(),
        "OTP:INVALID_COOKIE"
    );
    let successor = resent.cookie().expect("the resent cookie");
    let code = server.wait_code(&id("once@example.com"), 2);
    let answer = client.verify(&code, &successor).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let commands = monitor.session_id_commands();
    // create, wrong code, replayed cookie, resend, replayed resend: one script each, the
    // budgets and the id change together (the replayed resend's only counts the request).
    // The right code's reservation carries the check that its id is live; using the id is
    // a separate call.
    let scripted = commands
        .iter()
        .filter(|c| c.to_lowercase().contains("\"evalsha\"") && c.contains("lim:{lim}"))
        .count();
    assert!(scripted >= 5, "{commands:#?}");
    // Nothing else names an id but each resend's check that its state is live (before it
    // may charge sends) and the right code's use: no separate SET of a new id, no
    // replace of the id store.
    let others: Vec<&String> = commands
        .iter()
        .filter(|c| !(c.to_lowercase().contains("\"evalsha\"") && c.contains("lim:{lim}")))
        .collect();
    let verbs: Vec<String> = others
        .iter()
        .map(|c| c.split('"').nth(1).unwrap_or_default().to_lowercase())
        .collect();
    assert_eq!(verbs, ["exists", "exists", "del"], "{commands:#?}");
    // A refused create registers no id.
    let credential = "+15550003333";
    for _ in 0..5 {
        assert_eq!(client.create(credential, &[]).await.status, StatusCode::OK);
    }
    let live = live_session_ids(&redis);
    assert_limited(&client.create(credential, &[]).await);
    assert_eq!(live_session_ids(&redis), live);
}

/// The fraud guard's windows turn over on Redis `TIME`, which a test cannot move, so the
/// test ages the group's stored windows instead (each step sets every field): unverified
/// sends of the window before still count (weighted by how much of it the sliding window
/// overlaps), older ones are forgotten.
#[tokio::test]
async fn on_redis_the_fraud_guard_windows_turn_over() {
    let redis = RedisServer::start();
    let server = builder()
        .redis(&redis)
        .env("OTP_LIMITS_FRAUD_GUARD", "deny")
        .start();
    let client = Client::from(&server, "127.0.3.1");
    assert_eq!(client.create("turn0", &[]).await.status, StatusCode::OK);
    let mut con = connection(&redis);
    let groups: Vec<String> = redis::cmd("KEYS")
        .arg("otp:lim:{lim}:g:*")
        .query(&mut con)
        .unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let group = &groups[0];
    let field = |con: &mut redis::Connection, name: &str| -> i64 {
        let value: String = redis::cmd("HGET").arg(group).arg(name).query(con).unwrap();
        value.parse().unwrap()
    };
    let (hour, day) = (field(&mut con, "hi"), field(&mut con, "di"));
    assert_eq!((field(&mut con, "hs"), field(&mut con, "ds")), (1, 1));
    let many = "1000000000000";
    let age = |con: &mut redis::Connection, hours: i64, days: i64, hourly: &str, daily: &str| {
        redis::cmd("HSET")
            .arg(group)
            .arg(&["hi", &(hour - hours).to_string(), "hs", hourly, "hv", "0"])
            .arg(&["di", &(day - days).to_string(), "ds", daily, "dv", "0"])
            .arg(&["hsp", "0", "hvp", "0", "dsp", "0", "dvp", "0"])
            .query::<()>(con)
            .unwrap();
    };
    // Windows two periods old, however full, are forgotten.
    age(&mut con, 2, 2, many, many);
    assert_eq!(client.create("turn1", &[]).await.status, StatusCode::OK);
    assert_eq!((field(&mut con, "hi"), field(&mut con, "hsp")), (hour, 0));
    assert_eq!((field(&mut con, "hs"), field(&mut con, "ds")), (1, 1));
    // The hour before: its unverified sends carry over and deny.
    age(&mut con, 1, 0, many, "1");
    assert_eq!(
        assert_limited(&client.create("turn2", &[]).await),
        "fraud-guard"
    );
    // The day before, likewise (the hour being fresh).
    age(&mut con, 0, 1, "1", many);
    assert_eq!(
        assert_limited(&client.create("turn3", &[]).await),
        "fraud-guard"
    );
    // A quiet previous hour carries its count, and does not deny.
    age(&mut con, 1, 0, "2", "2");
    let answer = client.create("turn4", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!((field(&mut con, "hi"), field(&mut con, "hsp")), (hour, 2));
    assert_eq!(field(&mut con, "hs"), 1);
    // A verification counts as verified in the current windows, turning them over first
    // (the settlement script's own turnover): the hour before's sends become `hsp`. The
    // windows are emptied first, so the create is allowed whatever the time of the hour.
    age(&mut con, 0, 0, "0", "0");
    let (cookie, code) = session(&server, &client, "turn5").await.unwrap();
    age(&mut con, 1, 0, "5", "2");
    let answer = client.verify(&code, &cookie).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let fields = ["hi", "hs", "hv", "hsp", "hvp", "di", "ds", "dv"];
    let values: Vec<i64> = fields.iter().map(|f| field(&mut con, f)).collect();
    assert_eq!(values, [hour, 0, 1, 5, 0, day, 2, 1], "{fields:?}");
}

/// On a Redis Cluster as well: a session begun with the limits on has its ids in the
/// limiter's slot, so the limiter's script makes its id changes. Every session id a
/// request touches goes to the limiter's master inside that script (but a right code's
/// use, a `DEL`), and the other masters never see one.
#[tokio::test]
async fn on_a_cluster_a_charged_request_is_one_round_trip() {
    let cluster = RedisCluster::unreplicated();
    let server = builder()
        .store_url(&cluster.url())
        .env("OTP_MASTER_KEY", otp_server_blackbox::TEST_MASTER_KEY)
        .env("OTP_CODE_ALPHABET", "digits")
        .env("OTP_CODE_LENGTH", "4")
        .start();
    let client = Client::from(&server, "127.0.0.1");
    // The first request loads the scripts; watch from the second on.
    session(&server, &client, "warm@example.com").await.unwrap();
    let limiter_slot = cluster.slot_of("{lim}");
    let limiter_master = cluster.master_for_slot(limiter_slot).unwrap();
    let mut masters: Vec<u16> = [0, limiter_slot, 16383]
        .iter()
        .map(|slot| cluster.master_for_slot(*slot).unwrap())
        .collect();
    masters.sort_unstable();
    masters.dedup();
    assert_eq!(masters.len(), 3, "{masters:?}");
    let monitors: Vec<(u16, Monitor)> = masters.iter().map(|p| (*p, Monitor::start(*p))).collect();
    let (cookie, code) = session(&server, &client, "one@example.com").await.unwrap();
    let answer = client.verify(&wrong(&code), &cookie).await;
    assert_eq!(answer.json()["error"], "OTP:INCORRECT", "{}", answer.text());
    assert_eq!(
        client.verify(&wrong(&code), &cookie).await.json()["error"],
        "OTP:INVALID_COOKIE"
    );
    let answer = client.verify(&code, &answer.cookie().unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    for (port, monitor) in &monitors {
        let commands = monitor.session_id_commands();
        if *port != limiter_master {
            assert!(commands.is_empty(), "{port}: {commands:#?}");
            continue;
        }
        let (scripted, others): (Vec<&String>, Vec<&String>) = commands
            .iter()
            .partition(|c| c.to_lowercase().contains("\"evalsha\"") && c.contains("lim:{lim}"));
        // The create, the wrong code, the replayed cookie and the right code's check.
        assert_eq!(scripted.len(), 4, "{commands:#?}");
        let verbs: Vec<String> = others
            .iter()
            .map(|c| c.split('"').nth(1).unwrap_or_default().to_lowercase())
            .collect();
        assert_eq!(verbs, ["del"], "{commands:#?}");
    }
    // The live ids (the warm session's) are in the limiter's slot.
    let live = cluster
        .command_for_key("{lim}", &["KEYS", "otp:s:*"])
        .unwrap();
    let live: Vec<&str> = live.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(cluster.slot_of(live[0]), limiter_slot);
}

/// Behind a plain URL that refuses scripts across hash slots (a slot-aware proxy in front
/// of a Cluster; here one cluster-mode node serving every slot), a session begun with the
/// limits on has its charges carry its id changes (its ids are in the limiter's slot).
/// One begun while they were off has not: the first charge that carries such a change is
/// refused unrun, the store says so once and charges those alone from then on, still
/// carrying the others', and every request is served.
#[tokio::test]
async fn behind_a_cluster_proxy_charges_stop_carrying_id_changes_outside_the_limiters_slot() {
    let node = RedisCluster::one_master();
    let port: u16 = node.node_url().rsplit(':').next().unwrap().parse().unwrap();
    let server = |limits: &str| {
        builder()
            .store_url(&node.node_url())
            .env("OTP_LIMITS_ENABLED", limits)
            .env("OTP_MASTER_KEY", otp_server_blackbox::TEST_MASTER_KEY)
            .env("OTP_CODE_ALPHABET", "digits")
            .env("OTP_CODE_LENGTH", "4")
            .start()
    };
    let before = server("false");
    let client = Client::from(&before, "127.0.0.1");
    let mut begun_before = Vec::new();
    for n in 0..3 {
        let credential = format!("before{n}");
        begun_before.push(session(&before, &client, &credential).await.unwrap());
    }
    drop(before);
    let server = server("true");
    let client = Client::from(&server, "127.0.0.1");
    let verify_twice = |cookie: String, code: String| {
        let client = &client;
        async move {
            let wrong = client.verify(&wrong(&code), &cookie).await;
            assert_eq!(wrong.error(), "OTP:INCORRECT", "{}", wrong.text());
            let answer = client.verify(&code, &wrong.cookie().unwrap()).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        }
    };
    // The id commands sent outside the limiter's scripts, by verb.
    let unscripted = |monitor: &Monitor| -> Vec<String> {
        monitor
            .session_id_commands()
            .iter()
            .filter(|c| !(c.to_lowercase().contains("\"evalsha\"") && c.contains("lim:{lim}")))
            .map(|c| c.split('"').nth(1).unwrap_or_default().to_lowercase())
            .collect()
    };
    // Sessions begun now: their charges carry their changes (only a right code's use is
    // a call of its own), and nothing is refused.
    session(&server, &client, "warm").await.unwrap();
    let monitor = Monitor::start(port);
    for n in 0..2 {
        let (cookie, code) = session(&server, &client, &format!("after{n}"))
            .await
            .unwrap();
        verify_twice(cookie, code).await;
    }
    assert_eq!(unscripted(&monitor), ["del", "del"]);
    drop(monitor);
    let refused = "refuses scripts across hash slots";
    assert!(
        !server.log_text().contains(refused),
        "{}",
        server.log_text()
    );
    // Sessions begun before: refused once, then two calls each.
    for (cookie, code) in begun_before {
        verify_twice(cookie, code).await;
    }
    server
        .wait_for_log(refused, Duration::from_secs(5))
        .expect("one warning");
    // A session begun now still has its changes carried.
    let monitor = Monitor::start(port);
    let (cookie, code) = session(&server, &client, "later").await.unwrap();
    verify_twice(cookie, code).await;
    assert_eq!(unscripted(&monitor), ["del"]);
    let warnings = server
        .log_lines()
        .into_iter()
        .filter(|line| line.contains(refused))
        .count();
    assert_eq!(warnings, 1);
}
