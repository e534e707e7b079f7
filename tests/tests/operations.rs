//! Operations, against the real binary: the admin listener (metrics, the detailed
//! readiness report, key rotation, its token beyond loopback), the terse public `/ready`,
//! and the alert rules and dashboard in `deploy/` (promtool, and the names they use
//! against a live scrape). Request ids, logs and the HTTP edge have their own suites
//! (`request_ids.rs`, `edge.rs`).

use otp_server_blackbox::{
    scratch_dir, server_binary, workspace_root, RedisServer, Server, StatusCode,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Parses the Prometheus text: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let a = server.admin("GET", "/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a
        .header("content-type")
        .unwrap_or_default()
        .starts_with("application/openmetrics-text"));
    samples(&a.text())
}

fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

/// Every label value of every series.
fn label_values(series: &str) -> Vec<String> {
    let Some((_, labels)) = series.split_once('{') else {
        return Vec::new();
    };
    labels
        .trim_end_matches('}')
        .split("\",")
        .filter_map(|pair| pair.split_once('='))
        .map(|(_, v)| v.trim_matches('"').to_string())
        .collect()
}

/// A create, a wrong code and the right one against `server`: the code, and the cookie it
/// was verified with.
async fn flow(server: &Server, credential: &str) -> (String, String) {
    let a = server.create(credential, None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let code = server.wait_code(credential, 1);
    let wrong_code = format!(
        "{}{}",
        if code.starts_with('0') { '1' } else { '0' },
        &code[1..]
    );
    let wrong = server.verify(&wrong_code, a.cookie().as_deref()).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN, "{}", wrong.text());
    let cookie = wrong.cookie().unwrap();
    let right = server.verify(&code, Some(&cookie)).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());
    (code, cookie)
}

#[tokio::test]
async fn metrics_count_a_flow_and_carry_no_secret_labels() {
    let server = Server::with_defaults();
    let before = scrape(&server).await;
    let (code, cookie) = flow(&server, "\"metrics-user\"").await;
    let a = server.get("/nowhere/metrics-user").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let after = scrape(&server).await;

    let http = |route: &str, status: u16| {
        format!("otp_http_requests_total{{route=\"{route}\",status=\"{status}\"}}")
    };
    for (series, expected) in [
        (http("/api/otp/create", 200), 1.0),
        (http("/api/otp/verify", 403), 1.0),
        (http("/api/otp/verify", 200), 1.0),
        (http("unmatched", 404), 1.0),
        (
            "otp_http_request_duration_seconds_count{route=\"/api/otp/create\"}".into(),
            1.0,
        ),
        (
            "otp_codes_sent_total{channel=\"default\",kind=\"first\",result=\"ok\"}".into(),
            1.0,
        ),
        ("otp_verifications_total{result=\"incorrect\"}".into(), 1.0),
        ("otp_verifications_total{result=\"ok\"}".into(), 1.0),
        (
            "otp_plugin_calls_total{plugin=\"dev-sender\",hook=\"sending\",result=\"ok\"}".into(),
            1.0,
        ),
        (
            "otp_plugin_calls_total{plugin=\"json-final\",hook=\"final-action\",result=\"ok\"}"
                .into(),
            1.0,
        ),
        (
            "otp_plugin_call_duration_seconds_count{hook=\"credential-validation\"}".into(),
            1.0,
        ),
    ] {
        assert_eq!(delta(&before, &after, &series), expected, "{series}");
    }
    assert!(after.contains_key("otp_kek_rotations_total"));
    assert!(after.contains_key("otp_events_dropped_total"));
    assert!(after.contains_key("otp_plugin_slots_in_use{hook=\"sending\"}"));
    assert!(after
        .keys()
        .any(|k| k.starts_with("otp_plugin_reloads_total{result=\"ok\"}")));

    // No label value is the credential, the code, the cookie, the raw path or an address.
    for series in after.keys() {
        for value in label_values(series) {
            for secret in ["metrics-user", code.as_str(), cookie.as_str(), "127.0.0.1"] {
                assert!(!value.contains(secret), "{series} carries {secret:?}");
            }
        }
    }
}

#[tokio::test]
async fn redis_store_calls_are_timed_and_counted() {
    let redis = RedisServer::start();
    let server = Server::builder().default_plugins().redis(&redis).start();
    let before = scrape(&server).await;
    flow(&server, "\"stored\"").await;
    let after = scrape(&server).await;
    // create registers an id; the wrong code replaces it; the right one checks and
    // consumes it.
    for op in ["create", "replace", "contains", "consume"] {
        let series = format!("otp_store_call_duration_seconds_count{{op=\"{op}\"}}");
        assert_eq!(delta(&before, &after, &series), 1.0, "{series}");
        let series = format!("otp_store_errors_total{{op=\"{op}\"}}");
        assert_eq!(after.get(&series), Some(&0.0), "{series}");
    }
    // Redis stops: the next call fails closed and is counted.
    drop(redis);
    let a = server.create("\"stored\"", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    let after = scrape(&server).await;
    let failed: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("otp_store_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(failed >= 1.0, "{after:?}");
}

/// With the limits on one Redis, a charge makes the request's id change in the same
/// script; the limiter's calls are timed and counted beside the id store's, so a Redis
/// that stops answering still shows in `otp_store_errors_total`.
#[tokio::test]
async fn with_limits_on_one_redis_the_charges_are_timed_and_counted() {
    let redis = RedisServer::start();
    let server = Server::builder()
        .default_plugins()
        .redis(&redis)
        .env("OTP_LIMITS_ENABLED", "true")
        .start();
    let before = scrape(&server).await;
    flow(&server, "\"charged\"").await;
    let after = scrape(&server).await;
    // The create and the wrong code: a charge each, carrying the id change. The right
    // code: a charge (its reservation, carrying the check that its id is live), the id's
    // use, and the settlement that gives the reservation back.
    for (op, calls) in [
        ("charge", 3.0),
        ("settle", 1.0),
        ("create", 0.0),
        ("replace", 0.0),
        ("contains", 0.0),
        ("consume", 1.0),
    ] {
        let series = format!("otp_store_call_duration_seconds_count{{op=\"{op}\"}}");
        assert_eq!(delta(&before, &after, &series), calls, "{series}");
    }
    drop(redis);
    let a = server.create("\"charged\"", None).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    let after = scrape(&server).await;
    assert!(
        after.get("otp_store_errors_total{op=\"charge\"}") >= Some(&1.0),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_requested_rotation_changes_the_key_counts_and_keeps_sessions() {
    let server = Server::with_defaults();
    let a = server.create("\"rotated\"", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let cookie = a.cookie().unwrap();
    let before = scrape(&server).await;
    let a = server.admin("POST", "/admin/keys/rotate", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["rotated"], true);
    // The key maintenance loop announces it within a second, once.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while delta(&before, &scrape(&server).await, "otp_kek_rotations_total") < 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the rotation was never counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = scrape(&server).await;
    assert_eq!(delta(&before, &after, "otp_kek_rotations_total"), 1.0);
    // A cookie sealed before the rotation still opens; new cookies use the new key.
    let code = server.wait_code("\"rotated\"", 1);
    let a = server.verify(&code, Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // Only POST rotates.
    let a = server.admin("GET", "/admin/keys/rotate", None).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn public_ready_is_terse_and_the_admin_one_detailed() {
    let server = Server::with_defaults();
    let a = server.get("/ready").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), serde_json::json!({"ready": true}));
    let a = server.ready_details().await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["hooks"]["sending"]["plugin"], "dev-sender");
    // The admin routes are not on the public port.
    for path in ["/metrics", "/admin/keys/rotate"] {
        assert_eq!(server.get(path).await.status, StatusCode::NOT_FOUND);
    }
    // Not ready: the public answer still says only that.
    let server = Server::builder()
        .plugin_as(otp_server_blackbox::plugin("dev-sender"), "dev-sender")
        .start();
    let a = server.get("/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json(), serde_json::json!({"ready": false}));
    let details = server.ready_details().await;
    assert_eq!(details.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!details.json()["missing"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn the_admin_listener_beyond_loopback_needs_the_token() {
    let token = "test-admin-token-0123456789";
    let server = Server::builder()
        .default_plugins()
        .env("OTP_ADMIN_LISTEN", "0.0.0.0:0")
        .env("OTP_ADMIN_TOKEN", token)
        .start();
    let line = server
        .wait_for_log("admin listener", Duration::from_secs(1))
        .unwrap();
    assert!(line.contains("token=true"), "{line}");
    assert!(
        !server.log_text().contains(token),
        "the token is never logged"
    );
    // Called from 127.0.0.1: the bound address decides, not the caller's.
    for path in ["/metrics", "/ready"] {
        for given in [None, Some("wrong-token-wrong-token"), Some("")] {
            let a = server.admin("GET", path, given).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path} with {given:?}");
            assert_eq!(a.header("www-authenticate").as_deref(), Some("Bearer"));
            assert_eq!(a.error(), "ADMIN:UNAUTHORIZED");
        }
        let a = server.admin("GET", path, Some(token)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.text());
    }
    let a = server.admin("POST", "/admin/keys/rotate", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // Refusals leave a trace (a token guessed at), without what was sent.
    let line = server
        .wait_for_log("admin request refused", Duration::from_secs(5))
        .expect("a refused admin request is logged");
    assert!(!line.contains("wrong-token"), "{line}");
    // The scheme is case-insensitive; the token is not.
    let base = server.admin_base.as_ref().unwrap();
    for (header, status) in [
        (format!("bearer {token}"), StatusCode::OK),
        (format!("BEARER {token}"), StatusCode::OK),
        (
            format!("Bearer {}", token.to_uppercase()),
            StatusCode::UNAUTHORIZED,
        ),
        (format!("Basic {token}"), StatusCode::UNAUTHORIZED),
    ] {
        let a = server
            .http
            .get(format!("{base}/ready"))
            .header("authorization", &header)
            .send()
            .await
            .unwrap();
        assert_eq!(a.status(), status, "{header}");
    }

    // On loopback a token is optional, but once set it is required there too.
    let local = Server::builder()
        .default_plugins()
        .env("OTP_ADMIN_TOKEN", token)
        .start();
    let a = local.admin("POST", "/admin/keys/rotate", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = local.admin("GET", "/ready", Some(token)).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // Beyond loopback without a token (or with a short one) the server refuses to start.
    for token in [None, Some("short")] {
        let mut command = std::process::Command::new(server_binary());
        command
            .env("OTP_LISTEN", "127.0.0.1:0")
            .env("OTP_ADMIN_LISTEN", "0.0.0.0:0")
            .env("OTP_PLUGINS_DIR", scratch_dir("admin-token"));
        if let Some(token) = token {
            command.env("OTP_ADMIN_TOKEN", token);
        }
        let output = command.output().expect("running otp-server");
        assert!(!output.status.success(), "started with token {token:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("OTP_ADMIN_TOKEN"), "{stderr}");
    }
}

/// The metric names a scrape declares (`# TYPE` lines; counters with their `_total`).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let (family, kind) = (words.next()?, words.next()?);
            Some(if kind == "counter" {
                format!("{family}_total")
            } else {
                family.to_string()
            })
        })
        .collect()
}

/// Metric names in the alert rules and the dashboard (series suffixes removed).
fn deploy_metric_names() -> BTreeSet<String> {
    let mut text =
        std::fs::read_to_string(workspace_root().join("deploy/prometheus/otp-server-alerts.yml"))
            .unwrap();
    text +=
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/otp-server.json")).unwrap();
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("otp_") && *w != "otp_server")
        .map(|w| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn deploy_rules_pass_promtool_and_name_only_exported_metrics() {
    let rules = workspace_root().join("deploy/prometheus/otp-server-alerts.yml");
    let output = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The rules' own unit tests: users' bad input never pages, our failures do.
    let output = std::process::Command::new("promtool")
        .args(["test", "rules", "otp-server-alerts.test.yml"])
        .current_dir(workspace_root().join("deploy/prometheus"))
        .output()
        .expect("promtool");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Families show once they have a series: a flow on the Redis store (the in-memory
    // one is not timed), and one request over a budget.
    let redis = RedisServer::start();
    let server = Server::builder()
        .default_plugins()
        .redis(&redis)
        .env("OTP_LIMITS_ENABLED", "true")
        .env("OTP_LIMITS_REQUESTS_PER_NETWORK", "3/1h")
        .start();
    let a = server.create("\"deploy\"", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let code = server.wait_code("\"deploy\"", 1);
    let a = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let mut limited = false;
    for _ in 0..3 {
        limited |= server.create("\"deploy\"", None).await.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the request budget never ran out");
    let exported = exported_names(&server.admin("GET", "/metrics", None).await.text());
    assert_eq!(exported.len(), 15, "{exported:?}");
    let used = deploy_metric_names();
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "deploy/ uses {unknown:?}, not exported");
    // The dashboard shows every metric.
    let unused: Vec<_> = exported.difference(&used).collect();
    assert!(unused.is_empty(), "deploy/ never uses {unused:?}");
}
