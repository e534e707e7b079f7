//! The outbound allow-list of a plugin manifest, and the classifier of special-purpose
//! IP addresses. Pure functions: no DNS, no sockets (see [`super::outbound`] for those).
//!
//! A rule is `SCHEME://HOST[:PORT]`:
//! - `SCHEME` is `http` or `https`;
//! - `HOST` is a DNS name (`hooks.example.com`), a wildcard for any subdomain
//!   (`*.example.com`: `a.example.com` and `a.b.example.com`, not `example.com`), `*` for
//!   any host, an IPv4 address or a bracketed IPv6 address (`[2001:db8::1]`);
//! - `PORT` is a number, `*` for any port, or absent for the scheme's default (80, 443).
//!
//! An entry is the rule as a string, or a table `{ url = "RULE", private = true }` that
//! opts that one rule into special-purpose addresses.
//!
//! A request is allowed when some rule matches its scheme, host and port. Independently
//! of that, a destination whose address is loopback, private, link-local or otherwise
//! special (see [`is_special`]) is refused unless the matching rule is an IP literal
//! (`http://127.0.0.1:*`, `http://[::1]:8080`: the destination *is* that address, no DNS
//! involved) or opts in with `private = true` (only on an exact host name). A plain host
//! name never does, whatever its DNS says today — so a DNS change of an allowed name
//! cannot lead a plugin to `169.254.169.254`, `10.0.0.1` or loopback — and a wildcard
//! never does either.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn parse(text: &str) -> Option<Scheme> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host of a request: a normalized DNS name or an IP literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// Lower case, without a trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses the host part of a URL authority: `example.com`, `1.2.3.4`, `[::1]`.
    pub fn parse(text: &str) -> Option<Host> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return inner.parse::<Ipv6Addr>().ok().map(|ip| Host::Ip(ip.into()));
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Some(Host::Ip(ip.into()));
        }
        let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        is_dns_name(&name).then_some(Host::Name(name))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1 to 63 bytes; at most 253 bytes.
/// Underscores are accepted too: they occur in real service names.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Where a request goes, as the allow-list sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    Exact(Host),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum PortPattern {
    Any,
    Exact(u16),
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    scheme: Scheme,
    host: HostPattern,
    port: PortPattern,
    /// `private = true`: the host may resolve to special-purpose addresses.
    private: bool,
    text: String,
}

/// An entry as written in a manifest: `"RULE"` or `{ url = "RULE", private = true }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowEntry {
    pub url: String,
    pub private: bool,
}

impl<'de> serde::Deserialize<'de> for AllowEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = AllowEntry;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    r#"a string "scheme://host[:port]" or a table { url = "...", private = true }"#,
                )
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<AllowEntry, E> {
                Ok(AllowEntry {
                    url: url.to_string(),
                    private: false,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AllowEntry, A::Error> {
                use serde::de::Error;
                let (mut url, mut private) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "url" if url.is_none() => url = Some(map.next_value::<String>()?),
                        "private" if private.is_none() => private = Some(map.next_value::<bool>()?),
                        "url" | "private" => {
                            return Err(A::Error::duplicate_field("allow entry key"))
                        }
                        other => return Err(A::Error::unknown_field(other, &["url", "private"])),
                    }
                }
                Ok(AllowEntry {
                    url: url.ok_or_else(|| A::Error::missing_field("url"))?,
                    private: private.unwrap_or(false),
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

/// Why an allow-list entry does not parse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("allow-list entry {entry:?}: {reason}")]
pub struct RuleError {
    pub entry: String,
    pub reason: &'static str,
}

impl AllowRule {
    /// A manifest entry: the rule, opted into special-purpose addresses if it says so.
    pub fn from_entry(entry: &AllowEntry) -> Result<AllowRule, RuleError> {
        let mut rule = AllowRule::parse(&entry.url)?;
        if entry.private {
            if !matches!(rule.host, HostPattern::Exact(_)) {
                return Err(RuleError {
                    entry: entry.url.clone(),
                    reason: "private = true needs one exact host, not a wildcard",
                });
            }
            rule.private = true;
        }
        Ok(rule)
    }

    pub fn parse(text: &str) -> Result<AllowRule, RuleError> {
        let fail = |reason| RuleError {
            entry: text.to_string(),
            reason,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            fail("write it as scheme://host[:port], e.g. https://api.example.com")
        })?;
        let scheme =
            Scheme::parse(scheme).ok_or_else(|| fail("the scheme must be http or https"))?;
        // A trailing slash is harmless; any other path, a query or credentials are not
        // something an allow-list can express.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(fail(
                "paths and queries cannot be allow-listed: name scheme, host and port only",
            ));
        }
        if rest.contains('@') {
            return Err(fail("credentials do not belong in an allow-list"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| fail("malformed host or port"))?;
        let port = match port {
            None => PortPattern::Exact(scheme.default_port()),
            Some("*") => PortPattern::Any,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => PortPattern::Exact(n),
                _ => return Err(fail("the port must be 1..65535 or *")),
            },
        };
        let host =
            if host == "*" {
                HostPattern::Any
            } else if let Some(suffix) = host.strip_prefix("*.") {
                match Host::parse(suffix) {
                    Some(Host::Name(name)) if name.contains('.') => HostPattern::Subdomains(name),
                    _ => return Err(fail(
                        "a wildcard host is * or *.domain.tld (a domain of at least two labels)",
                    )),
                }
            } else if host.contains('*') {
                return Err(fail(
                    "* may only stand alone or as the first label (*.example.com)",
                ));
            } else {
                HostPattern::Exact(
                    Host::parse(host).ok_or_else(|| fail("not a host name or IP address"))?,
                )
            };
        Ok(AllowRule {
            scheme,
            host,
            port,
            private: false,
            text: text.to_string(),
        })
    }

    /// The rule as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this rule opts into special-purpose addresses with `private = true`.
    pub fn is_private(&self) -> bool {
        self.private
    }

    pub fn matches(&self, dest: &Destination) -> bool {
        self.scheme == dest.scheme
            && match &self.port {
                PortPattern::Any => true,
                PortPattern::Exact(p) => *p == dest.port,
            }
            && match (&self.host, &dest.host) {
                (HostPattern::Any, _) => true,
                (HostPattern::Subdomains(suffix), Host::Name(name)) => name
                    .strip_suffix(suffix.as_str())
                    .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
                (HostPattern::Subdomains(_), Host::Ip(_)) => false,
                (HostPattern::Exact(host), dest) => host == dest,
            }
    }

    /// Whether a destination matched by this rule may be a special-purpose address: the
    /// rule is an IP literal (the destination is that very address) or opts in.
    fn reaches_special(&self) -> bool {
        self.private || matches!(&self.host, HostPattern::Exact(Host::Ip(_)))
    }
}

/// `host` and the optional text after the port colon; handles `[v6]:port`.
fn split_host_port(text: &str) -> Option<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let close = text.find(']')?;
        let (host, rest) = text.split_at(close + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?))),
        };
    }
    match text.split_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(':') => Some((host, Some(port))),
        Some(_) => None,
        None if !text.is_empty() => Some((text, None)),
        None => None,
    }
}

/// What the allow-list says about a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matches.
    Denied,
    /// Allowed; to special-purpose addresses only if `special` (an IP-literal rule or
    /// one with `private = true` matches).
    Allowed { special: bool },
}

/// A plugin's allow-list. Empty means no outbound request is allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    rules: Vec<AllowRule>,
}

impl AllowList {
    pub fn new(rules: Vec<AllowRule>) -> AllowList {
        AllowList { rules }
    }

    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, RuleError> {
        entries
            .iter()
            .map(|e| AllowRule::parse(e.as_ref()))
            .collect::<Result<_, _>>()
            .map(AllowList::new)
    }

    pub fn from_entries(entries: &[AllowEntry]) -> Result<AllowList, RuleError> {
        entries
            .iter()
            .map(AllowRule::from_entry)
            .collect::<Result<_, _>>()
            .map(AllowList::new)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[AllowRule] {
        &self.rules
    }

    pub fn check(&self, dest: &Destination) -> Verdict {
        let mut verdict = Verdict::Denied;
        for rule in self.rules.iter().filter(|r| r.matches(dest)) {
            if rule.reaches_special() {
                return Verdict::Allowed { special: true };
            }
            verdict = Verdict::Allowed { special: false };
        }
        verdict
    }
}

/// Whether an address is anything but an ordinary public unicast address: loopback,
/// private, link-local, unspecified, multicast, broadcast, CGNAT (100.64/10), reserved or
/// documentation ranges, IPv6 unique-local (fc00::/7) and link-local (fe80::/10), and
/// every IPv6 form that embeds an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo),
/// since those can lead back to a private IPv4 address.
pub fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0 // "this network", including 0.0.0.0
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
        || (a == 169 && b == 254) // link-local
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 192 && b == 168) // private
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224 // multicast 224/4, reserved 240/4, broadcast
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || (s[0] & 0xff00) == 0xff00 // multicast
        || (s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0)) // IPv4-mapped, IPv4-compatible
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 and 64:ff9b:1::/48
        || (s[0] == 0x0100 && s[1..4] == [0; 3]) // discard-only 100::/64
        || (s[0] == 0x2001 && s[1] < 0x0200) // IETF protocol assignments, Teredo 2001::/32
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0] == 0x2002 // 6to4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(scheme: Scheme, host: &str, port: u16) -> Destination {
        Destination {
            scheme,
            host: Host::parse(host).unwrap(),
            port,
        }
    }

    fn list(entries: &[&str]) -> AllowList {
        AllowList::parse(entries).unwrap()
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let l = list(&["https://hooks.example.com", "http://127.0.0.1:8080"]);
        assert_eq!(
            l.check(&dest(Scheme::Https, "hooks.example.com", 443)),
            Verdict::Allowed { special: false }
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "HOOKS.Example.com.", 443)),
            Verdict::Allowed { special: false },
            "names are compared case-insensitively, without the root dot"
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "hooks.example.com", 8443)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "hooks.example.com", 443)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "evil.example.com", 443)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "127.0.0.1", 8080)),
            Verdict::Allowed { special: true },
            "an IP literal reaches that address"
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "127.0.0.1", 8081)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "127.0.0.2", 8080)),
            Verdict::Denied
        );
    }

    #[test]
    fn wildcards_never_reach_special_addresses() {
        let l = list(&["https://*.example.com:443", "http://*:*"]);
        assert_eq!(
            l.check(&dest(Scheme::Https, "a.example.com", 443)),
            Verdict::Allowed { special: false }
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "a.b.example.com", 443)),
            Verdict::Allowed { special: false }
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "example.com", 443)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "badexample.com", 443)),
            Verdict::Denied
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "127.0.0.1", 9999)),
            Verdict::Allowed { special: false },
            "matched, but only by a wildcard: special addresses stay refused"
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "[::1]", 80)),
            Verdict::Allowed { special: false }
        );
    }

    fn entry(url: &str, private: bool) -> AllowEntry {
        AllowEntry {
            url: url.to_string(),
            private,
        }
    }

    #[test]
    fn a_host_name_reaches_special_addresses_only_when_it_opts_in() {
        // Whatever localhost (or any name) resolves to, naming it is not enough.
        let l = list(&["http://localhost:*", "https://hooks.example.com"]);
        assert_eq!(
            l.check(&dest(Scheme::Http, "localhost", 1234)),
            Verdict::Allowed { special: false }
        );
        let l = AllowList::from_entries(&[
            entry("http://*:*", false),
            entry("http://localhost:*", true),
        ])
        .unwrap();
        assert!(l.rules()[1].is_private() && !l.rules()[0].is_private());
        assert_eq!(
            l.check(&dest(Scheme::Http, "localhost", 1234)),
            Verdict::Allowed { special: true },
            "the opted-in rule wins over the wildcard"
        );
        assert_eq!(
            l.check(&dest(Scheme::Http, "otherhost", 1234)),
            Verdict::Allowed { special: false }
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "localhost", 443)),
            Verdict::Denied,
            "the opt-in covers only what its rule matches"
        );
    }

    #[test]
    fn private_needs_an_exact_host() {
        for url in ["http://*:*", "https://*.example.com"] {
            let e = AllowRule::from_entry(&entry(url, true)).unwrap_err();
            assert!(e.to_string().contains("exact host"), "{e}");
        }
        assert!(AllowRule::from_entry(&entry("http://10.0.0.1:8080", true)).is_ok());
    }

    #[test]
    fn entries_deserialize_from_strings_and_tables() {
        #[derive(serde::Deserialize)]
        struct M {
            allow: Vec<AllowEntry>,
        }
        let m: M = toml::from_str(
            r#"allow = ["https://a.example.com", { url = "http://localhost:8080", private = true }, { url = "http://b" }]"#,
        )
        .unwrap();
        assert_eq!(
            m.allow,
            [
                entry("https://a.example.com", false),
                entry("http://localhost:8080", true),
                entry("http://b", false)
            ]
        );
        for bad in [
            r#"allow = [{ url = "http://a", privat = true }]"#,
            r#"allow = [{ private = true }]"#,
            r#"allow = [{ url = "http://a", private = "yes" }]"#,
            r#"allow = [3]"#,
        ] {
            assert!(toml::from_str::<M>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_rules() {
        let l = list(&["http://[::1]:*", "https://[2001:db8::1]:8443/"]);
        assert_eq!(
            l.check(&dest(Scheme::Http, "[::1]", 3000)),
            Verdict::Allowed { special: true }
        );
        assert_eq!(
            l.check(&dest(Scheme::Https, "[2001:db8:0::1]", 8443)),
            Verdict::Allowed { special: true }
        );
    }

    #[test]
    fn an_empty_list_denies_everything() {
        let l = AllowList::default();
        assert!(l.is_empty());
        assert_eq!(
            l.check(&dest(Scheme::Https, "example.com", 443)),
            Verdict::Denied
        );
    }

    #[test]
    fn bad_rules_are_explained() {
        for (entry, needle) in [
            ("example.com", "scheme://host"),
            ("ftp://example.com", "http or https"),
            ("https://example.com/path", "paths"),
            ("https://example.com?q", "paths"),
            ("https://user:pw@example.com", "credentials"),
            ("https://example.com:0", "port"),
            ("https://example.com:70000", "port"),
            ("https://example.com:x", "port"),
            ("https://*.com", "wildcard"),
            ("https://a.*.com", "first label"),
            ("https://ex ample.com", "not a host"),
            ("https://[::1", "malformed"),
            ("https://:80", "malformed"),
            ("https://", "malformed"),
        ] {
            let error = AllowRule::parse(entry).unwrap_err();
            assert!(error.to_string().contains(needle), "{entry}: {error}");
            assert!(
                error.to_string().contains(entry),
                "names the entry: {error}"
            );
        }
    }

    #[test]
    fn special_ipv4() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "127.0.0.1",
            "127.255.0.9",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.1.1.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(is_special(ip.parse().unwrap()), "{ip} is special");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.0.1",
            "172.32.0.1",
            "93.184.216.34",
        ] {
            assert!(!is_special(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn special_ipv6() {
        for ip in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "2001::1",
            "2002:a00:1::1",
            "100::1",
        ] {
            assert!(is_special(ip.parse().unwrap()), "{ip} is special");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
        ] {
            assert!(!is_special(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn hosts_parse_and_print() {
        assert_eq!(Host::parse("[::1]"), Some(Host::Ip("::1".parse().unwrap())));
        assert_eq!(
            Host::parse("Example.COM."),
            Some(Host::Name("example.com".into()))
        );
        assert_eq!(Host::parse("bad host"), None);
        assert_eq!(Host::parse(""), None);
        assert_eq!(Host::parse("-a.com"), None);
        assert_eq!(
            dest(Scheme::Http, "[::1]", 80).to_string(),
            "http://[::1]:80"
        );
        assert_eq!(
            dest(Scheme::Https, "a.b", 443).to_string(),
            "https://a.b:443"
        );
    }
}
