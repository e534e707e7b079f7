//! The client's address: the socket peer, or — only behind a trusted proxy — the
//! address that proxy reports.
//!
//! A forwarding header is only as trustworthy as whoever added its last entry. So the
//! header is read only when the socket peer is one of `trusted_proxies`, and then from
//! the right: each entry was appended by the hop to its right; entries added by
//! trusted proxies are skipped, and the first address that is *not* a trusted proxy is
//! the client. Everything to the left of it was written by the client and is ignored,
//! so a forged `X-Forwarded-For: 1.2.3.4` gains nothing. An entry that is not an
//! address (`unknown`, an obfuscated name, garbage) stops the walk at the trusted hop
//! that reported it, so such clients share that proxy's budget rather than escaping
//! one. Only the header the proxies write is read (`client_address_header`:
//! `X-Forwarded-For`, or RFC 7239 `Forwarded`): a client could otherwise add the other
//! one with any value.
//!
//! `Forwarded` is parsed as RFC 7239 writes it: commas and semicolons inside a quoted
//! string belong to the value. Proxies quote what they copy from the request (a
//! `host="…"` taken from the client's `Host`), so splitting on every comma would let a
//! client's text open an element of its own to the right of the proxy's `for=`. An
//! element that does not parse, or names a parameter twice, is garbage like any other.
//! A proxy that copies request text into `Forwarded` *unquoted* cannot be defended here:
//! configure it to write `for=` alone, or use `X-Forwarded-For`.
//!
//! The result is used for the limits (as a network key) and handed to the plugins as
//! the request context's `client_ip`.

use crate::limits::ForwardedHeader;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Most header entries looked at, from the right: enough for any real proxy chain.
const MAX_HOPS: usize = 32;

#[derive(Clone, Debug, Default)]
pub struct ClientAddresses {
    trusted: Vec<IpNet>,
    header: Option<ForwardedHeader>,
}

impl ClientAddresses {
    pub fn new(trusted_proxies: Vec<IpNet>, header: ForwardedHeader) -> ClientAddresses {
        ClientAddresses {
            trusted: trusted_proxies,
            header: Some(header),
        }
    }

    /// Whether `address` is one of the trusted proxies (whose forwarding header and
    /// `x-request-id` are believed).
    pub fn is_trusted_proxy(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        self.trusted.iter().any(|net| net.contains(&address))
    }

    /// The client's address for a request from `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut current = peer.to_canonical();
        let Some(header) = self.header else {
            return current;
        };
        if !self.is_trusted_proxy(current) {
            return current;
        }
        let lines = headers.get_all(match header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        });
        // Each hop's entry, from the right: its address, or `None` when it is none.
        let hops: Box<dyn Iterator<Item = Option<IpAddr>>> = match header {
            ForwardedHeader::XForwardedFor => Box::new(
                lines
                    .iter()
                    .rev()
                    .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','))
                    .map(|entry| std::str::from_utf8(entry).ok().and_then(parse_node)),
            ),
            ForwardedHeader::Forwarded => Box::new(lines.iter().rev().flat_map(|value| {
                forwarded_elements(value.as_bytes())
                    .into_iter()
                    .map(|element| forwarded_for(element).and_then(|node| parse_node(&node)))
            })),
        };
        for address in hops.take(MAX_HOPS) {
            match address {
                Some(address) if self.is_trusted_proxy(address) => current = address,
                Some(address) => return address,
                None => return current,
            }
        }
        current
    }
}

/// One line of `Forwarded`, split into its elements at the commas outside quoted
/// strings, from the right: the last element first. Read from the right, the quoting
/// of the elements proxies appended is whole before any text a client wrote is reached,
/// so a client's unbalanced quote (`for="x`, to which a proxy appends `, for=…`) makes
/// only its own element garbage, never the proxy's. A quote is escaped when an odd
/// number of backslashes precedes it.
fn forwarded_elements(line: &[u8]) -> Vec<&[u8]> {
    let mut elements = Vec::new();
    let (mut end, mut quoted) = (line.len(), false);
    for i in (0..line.len()).rev() {
        match line[i] {
            b'"' => {
                let backslashes = line[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                if backslashes % 2 == 0 {
                    quoted = !quoted;
                }
            }
            b',' if !quoted => {
                elements.push(&line[i + 1..end]);
                end = i;
            }
            _ => {}
        }
    }
    elements.push(&line[..end]);
    elements
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`),
/// unquoted; `None` when the element has none, names a parameter twice, or does not
/// parse. Values other than `for`'s may hold any bytes a header may.
fn forwarded_for(element: &[u8]) -> Option<String> {
    let mut rest = element;
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut node = None;
    loop {
        // Empty pairs (`;;`) and whitespace around them are allowed.
        rest = trim_start(rest, b"; \t");
        if rest.is_empty() {
            return node;
        }
        let equals = rest.iter().position(|&b| b == b'=')?;
        let name = rest[..equals].to_ascii_lowercase();
        if name.is_empty() || !name.iter().copied().all(is_token_byte) || seen.contains(&name) {
            return None;
        }
        let after = &rest[equals + 1..];
        let (value, after) = match after.strip_prefix(b"\"") {
            Some(quoted) => unquote(quoted)?,
            None => {
                // Unquoted. RFC 7239 wants a port or an IPv6 address quoted; proxies
                // that leave them bare are read too: neither `:` nor `[` delimits.
                let end = after
                    .iter()
                    .position(|b| b";\t ".contains(b))
                    .unwrap_or(after.len());
                let value = &after[..end];
                let bare = |b: &u8| b.is_ascii_graphic() && !b"\"=,;".contains(b);
                if value.is_empty() || !value.iter().all(bare) {
                    return None;
                }
                (value.to_vec(), &after[end..])
            }
        };
        // After a pair: optional whitespace, then `;` or the end.
        rest = trim_start(after, b" \t");
        if !rest.is_empty() && rest[0] != b';' {
            return None;
        }
        if name == b"for" {
            node = Some(String::from_utf8(value).ok()?);
        }
        seen.push(name);
    }
}

/// `text` without the bytes of `set` it starts with.
fn trim_start<'a>(text: &'a [u8], set: &[u8]) -> &'a [u8] {
    let n = text.iter().take_while(|b| set.contains(b)).count();
    &text[n..]
}

/// A quoted string's value and the bytes after its closing quote, from the bytes after
/// its opening quote.
fn unquote(text: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut value = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => return Some((value, &text[i + 1..])),
            b'\\' => {
                value.push(*text.get(i + 1)?);
                i += 2;
            }
            b => {
                value.push(b);
                i += 1;
            }
        }
    }
    None
}

/// RFC 9110's `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:4711`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let address = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })?;
    Some(address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn behind(trusted: &[&str], header: ForwardedHeader) -> ClientAddresses {
        ClientAddresses::new(trusted.iter().map(|t| t.parse().unwrap()).collect(), header)
    }

    #[test]
    fn the_peer_without_trusted_proxies() {
        let xff = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            ClientAddresses::default().resolve(ip("192.0.2.9"), &xff),
            ip("192.0.2.9")
        );
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // An untrusted peer's header is ignored.
        assert_eq!(proxies.resolve(ip("192.0.2.9"), &xff), ip("192.0.2.9"));
        assert_eq!(
            proxies.resolve(ip("::ffff:192.0.2.9"), &xff),
            ip("192.0.2.9")
        );
    }

    #[test]
    fn the_rightmost_untrusted_entry_behind_trusted_proxies() {
        let proxies = behind(
            &["10.0.0.0/8", "2001:db8:ffff::/48"],
            ForwardedHeader::XForwardedFor,
        );
        let peer = ip("10.0.0.1");
        // The client forged the first entry; the proxy appended the real one.
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.2.3.4")]);
        assert_eq!(proxies.resolve(peer, &xff), ip("198.51.100.7"));
        // Several header lines are one list, in order.
        let lines = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.8:5555"),
        ]);
        assert_eq!(proxies.resolve(peer, &lines), ip("198.51.100.8"));
        // Garbage stops at the trusted hop that reported it.
        let junk = headers(&[("x-forwarded-for", "1.1.1.1, unknown, 10.9.9.9")]);
        assert_eq!(proxies.resolve(peer, &junk), ip("10.9.9.9"));
        // No header: the proxy itself.
        assert_eq!(proxies.resolve(peer, &HeaderMap::new()), peer);
        // Only trusted entries: the leftmost.
        let all = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(proxies.resolve(peer, &all), ip("10.1.1.1"));
        // The other header is ignored.
        let other = headers(&[("forwarded", "for=1.2.3.4")]);
        assert_eq!(proxies.resolve(peer, &other), peer);
    }

    #[test]
    fn rfc_7239_forwarded() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let value =
            r#"for=6.6.6.6, For="[2001:db8::17]:4711";proto=https, for=10.0.0.5;by=10.0.0.1"#;
        let forwarded = headers(&[("forwarded", value)]);
        assert_eq!(
            proxies.resolve(ip("10.0.0.1"), &forwarded),
            ip("2001:db8::17")
        );
        let obfuscated = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(proxies.resolve(ip("10.0.0.1"), &obfuscated), ip("10.0.0.5"));
    }

    /// Commas and semicolons inside quoted strings are the value's: a client's `Host`,
    /// quoted into the proxy's element, cannot open an element or a `for=` of its own.
    #[test]
    fn rfc_7239_quoted_strings_belong_to_their_value() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let client = |value: &str| {
            let forwarded = headers(&[("forwarded", value)]);
            proxies.resolve(ip("10.0.0.1"), &forwarded)
        };
        assert_eq!(
            client(r#"proto=https;host="a,for=6.6.6.6";for=198.51.100.7"#),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(r#"for=198.51.100.7;host="x;for=6.6.6.6""#),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(r#"for="[2001:db8::1]:80";host="a\"b,for=6.6.6.6""#),
            ip("2001:db8::1")
        );
        // Empty pairs and bare ports are read; a port needs no quotes to be understood.
        assert_eq!(
            client("for=198.51.100.9:8080;;proto=http;"),
            ip("198.51.100.9")
        );
        assert_eq!(client("for=198.51.100.9 ; proto=http"), ip("198.51.100.9"));
        // A parameter named twice, an unterminated quote, or pairs without `;` between
        // them are garbage: the walk stops at the trusted hop that reported them.
        for garbage in [
            "for=6.6.6.6;For=198.51.100.7, for=10.0.0.5",
            "for=6.6.6.6 proto=http, for=10.0.0.5",
            "host=a=b;for=6.6.6.6, for=10.0.0.5",
        ] {
            assert_eq!(client(garbage), ip("10.0.0.5"), "{garbage}");
        }
        // A client's unbalanced quote makes its own element garbage, never the one a
        // proxy appended to its line; nor does a byte outside ASCII in another value.
        assert_eq!(client(r#"for="6.6.6.6"#), ip("10.0.0.1"));
        assert_eq!(client(r#"for="6.6.6.6, for=10.0.0.5"#), ip("10.0.0.5"));
        assert_eq!(client(r#"for="x, for=198.51.100.7"#), ip("198.51.100.7"));
        assert_eq!(client(r#"for=\", for=198.51.100.7"#), ip("198.51.100.7"));
        let mut raw = HeaderMap::new();
        raw.append(
            "forwarded",
            HeaderValue::from_bytes(b"for=198.51.100.8;host=\"caf\xe9\"").unwrap(),
        );
        assert_eq!(proxies.resolve(ip("10.0.0.1"), &raw), ip("198.51.100.8"));
    }
}
