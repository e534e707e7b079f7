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
        let name = match header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let entries = headers
            .get_all(name)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','));
        for entry in entries.take(MAX_HOPS) {
            let text = std::str::from_utf8(entry).unwrap_or("");
            let address = match header {
                ForwardedHeader::XForwardedFor => parse_node(text),
                ForwardedHeader::Forwarded => forwarded_for(text).and_then(parse_node),
            };
            match address {
                Some(address) if self.is_trusted_proxy(address) => current = address,
                Some(address) => return address,
                None => return current,
            }
        }
        current
    }
}

/// The `for=` parameter of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
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
}
