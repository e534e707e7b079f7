//! The provider sender plugins (`twilio-sms`, `sendgrid-email`, `postmark-email`,
//! `ses-email`) in the real server, each against a local fake of its provider's API that
//! checks every request as the provider documents it: a localized message delivered and
//! verified, every provider answer mapped to what the client sees (bad destination → 400
//! `CREDENTIAL:INVALID`; bad credentials, misconfiguration, rate limit, 5xx, a slow answer →
//! 503 `SEND:UNAVAILABLE`) with the reason in the log, the SMS size warning, and never a code
//! or secret in the log.

use otp_server_blackbox::providers::{Answer as Reply, FakeProvider, Provider};
use otp_server_blackbox::{extra, plugin, Answer, Server, StatusCode};
use std::time::{Duration, Instant};

/// Templates with the code in brackets, so the tests can read it back, in English and
/// Brazilian Portuguese.
fn templates(provider: Provider) -> &'static str {
    if provider.is_sms() {
        "\"template.en\" = \"Acme code [{code}] valid {minutes} min\"\n\
         \"template.pt-BR\" = \"Código {app} [{code}] válido por {minutes} min\"\n"
    } else {
        "\"template.en.subject\" = \"Your {app} code\"\n\
         \"template.en.body\" = \"Code [{code}], valid {minutes} minutes.\"\n\
         \"template.pt-BR.subject\" = \"Seu código {app}\"\n\
         \"template.pt-BR.body\" = \"Código [{code}], válido por {minutes} minutos.\"\n"
    }
}

fn manifest(provider: Provider, api_base: &str, extra_config: &str) -> String {
    format!(
        "hooks = [\"sending\"]\n\
         [outbound]\nallow = [\"http://127.0.0.1:*\"]\n\
         [config]\n{}app_name = \"Acme\"\ntimeout_ms = 1000\n{}{extra_config}",
        provider.config(api_base),
        templates(provider),
    )
}

/// email-phone-credential, the provider's plugin with `manifest`, json-final.
fn server(provider: Provider, manifest: &str) -> Server {
    let mut builder = Server::builder()
        .plugin_as(plugin("email-phone-credential"), "email-phone-credential")
        .plugin_as(plugin("json-final"), "json-final")
        .plugin_as(extra(provider.plugin()), provider.plugin())
        .manifest(provider.plugin(), manifest)
        .env("OTP_SESSION_MAX_AGE_SECS", "600")
        // The first validation of a loaded machine can take longer than the 100 ms default:
        // this suite is about sending.
        .env("OTP_VALIDATE_DEADLINE_MS", "2000");
    for (name, value) in provider.secrets() {
        builder = builder.env(name, value);
    }
    builder.start()
}

/// A create request with an `Accept-Language` header.
async fn create(server: &Server, body: &str, accept_language: Option<&str>) -> Answer {
    let mut request = server
        .http
        .post(server.url("/api/otp/create"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(languages) = accept_language {
        request = request.header("accept-language", languages);
    }
    let response = request.send().await.expect("the server answers");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

/// What each provider answer becomes: (answer, status, error code, a log excerpt).
fn mapped_answers(provider: Provider) -> Vec<(Reply, StatusCode, &'static str, &'static str)> {
    let bad = StatusCode::BAD_REQUEST;
    let down = StatusCode::SERVICE_UNAVAILABLE;
    let (invalid, unavailable) = ("CREDENTIAL:INVALID", "SEND:UNAVAILABLE");
    let mut cases = match provider {
        Provider::Twilio => vec![
            (Reply::BadDestination(0), bad, invalid, "Twilio error 21211"),
            (Reply::BadDestination(1), bad, invalid, "Twilio error 21614"),
            (
                Reply::Misconfigured,
                down,
                unavailable,
                "Twilio error 21606",
            ),
        ],
        Provider::Sendgrid => vec![
            (
                Reply::BadDestination(0),
                bad,
                invalid,
                "personalizations.0.to.0.email: Does not contain a valid address",
            ),
            (
                Reply::Misconfigured,
                down,
                unavailable,
                "from: The from address does not match",
            ),
        ],
        Provider::Postmark => vec![
            (
                Reply::BadDestination(0),
                bad,
                invalid,
                "Postmark ErrorCode 300",
            ),
            (
                Reply::BadDestination(1),
                bad,
                invalid,
                "Postmark ErrorCode 406",
            ),
            (
                Reply::Misconfigured,
                down,
                unavailable,
                "Postmark ErrorCode 400",
            ),
        ],
        Provider::Ses => vec![
            (
                Reply::BadDestination(0),
                bad,
                invalid,
                "SES BadRequestException Illegal address",
            ),
            (
                Reply::Misconfigured,
                down,
                unavailable,
                "SES MessageRejected",
            ),
        ],
    };
    cases.extend([
        (
            Reply::RateLimited,
            down,
            unavailable,
            "answered 429 (rate limited)",
        ),
        (
            Reply::ServerError(500),
            down,
            unavailable,
            "answered 500 (provider error)",
        ),
        (
            Reply::ServerError(503),
            down,
            unavailable,
            "answered 503 (provider error)",
        ),
        (
            Reply::Slow(Duration::from_secs(4)),
            down,
            unavailable,
            "timed out",
        ),
    ]);
    cases
}

/// The whole exchange with one provider.
async fn speaks_the_providers_api(provider: Provider) {
    let name = provider.plugin();
    let fake = FakeProvider::start(provider);
    let server = server(provider, &manifest(provider, &fake.url, ""));
    assert_eq!(server.ready_details().await.status, StatusCode::OK);
    let mut codes = Vec::new();

    // Delivered in the reader's language, and the code from the provider verifies.
    let to = provider.destination(1);
    let a = create(
        &server,
        &provider.credential(&to),
        Some("pt-BR,pt;q=0.9,en;q=0.5"),
    )
    .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{name}: {}\n{}",
        a.text(),
        server.log_text()
    );
    let sent = fake.deliveries();
    assert_eq!(sent.len(), 1, "{name}: one request");
    assert_eq!(sent[0].to, to);
    let code = sent[0].between("[", "]").expect("the code in brackets");
    assert_eq!(code.len(), 10, "{name}: {code}");
    if provider.is_sms() {
        assert_eq!(
            sent[0].text,
            format!("Código Acme [{code}] válido por 10 min")
        );
        assert_eq!(sent[0].subject, None);
    } else {
        assert_eq!(
            sent[0].text,
            format!("Código [{code}], válido por 10 minutos.")
        );
        assert_eq!(sent[0].subject.as_deref(), Some("Seu código Acme"));
    }
    let v = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(v.status, StatusCode::OK, "{name}: {}", v.text());
    codes.push(code);

    // A language without a template: the default (English).
    let to = provider.destination(2);
    let a = create(&server, &provider.credential(&to), Some("ja")).await;
    assert_eq!(a.status, StatusCode::OK, "{name}: {}", a.text());
    let last = fake.deliveries().pop().unwrap();
    let code = last.between("[", "]").unwrap();
    let english = if provider.is_sms() {
        format!("Acme code [{code}] valid 10 min")
    } else {
        format!("Code [{code}], valid 10 minutes.")
    };
    assert_eq!(last.text, english, "{name}");
    codes.push(code);

    // Every provider answer the plugin maps.
    for (n, (reply, status, error, reason)) in mapped_answers(provider).into_iter().enumerate() {
        fake.answer(reply);
        let before = fake.count();
        let started = Instant::now();
        let a = server
            .create(
                &provider.credential(&provider.destination(10 + n as u64)),
                None,
            )
            .await;
        assert_eq!(
            (a.status, a.error().as_str()),
            (status, error),
            "{name} {reply:?}: {}",
            a.text()
        );
        assert!(a.cookie().is_none(), "{name} {reply:?}: no session");
        assert_eq!(
            fake.count(),
            before + 1,
            "{name} {reply:?}: exactly one request"
        );
        if let Reply::Slow(delay) = reply {
            assert!(
                started.elapsed() < delay,
                "{name}: the timeout cut the slow answer short"
            );
        }
        let line = server
            .wait_for_log(reason, Duration::from_secs(5))
            .unwrap_or_else(|| {
                panic!(
                    "{name} {reply:?}: no {reason:?} in the log:\n{}",
                    server.log_text()
                )
            });
        assert!(
            line.contains(name),
            "{name}: the reason names the plugin: {line}"
        );
        if let Some(code) = fake.deliveries().last().and_then(|d| d.between("[", "]")) {
            codes.push(code);
        }
    }
    fake.answer(Reply::Accept);
    assert!(fake.problems().is_empty(), "{name}: {:?}", fake.problems());
    assert_eq!(fake.refused_credentials(), 0);

    // Wrong credentials (a hot-reloaded manifest): the provider's refusal is unavailable.
    let wrong = match provider {
        Provider::Twilio => "auth_token = \"${OTP_PLUGIN_TWILIO_AUTH_TOKEN}-old\"",
        Provider::Sendgrid => "api_key = \"${OTP_PLUGIN_SENDGRID_API_KEY}-old\"",
        Provider::Postmark => "server_token = \"${OTP_PLUGIN_POSTMARK_SERVER_TOKEN}-old\"",
        Provider::Ses => "secret_access_key = \"${OTP_PLUGIN_AWS_SECRET_ACCESS_KEY}-old\"",
    };
    let key = wrong.split(' ').next().unwrap();
    let reloaded = manifest(provider, &fake.url, "")
        .lines()
        .map(|line| {
            if line.starts_with(&format!("{key} ")) {
                wrong
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mark = server.log_len();
    server.write_manifest(name, &reloaded);
    server
        .wait_for_log_after(mark, "plugin loaded", Duration::from_secs(10))
        .expect("the manifest reloads");
    let a = server
        .create(&provider.credential(&provider.destination(99)), None)
        .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "SEND:UNAVAILABLE")
    );
    assert_eq!(
        fake.refused_credentials(),
        1,
        "{name}: the fake saw the wrong credentials"
    );
    server
        .wait_for_log_after(mark, "credentials rejected", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{name}: no credentials line:\n{}", server.log_text()));

    // Neither a code nor a secret ever reaches the log.
    let log = server.log_text();
    let secrets: Vec<&str> = provider.secrets().iter().map(|(_, v)| *v).collect();
    for secret in codes.iter().map(String::as_str).chain(secrets) {
        assert!(
            !log.contains(secret),
            "{name}: the log leaks {secret:?}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sms() {
    speaks_the_providers_api(Provider::Twilio).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_email() {
    speaks_the_providers_api(Provider::Sendgrid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_email() {
    speaks_the_providers_api(Provider::Postmark).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_email() {
    speaks_the_providers_api(Provider::Ses).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_templates_warn_about_their_cost_until_it_is_accepted() {
    let fake = FakeProvider::start(Provider::Twilio);
    // The pt-BR text has 'ó', outside GSM-7: UCS-2.
    let server = server(Provider::Twilio, &manifest(Provider::Twilio, &fake.url, ""));
    let a = create(
        &server,
        &Provider::Twilio.credential("+15005550101"),
        Some("pt-BR"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let line = server
        .wait_for_log(
            "the pt-BR template needs 1 UCS-2 segment(s)",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no warning:\n{}", server.log_text()));
    assert!(
        line.contains("WARN") && line.contains("'ó'") && line.contains("allow_ucs2 = true"),
        "{line}"
    );
    // The English text fits in one GSM-7 segment: no warning for it.
    let quiet_from = server.log_len();
    let a = create(
        &server,
        &Provider::Twilio.credential("+15005550102"),
        Some("en"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let quiet_to = server.log_len();
    // A long English text: three GSM-7 segments.
    let long = format!(
        "\"template.en\" = \"{} [{{code}}]\"\n",
        "Hello from Acme. ".repeat(20)
    );
    let reloaded = manifest(Provider::Twilio, &fake.url, "").replace(
        "\"template.en\" = \"Acme code [{code}] valid {minutes} min\"\n",
        &long,
    );
    server.write_manifest("twilio-sms", &reloaded);
    server
        .wait_for_log_after(quiet_to, "plugin loaded", Duration::from_secs(10))
        .expect("the manifest reloads");
    let a = create(
        &server,
        &Provider::Twilio.credential("+15005550103"),
        Some("en"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    server
        .wait_for_log_after(
            quiet_to,
            "the en template needs 3 GSM-7 segment(s)",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("no warning for the long text:\n{}", server.log_text()));
    let quiet: Vec<String> = server.log_lines()[quiet_from..quiet_to].to_vec();
    assert!(
        !quiet.iter().any(|l| l.contains("template needs")),
        "the one-segment text warned:\n{}",
        quiet.join("\n")
    );
    // Accepting the cost in the manifest silences it.
    let mark = server.log_len();
    server.write_manifest(
        "twilio-sms",
        &format!("{reloaded}max_segments = 3\nallow_ucs2 = true\n"),
    );
    server
        .wait_for_log_after(mark, "plugin loaded", Duration::from_secs(10))
        .expect("the manifest reloads");
    for (n, language) in [(4, "en"), (5, "pt-BR")] {
        let a = create(
            &server,
            &Provider::Twilio.credential(&format!("+1500555010{n}")),
            Some(language),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    // A line known to come after anything those two sends logged.
    fake.answer(Reply::RateLimited);
    let a = server
        .create(&Provider::Twilio.credential("+15005550106"), None)
        .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    server
        .wait_for_log_after(mark, "answered 429", Duration::from_secs(5))
        .expect("the rate limit in the log");
    let lines: Vec<String> = server.log_lines().split_off(mark);
    assert!(
        !lines.iter().any(|l| l.contains("segment(s)")),
        "warned despite the allowance:\n{}",
        lines.join("\n")
    );
    assert_eq!(fake.count(), 6);
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_of_the_wrong_kind_is_refused_without_a_request() {
    let fake = FakeProvider::start(Provider::Sendgrid);
    let server = server(
        Provider::Sendgrid,
        &manifest(Provider::Sendgrid, &fake.url, ""),
    );
    // email-phone-credential accepts the phone number; the email sender cannot reach it.
    let a = server
        .create(&Provider::Twilio.credential("+15005550100"), None)
        .await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID")
    );
    assert_eq!(fake.count(), 0);
    server
        .wait_for_log(
            "sendgrid-email: the credential (channel sms) is not an email address",
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("{}", server.log_text()));
}

/// `twilio-sms` and a second copy of it, `backup-sms`, each with its own fake provider,
/// chained by `chain_env` (`OTP_HOOK_SENDING` or `OTP_HOOK_SENDING_BY_CHANNEL`).
struct Chain {
    server: Server,
    primary: FakeProvider,
    backup: FakeProvider,
}

/// The send deadline the chain shares.
const SEND_DEADLINE: Duration = Duration::from_secs(3);

fn chain(chain_env: (&str, &str), channels: &str, dev_sender: bool) -> Chain {
    let twilio = Provider::Twilio;
    let primary = FakeProvider::start(twilio);
    let backup = FakeProvider::start(twilio);
    // The backup's provider calls may take longer than what is left of the deadline.
    let backup_manifest =
        manifest(twilio, &backup.url, "").replace("timeout_ms = 1000\n", "timeout_ms = 10000\n");
    let mut builder = Server::builder()
        .plugin_as(plugin("email-phone-credential"), "email-phone-credential")
        .plugin_as(plugin("json-final"), "json-final")
        .plugin_as(extra(twilio.plugin()), "twilio-sms")
        .plugin_as(extra(twilio.plugin()), "backup-sms")
        .manifest(
            "twilio-sms",
            &(channels.to_string() + &manifest(twilio, &primary.url, "")),
        )
        .manifest("backup-sms", &(channels.to_string() + &backup_manifest))
        .env(chain_env.0, chain_env.1)
        .env("OTP_SEND_DEADLINE_MS", "3000")
        .env("OTP_RESEND_COOLDOWN_SECS", "0")
        .env("OTP_VALIDATE_DEADLINE_MS", "2000");
    if dev_sender {
        builder = builder.plugin_as(plugin("dev-sender"), "dev-sender");
    }
    for (name, value) in twilio.secrets() {
        builder = builder.env(name, value);
    }
    Chain {
        server: builder.start(),
        primary,
        backup,
    }
}

/// The value of one sample of `/metrics`, 0 when absent.
async fn sample(server: &Server, series: &str) -> f64 {
    let text = server.admin("GET", "/metrics", None).await.text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_fails_over_to_its_next_sender() {
    let Chain {
        server,
        primary,
        backup,
    } = chain(
        ("OTP_HOOK_SENDING_BY_CHANNEL", "sms=twilio-sms,backup-sms"),
        "channels = [\"sms\"]\n",
        true,
    );
    // Both list channel sms in their manifests: the configured chain decides, no ambiguity.
    let ready = server.ready_details().await.json();
    assert_eq!(ready["ready"], true, "{ready}");
    assert_eq!(
        ready["channels"]["sms"]["chain"],
        serde_json::json!(["twilio-sms", "backup-sms"]),
        "{ready}"
    );
    assert_eq!(ready["channels"]["sms"]["plugin"], "twilio-sms", "{ready}");
    assert_eq!(ready["hooks"]["sending"]["plugin"], "dev-sender", "{ready}");
    assert_eq!(ready["problems"], serde_json::json!([]), "{ready}");
    let phone = |n| Provider::Twilio.credential(&Provider::Twilio.destination(n));

    // The primary delivers while it can.
    let a = server.create(&phone(1), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!((primary.count(), backup.count()), (1, 0));

    // Primary down (503): the backup delivers, the client sees nothing of it.
    primary.answer(Reply::ServerError(503));
    let a = server.create(&phone(2), None).await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "{}\n{}",
        a.text(),
        server.log_text()
    );
    assert_eq!((primary.count(), backup.count()), (2, 1));
    let sent = backup.deliveries().pop().unwrap();
    assert_eq!(sent.to, Provider::Twilio.destination(2));
    let code = sent.between("[", "]").expect("the code");
    let v = server.verify(&code, a.cookie().as_deref()).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());
    let line = server
        .wait_for_log("failing over to the next sender", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("{}", server.log_text()));
    assert!(
        line.contains("twilio-sms") && line.contains("next=backup-sms") && line.contains("503"),
        "{line}"
    );
    assert!(!server.log_text().contains(&code), "a code in the log");
    let calls = "otp_plugin_calls_total{plugin=";
    assert_eq!(
        sample(
            &server,
            &format!("{calls}\"backup-sms\",hook=\"sending\",result=\"ok\"}}")
        )
        .await,
        1.0
    );
    assert_eq!(
        sample(
            &server,
            &format!("{calls}\"twilio-sms\",hook=\"sending\",result=\"unavailable\"}}")
        )
        .await,
        1.0
    );

    // Undeliverable ends the chain: no second provider pays for the same refusal.
    primary.answer(Reply::BadDestination(0));
    let a = server.create(&phone(3), None).await;
    assert_eq!(
        (a.status, a.error().as_str()),
        (StatusCode::BAD_REQUEST, "CREDENTIAL:INVALID"),
        "{}",
        a.text()
    );
    assert_eq!((primary.count(), backup.count()), (3, 1));

    // Both down: the primary hangs until its plugin's own timeout (1 s), the backup would
    // wait 10 s but gets only what is left of the one send deadline (3 s). The client hears
    // the primary's "unavailable", and the session is as it was: its first code verifies.
    primary.answer(Reply::Accept);
    let a = server.create(&phone(4), None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let first = primary
        .deliveries()
        .pop()
        .unwrap()
        .between("[", "]")
        .unwrap();
    primary.answer(Reply::Slow(Duration::from_secs(10)));
    backup.answer(Reply::Slow(Duration::from_secs(10)));
    let started = Instant::now();
    let r = server.resend(a.cookie().as_deref()).await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.error().as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "SEND:UNAVAILABLE"),
        "{}",
        r.text()
    );
    assert!(
        took >= SEND_DEADLINE - Duration::from_millis(200)
            && took < SEND_DEADLINE + Duration::from_millis(700),
        "answered after {took:?}: the chain shares {SEND_DEADLINE:?}"
    );
    eprintln!("both senders down: answered after {took:?}");
    assert_eq!(backup.count(), 2, "the backup was tried");
    let v = server.verify(&first, a.cookie().as_deref()).await;
    assert_eq!(v.status, StatusCode::OK, "{}", v.text());

    // Other channels keep their own sender.
    let a = server
        .create(&Provider::Sendgrid.credential("someone@example.com"), None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    server
        .wait_for_log_line(
            0,
            |l| l.contains("OTP for") && l.contains("someone@example.com"),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| panic!("dev-sender did not send:\n{}", server.log_text()));
    assert_eq!(backup.count(), 2);
    assert!(primary.problems().is_empty() && backup.problems().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_sender_of_the_chain_under_load_fails_no_request() {
    let Chain {
        server,
        primary,
        backup,
    } = chain(("OTP_HOOK_SENDING", "twilio-sms,backup-sms"), "", false);
    let ready = server.ready_details().await.json();
    assert_eq!(
        ready["hooks"]["sending"]["chain"],
        serde_json::json!(["twilio-sms", "backup-sms"]),
        "{ready}"
    );
    primary.answer(Reply::ServerError(503));
    let loads_before = server.log_len();
    let server = std::sync::Arc::new(server);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..4u64 {
        let (server, stop) = (server.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let to = Provider::Twilio.destination(1000 * client + n);
                let a = server.create(&Provider::Twilio.credential(&to), None).await;
                if a.status != StatusCode::OK {
                    failures.push(format!("{to}: {} {}", a.status, a.text()));
                }
                n += 1;
            }
            (n, failures)
        }));
    }
    // Replace both plugins' code and manifests while the requests run.
    let twilio = Provider::Twilio;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (name, fake) = if round % 2 == 0 {
            ("backup-sms", &backup)
        } else {
            ("twilio-sms", &primary)
        };
        let app = format!("app_name = \"Acme{round}\"\n");
        let text = manifest(twilio, &fake.url, "").replace("app_name = \"Acme\"\n", &app);
        otp_server_blackbox::install_manifest(&server.plugins_dir, name, &text);
        tokio::time::sleep(Duration::from_millis(300)).await;
        otp_server_blackbox::install(&extra(twilio.plugin()), &server.plugins_dir, name);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let (n, failures) = client.await.unwrap();
        assert!(failures.is_empty(), "{failures:#?}\n{}", server.log_text());
        total += n;
    }
    assert!(total >= 20, "only {total} requests ran");
    assert_eq!(
        backup.count() as u64,
        total,
        "every code went through the backup"
    );
    // Six manifest changes: six reloads of a chain member (an identical wasm is not one).
    let reloads = server.log_lines()[loads_before..]
        .iter()
        .filter(|l| {
            l.contains("plugin loaded") && (l.contains("twilio-sms") || l.contains("backup-sms"))
        })
        .count();
    assert!(reloads >= 6, "{reloads} reloads of the chain");
}
