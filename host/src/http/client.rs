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
                    .rev()
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
/// strings.
fn forwarded_elements(line: &[u8]) -> Vec<&[u8]> {
    let mut elements = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, &b) in line.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                elements.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push(&line[start..]);
    elements
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`),
/// unquoted; `None` when the element has none, names a parameter twice, or does not
/// parse.
fn forwarded_for(element: &[u8]) -> Option<String> {
    let mut rest = std::str::from_utf8(element).ok()?;
    let mut seen: Vec<String> = Vec::new();
    let mut node = None;
    loop {
        // Empty pairs (`;;`) and whitespace around them are allowed.
        rest = rest.trim_start_matches([';', ' ', '\t']);
        if rest.is_empty() {
            return node;
        }
        let (name, after) = rest.split_once('=')?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return None;
        }
        let name = name.to_ascii_lowercase();
        if seen.contains(&name) {
            return None;
        }
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                // Unquoted. RFC 7239 wants a port or an IPv6 address quoted; proxies
                // that leave them bare are read too: neither `:` nor `[` delimits.
                let end = after.find([';', ' ', '\t']).unwrap_or(after.len());
                let value = &after[..end];
                let bare = |b: u8| b.is_ascii_graphic() && !b"\"=,;".contains(&b);
                if value.is_empty() || !value.bytes().all(bare) {
                    return None;
                }
                (value.to_owned(), &after[end..])
            }
        };
        // After a pair: optional whitespace, then `;` or the end.
        rest = after.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(';') {
            return None;
        }
        if name == "for" {
            node = Some(value);
        }
        seen.push(name);
    }
}

/// A quoted string's value and the text after its closing quote, from the text after
/// its opening quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => value.push(chars.next()?.1),
            c => value.push(c),
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
        // An unterminated quote swallows the rest of its line: one element, garbage.
        for garbage in [r#"for="6.6.6.6"#, r#"for="6.6.6.6, for=10.0.0.5"#] {
            assert_eq!(client(garbage), ip("10.0.0.1"), "{garbage}");
        }
    }
}
