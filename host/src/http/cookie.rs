//! The session cookie on the wire: its name, its attributes, reading it from a
//! request and writing `Set-Cookie`.
//!
//! Development uses the reference server's name `o`. Production uses the
//! `__Host-Http-` prefix, which browsers only accept with `Secure`, `Path=/` and no
//! `Domain`, and which scripts cannot set. Deleting works the same way in both modes.

use super::error::CookieAction;
use crate::config::Mode;
use axum::http::{header, HeaderMap, HeaderValue};
use std::time::{Duration, UNIX_EPOCH};

pub fn cookie_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Development => "o",
        Mode::Production => "__Host-Http-o",
    }
}

/// The value of the session cookie, if the request carries one.
///
/// Read as bytes: browsers send other sites' cookies of the same domain as they were
/// set, UTF-8 included, often in the same `Cookie` header as ours, and such a neighbour
/// must not hide the session cookie.
pub fn read_cookie(headers: &HeaderMap, mode: Mode) -> Option<String> {
    let name = cookie_name(mode).as_bytes();
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|&b| b == b'=')?;
            Some((&pair[..at], &pair[at + 1..]))
        })
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| std::str::from_utf8(v.trim_ascii()).ok())
        .map(str::to_string)
}

/// The `Set-Cookie` header for an action, or `None` to leave the cookie alone.
pub fn set_cookie_header(action: &CookieAction, mode: Mode) -> Option<HeaderValue> {
    let secure = match mode {
        Mode::Development => "",
        Mode::Production => "; Secure",
    };
    let name = cookie_name(mode);
    let text = match action {
        CookieAction::Keep => return None,
        CookieAction::Set {
            value,
            expires_at_ms,
            max_age_secs,
        } => format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}; Max-Age={max_age_secs}; Expires={}",
            http_date(*expires_at_ms)
        ),
        CookieAction::Delete => format!(
            "{name}=; Path=/; HttpOnly; SameSite=Strict{secure}; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0"
        ),
    };
    // The value is base64url and the rest is ASCII, so this cannot fail; if it ever
    // did, leaving the cookie alone is the safe answer.
    HeaderValue::from_str(&text).ok()
}

/// An HTTP date, at most the last second of the year 9999 (`httpdate` panics beyond it;
/// only a clock moved far ahead through the test routes gets there).
fn http_date(ms: u64) -> String {
    const LAST: u64 = 253_402_300_799_000; // 9999-12-31T23:59:59Z
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms.min(LAST)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_past_the_year_9999_are_the_last_http_date() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn reads_the_right_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; o=abc; __Host-Http-o=def"),
        );
        assert_eq!(read_cookie(&h, Mode::Development).as_deref(), Some("abc"));
        assert_eq!(read_cookie(&h, Mode::Production).as_deref(), Some("def"));
        assert_eq!(read_cookie(&HeaderMap::new(), Mode::Development), None);
    }

    #[test]
    fn a_neighbour_in_utf8_does_not_hide_the_session_cookie() {
        let mut h = HeaderMap::new();
        let value = HeaderValue::from_bytes("lang=Zürich; o=abc; x=\u{fe}".as_bytes()).unwrap();
        assert!(value.to_str().is_err(), "not visible ASCII");
        h.insert(header::COOKIE, value);
        assert_eq!(read_cookie(&h, Mode::Development).as_deref(), Some("abc"));
        // Ours in bytes that are not UTF-8 is no cookie, not an error.
        h.insert(
            header::COOKIE,
            HeaderValue::from_bytes(b"o=\xff\xfe").unwrap(),
        );
        assert_eq!(read_cookie(&h, Mode::Development), None);
    }

    #[test]
    fn attributes_per_mode() {
        let set = CookieAction::Set {
            value: "v".into(),
            expires_at_ms: 1_000,
            max_age_secs: 180,
        };
        let dev = set_cookie_header(&set, Mode::Development).unwrap();
        assert_eq!(
            dev.to_str().unwrap(),
            "o=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=180; Expires=Thu, 01 Jan 1970 00:00:01 GMT"
        );
        let prod = set_cookie_header(&CookieAction::Delete, Mode::Production).unwrap();
        let prod = prod.to_str().unwrap();
        assert!(prod.starts_with("__Host-Http-o=; Path=/; HttpOnly; SameSite=Strict; Secure;"));
        assert!(set_cookie_header(&CookieAction::Keep, Mode::Production).is_none());
    }
}
