//! `GET /demo`: a sign-in page for trying the server in a browser — create, enter the
//! code from the log, verify, see the final action's answer.
//!
//! The page is four files compiled into the binary: `demo/index.html`, `demo/app.js`,
//! `demo/style.css`, and the client module `client/otp-client.js` that web frontends can
//! use as it is. Nothing is inline and nothing comes from another origin, so the demo
//! answers carry a Content-Security-Policy of their own ([`POLICY`]: scripts, styles and
//! calls from this origin only, Trusted Types required) instead of the API's
//! `default-src 'none'`; they mark themselves with [`ContentSecurityPolicy`] and the
//! security-headers middleware writes it. The code field's length, alphabet and
//! `inputmode` come from the server's settings when the routes are built.
//!
//! The routes exist when the `demo` setting is on (the default in development).

use super::AppState;
use crate::protocol::{Alphabet, Settings};
use axum::body::Bytes;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const PAGE: &str = include_str!("demo/index.html");
const APP: &str = include_str!("demo/app.js");
const STYLE: &str = include_str!("demo/style.css");
const CLIENT: &str = include_str!("../../../client/otp-client.js");

/// The demo's Content-Security-Policy: everything from this origin only, no inline
/// script or style, no forms that navigate, no framing, and DOM sinks such as
/// `innerHTML` refused (the page only writes text).
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
    require-trusted-types-for 'script'; trusted-types 'none'";

/// A response extension naming the Content-Security-Policy to send instead of the
/// default one. Only the server's own handlers can set it: plugin answers carry headers,
/// never extensions.
#[derive(Clone, Copy, Debug)]
pub struct ContentSecurityPolicy(pub &'static str);

/// The page and its three assets.
pub fn routes(settings: &Settings) -> Router<AppState> {
    let page = Bytes::from(render(settings));
    Router::new()
        .route(
            "/demo",
            get(move || {
                let page = page.clone();
                async move { asset("text/html; charset=utf-8", page) }
            }),
        )
        .route("/demo/app.js", get(|| async { script(APP) }))
        .route("/demo/otp-client.js", get(|| async { script(CLIENT) }))
        .route(
            "/demo/style.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    Bytes::from_static(STYLE.as_bytes()),
                )
            }),
        )
}

fn script(text: &'static str) -> Response {
    asset(
        "text/javascript; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn asset(content_type: &'static str, body: Bytes) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Revalidate each time: a new binary serves new files under the same names.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response();
    response
        .extensions_mut()
        .insert(ContentSecurityPolicy(POLICY));
    response
}

/// The page with the code field fitted to the configured code.
fn render(settings: &Settings) -> String {
    let (alphabet, inputmode, hint) = match settings.alphabet {
        Alphabet::Digits => (
            "digits",
            "numeric",
            format!("{} digits, from the server's log.", settings.code_length),
        ),
        Alphabet::LowerAlnum => (
            "alphanumeric",
            "text",
            format!(
                "{} characters (letters and digits), from the server's log.",
                settings.code_length
            ),
        ),
    };
    PAGE.replace("{{alphabet}}", alphabet)
        .replace("{{inputmode}}", inputmode)
        .replace("{{code_length}}", &settings.code_length.to_string())
        .replace("{{code_hint}}", &hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(alphabet: Alphabet) -> Settings {
        Settings {
            alphabet,
            code_length: 6,
            ..Settings::default()
        }
    }

    #[test]
    fn the_code_field_follows_the_settings() {
        let digits = render(&settings(Alphabet::Digits));
        assert!(digits.contains(r#"inputmode="numeric""#));
        assert!(digits.contains(r#"data-length="6""#));
        assert!(digits.contains(r#"data-alphabet="digits""#));
        let alnum = render(&settings(Alphabet::LowerAlnum));
        assert!(alnum.contains(r#"inputmode="text""#));
        assert!(alnum.contains(r#"autocomplete="one-time-code""#));
        for page in [digits, alnum] {
            assert!(!page.contains("{{"), "an unfilled placeholder");
        }
    }

    #[test]
    fn nothing_inline_and_every_reference_is_served() {
        let page = render(&Settings::default());
        // Scripts only by src, no event-handler or style attributes.
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..i + page[i..].find('>').unwrap()];
            assert!(tag.contains("src=\"/demo/"), "inline script: {tag}");
        }
        assert!(!page.contains("<style"));
        assert!(!page.contains(" style="));
        let handler = page.match_indices(" on").find(|(i, _)| {
            let name: String = page[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            page[i + 3 + name.len()..].starts_with('=')
        });
        assert!(handler.is_none(), "an event-handler attribute");
        for reference in ["/demo/app.js", "/demo/style.css"] {
            assert!(page.contains(reference));
        }
        assert!(APP.contains(r#"from "./otp-client.js""#));
        for script in [APP, CLIENT] {
            assert!(!script.contains("innerHTML") && !script.contains("eval("));
        }
        assert!(!POLICY.contains("unsafe"));
    }
}
