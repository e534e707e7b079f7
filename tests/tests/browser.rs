//! The demo page in a real browser (headless Chromium over WebDriver): signing in with
//! the keyboard alone, what the page shows for wrong codes and blocks, the resend
//! countdown, the production cookie on a local address, and the same page served from a
//! second origin — on another subdomain of the same site (works) and on another site
//! (cannot work: the browser keeps no `SameSite=Strict` cookie from a cross-site answer).
//!
//! Codes come from the development sender's log line. Every test leaves a screenshot in
//! `target/browser-screenshots/`.

use otp_server_blackbox::browser::{with_browser, Browser};
use otp_server_blackbox::Server;
use serde_json::{json, Value};
use std::future::IntoFuture;

/// What the page sends for `me@example.com`, as the default validator names it.
const ID: &str = r#"{"email":"me@example.com"}"#;

fn demo_server(env: &[(&str, &str)]) -> Server {
    // A generous validation deadline: Chromium shares this machine with the server.
    let mut builder = Server::builder()
        .default_plugins()
        .env("OTP_VALIDATE_DEADLINE_MS", "2000");
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    builder.start()
}

/// Opens the page and asks for a code for me@example.com, with the keyboard.
async fn ask_for_a_code(b: &Browser, url: &str) {
    b.goto(url).await;
    b.wait_until(
        "the page and its script have loaded",
        "return document.readyState === 'complete'",
    )
    .await;
    if b.focused_id().await != "email" {
        b.fail("the email field has the focus on load").await;
    }
    b.keys("me@example.com\n").await;
    b.wait_text("#sent-to", "A code is on its way for me@example.com")
        .await;
    if b.focused_id().await != "otp" {
        b.fail("the code field has the focus once the code is sent")
            .await;
    }
}

/// A code of the right format that is not `code`.
fn wrong(code: &str) -> String {
    let first = if code.starts_with('a') { "b" } else { "a" };
    format!("{first}{}", &code[1..])
}

fn cookie<'a>(cookies: &'a [Value], name: &str) -> Option<&'a Value> {
    cookies.iter().find(|c| c["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_origin_sign_in_with_the_keyboard_alone() {
    let server = demo_server(&[]);
    let page = server.get("/demo").await;
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe"),
        "{policy}"
    );
    with_browser("same-origin", &[], async |b| {
        ask_for_a_code(b, &server.url("/demo")).await;
        assert_eq!(
            b.attribute("#otp", "autocomplete").await.as_deref(),
            Some("one-time-code")
        );
        assert_eq!(
            b.attribute("#otp", "inputmode").await.as_deref(),
            Some("text")
        );
        assert_eq!(b.text("label[for=otp]").await, "One-time code");
        assert!(b.fits_width().await, "the page scrolls sideways at 360 px");
        let resend = b.text("#resend").await;
        assert!(resend.starts_with("Resend code in "), "{resend}");
        let cookies = b.cookies().await;
        let session = cookie(&cookies, "o").unwrap_or_else(|| panic!("no cookie o: {cookies:?}"));
        assert_eq!(session["httpOnly"], true);
        assert_eq!(session["sameSite"], "Strict");
        assert_eq!(b.script("return document.cookie", json!([])).await, "");
        b.screenshot("same-origin-code").await;

        b.keys(&format!("{}\n", server.wait_code(ID, 1))).await;
        let done = b.wait_text("#done-step", "successfully verified").await;
        assert!(done.contains("me@example.com"), "{done}");
        assert_eq!(b.focused_id().await, "done-title");
        assert!(
            cookie(&b.cookies().await, "o").is_none(),
            "the cookie is deleted after the sign-in"
        );
        assert_eq!(b.console_errors().await, Vec::<String>::new());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_show_what_happened_and_the_blocks() {
    // A pause long enough that a loaded machine still sees it before it ends.
    let server = demo_server(&[("OTP_BLOCK_SECS", "8")]);
    with_browser("wrong-code", &[], async |b| {
        ask_for_a_code(b, &server.url("/demo")).await;
        let code = server.wait_code(ID, 1);
        let wrong = wrong(&code);

        b.keys("abc\n").await;
        b.wait_text("#otp-error", "The code has 10 characters")
            .await;

        b.keys(&format!("{wrong}\n")).await;
        let first = b.wait_text("#otp-error", "(OTP:INCORRECT)").await;
        assert!(first.contains("That code is not right"), "{first}");
        assert_eq!(
            b.attribute("#otp", "aria-invalid").await.as_deref(),
            Some("true")
        );
        assert_eq!(b.focused_id().await, "otp");
        b.screenshot("wrong-code-incorrect").await;

        // The second wrong code starts a temporary block (8 s here).
        b.keys(&format!("{wrong}\n")).await;
        b.wait_text("#otp-error", "before the next try").await;
        b.wait_text("#expiry", "Verification paused").await;
        b.keys(&format!("{code}\n")).await;
        b.wait_text("#otp-error", "(OTP:VERIFICATION_NOT_ALLOWED)")
            .await;
        assert!(b.fits_width().await, "the page scrolls sideways at 360 px");
        b.screenshot("wrong-code-paused").await;
        b.wait_until(
            "the pause is over",
            "return !document.getElementById('expiry').innerText.includes('paused')",
        )
        .await;

        // The last attempt, wrong: blocked in this session.
        b.keys(&format!("{wrong}\n")).await;
        let last = b.wait_text("#otp-error", "(OTP:TOO_MANY_ATTEMPTS)").await;
        assert!(last.contains("no attempts are left"), "{last}");
        b.wait_text("#expiry", "blocked").await;
        assert_eq!(
            b.script(
                "return document.getElementById('resend').disabled",
                json!([])
            )
            .await,
            true
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_after_the_countdown() {
    // A cooldown long enough that a loaded machine still reads the countdown.
    let server = demo_server(&[("OTP_RESEND_COOLDOWN_SECS", "8")]);
    with_browser("resend", &[], async |b| {
        ask_for_a_code(b, &server.url("/demo")).await;
        let first = server.wait_code(ID, 1);
        let countdown = b.text("#resend").await;
        assert!(
            (1..=9).any(|n| countdown == format!("Resend code in {n} s")),
            "the resend button shows {countdown:?}"
        );
        b.wait_until(
            "the resend button is enabled",
            "return !document.getElementById('resend').disabled",
        )
        .await;
        assert_eq!(b.text("#resend").await, "Resend code");

        // Tab from the code field past Verify to Resend, and press Enter.
        b.keys("\t").await;
        b.keys("\t").await;
        if b.focused_id().await != "resend" {
            b.fail("tabbing to the resend button").await;
        }
        b.keys("\n").await;
        b.wait_text("#status", "A new code was sent").await;
        let second = server.wait_code(ID, 2);
        assert_ne!(first, second);
        // One resend by default: none is left until the code expires.
        b.wait_text("#resend", "No more resends").await;
        b.screenshot("resend-sent").await;

        b.keys(&format!("{first}\n")).await;
        b.wait_text("#otp-error", "(OTP:INCORRECT)").await;
        b.keys(&format!("{second}\n")).await;
        b.wait_text("#done-step", "successfully verified").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_cookie_works_on_localhost_over_http() {
    // `__Host-Http-o` needs `Secure`, which Chromium accepts only in a secure context:
    // HTTPS, or a potentially trustworthy origin such as 127.0.0.1 and localhost.
    let server = demo_server(&[
        ("OTP_ENV", "production"),
        ("OTP_TEST_CLOCK", "0"),
        ("OTP_DEMO", "1"),
    ]);
    let port = port_of(&server);
    with_browser("production-cookie", &[], async |b| {
        for (n, host) in ["127.0.0.1", "localhost"].into_iter().enumerate() {
            ask_for_a_code(b, &format!("http://{host}:{port}/demo")).await;
            let cookies = b.cookies().await;
            let Some(session) = cookie(&cookies, "__Host-Http-o") else {
                b.fail(&format!(
                    "storing __Host-Http-o on {host} (cookies: {cookies:?})"
                ))
                .await
            };
            assert_eq!(session["secure"], true);
            assert_eq!(session["httpOnly"], true);
            assert_eq!(session["sameSite"], "Strict");
            assert_eq!(b.script("return document.cookie", json!([])).await, "");
            b.keys(&format!("{}\n", server.wait_code(ID, n + 1))).await;
            b.wait_text("#done-step", "successfully verified").await;
            assert!(cookie(&b.cookies().await, "__Host-Http-o").is_none());
        }
    })
    .await;
}

#[tokio::test]
async fn the_demo_is_off_in_production_unless_asked_for() {
    let production = demo_server(&[("OTP_ENV", "production"), ("OTP_TEST_CLOCK", "0")]);
    let development = demo_server(&[]);
    for path in [
        "/demo",
        "/demo/app.js",
        "/demo/otp-client.js",
        "/demo/style.css",
    ] {
        let get = |server: &Server| server.http.get(server.url(path)).send();
        let off = get(&production).await.expect("an answer");
        assert_eq!(off.status(), 404, "{path} in production");
        assert!(off.bytes().await.unwrap().is_empty(), "{path}: a body");
        let on = get(&development).await.expect("an answer");
        assert_eq!(on.status(), 200, "{path} in development");
    }
}

/// The demo's files as the API server serves them, from a second origin: the page names
/// the API's origin in `<meta name="otp-api">` and its CSP allows calls to it. The port
/// is taken first, so that the API server can be started with it in `CORS_ORIGIN`.
struct SecondOrigin {
    port: u16,
    listener: Option<tokio::net::TcpListener>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for SecondOrigin {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl SecondOrigin {
    async fn bind() -> SecondOrigin {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the second origin");
        SecondOrigin {
            port: listener.local_addr().expect("its address").port(),
            listener: Some(listener),
            task: None,
        }
    }

    async fn serve(&mut self, api: &Server, api_origin: &str) {
        use axum::http::header;
        let page = api.get("/demo").await.text().replace(
            r#"<meta charset="utf-8">"#,
            &format!(r#"<meta charset="utf-8"><meta name="otp-api" content="{api_origin}">"#),
        );
        let policy = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {api_origin}"
        );
        let mut router = axum::Router::new();
        for (path, content_type) in [
            ("/demo", "text/html; charset=utf-8"),
            ("/demo/app.js", "text/javascript"),
            ("/demo/otp-client.js", "text/javascript"),
            ("/demo/style.css", "text/css"),
        ] {
            let body = if path == "/demo" {
                page.clone()
            } else {
                api.get(path).await.text()
            };
            let headers = [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CONTENT_SECURITY_POLICY, policy.clone()),
            ];
            router = router.route(
                path,
                axum::routing::get(move || async move { (headers, body) }),
            );
        }
        let listener = self.listener.take().expect("serving once");
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, router).into_future().await;
        }));
    }
}

/// Chromium resolves every name under these domains to 127.0.0.1.
const RESOLVE_EXAMPLE_DOMAINS: &str =
    "--host-resolver-rules=MAP *.example.com 127.0.0.1, MAP *.example.net 127.0.0.1";

fn port_of(server: &Server) -> u16 {
    server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the server's port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_subdomain_of_the_same_site_signs_in() {
    let mut site = SecondOrigin::bind().await;
    let app = format!("http://app.example.com:{}", site.port);
    let server = demo_server(&[("CORS_ORIGIN", &app)]);
    let api = format!("http://api.example.com:{}", port_of(&server));
    site.serve(&server, &api).await;
    with_browser(
        "cross-origin-same-site",
        &[RESOLVE_EXAMPLE_DOMAINS],
        async |b| {
            ask_for_a_code(b, &format!("{app}/demo")).await;
            b.keys(&format!("{}\n", server.wait_code(ID, 1))).await;
            b.wait_text("#done-step", "successfully verified").await;

            // The same page from an origin CORS_ORIGIN does not name: the browser refuses
            // to hand the answer to the page.
            b.goto(&format!("http://127.0.0.1:{}/demo", site.port))
                .await;
            b.wait_until(
                "the page has loaded",
                "return document.readyState === 'complete'",
            )
            .await;
            b.keys("me@example.com\n").await;
            b.wait_text("#credential-error", "(CLIENT:NETWORK)").await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_page_cannot_keep_the_cookie() {
    let mut site = SecondOrigin::bind().await;
    let app = format!("http://app.example.net:{}", site.port);
    let server = demo_server(&[("CORS_ORIGIN", &app)]);
    let api = format!("http://api.example.com:{}", port_of(&server));
    site.serve(&server, &api).await;
    with_browser("cross-site", &[RESOLVE_EXAMPLE_DOMAINS], async |b| {
        // CORS lets the page read the answer, so the code is sent …
        ask_for_a_code(b, &format!("{app}/demo")).await;
        let code = server.wait_code(ID, 1);
        // … but the SameSite=Strict cookie of a cross-site answer was not stored, so
        // the verification carries none.
        b.keys(&format!("{code}\n")).await;
        b.wait_text("#credential-error", "(OTP:INVALID_COOKIE)")
            .await;
    })
    .await;
}
