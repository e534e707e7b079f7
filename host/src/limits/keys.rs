//! Limiter keys: what a budget is counted under, without holding what it is about.
//!
//! A credential id or a client address never appears in a limiter store. Each key is
//! HMAC-SHA256 under a server secret over a label (the kind of key) and the value,
//! truncated to 128 bits: equal inputs meet in one budget, and a dump of the store
//! (Redis) reveals neither the credential nor the address, not even by trying
//! candidates, without the secret. The secret is random per process in memory mode and
//! derived from the master key in Redis mode, so every instance computes the same keys.
//!
//! Client addresses are keyed by network: an IPv4 address as itself (/32), an IPv6
//! address by its /64 (one subscriber usually gets a whole /64, so counting single
//! IPv6 addresses would be no limit at all). IPv4-mapped IPv6 addresses count as IPv4.

use std::fmt;
use std::net::IpAddr;
use zeroize::Zeroizing;

/// 128 bits naming one budget (or one fraud-guard group) in a limiter store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimiterKey(pub [u8; 16]);

impl LimiterKey {
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for LimiterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LimiterKey({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// The client's network: the bytes that are counted together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    V4([u8; 4]),
    V6Prefix([u8; 8]),
}

impl Network {
    pub fn of(address: IpAddr) -> Network {
        match address {
            IpAddr::V4(v4) => Network::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Network::V4(v4.octets()),
                None => {
                    let mut prefix = [0u8; 8];
                    prefix.copy_from_slice(&v6.octets()[..8]);
                    Network::V6Prefix(prefix)
                }
            },
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Network::V4(b) => b,
            Network::V6Prefix(b) => b,
        }
    }
}

/// Computes limiter keys under one secret.
pub struct KeyHasher {
    secret: ring::hmac::Key,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    pub fn new(secret: Zeroizing<[u8; 32]>) -> KeyHasher {
        KeyHasher {
            secret: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_ref()),
        }
    }

    /// A secret of this process only (memory mode).
    pub fn random() -> KeyHasher {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::os_random::fill(&mut *secret);
        KeyHasher::new(secret)
    }

    fn key(&self, label: &[u8], parts: &[&[u8]]) -> LimiterKey {
        let mut message = Vec::with_capacity(64);
        message.extend_from_slice(label);
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            message.extend_from_slice(&(part.len() as u64).to_be_bytes());
            message.extend_from_slice(part);
        }
        let digest = ring::hmac::sign(&self.secret, &message);
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.as_ref()[..16]);
        LimiterKey(key)
    }

    pub fn credential(&self, credential_id: &str) -> LimiterKey {
        self.key(b"credential", &[credential_id.as_bytes()])
    }

    pub fn network(&self, network: Network) -> LimiterKey {
        self.key(b"network", &[network.bytes()])
    }

    pub fn credential_on_network(&self, credential_id: &str, network: Network) -> LimiterKey {
        self.key(
            b"credential-network",
            &[credential_id.as_bytes(), network.bytes()],
        )
    }

    pub fn group(&self, group: &str) -> LimiterKey {
        self.key(b"group", &[group.as_bytes()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(byte: u8) -> KeyHasher {
        KeyHasher::new(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn keys_depend_on_secret_kind_and_value() {
        let (a, b) = (hasher(1), hasher(2));
        assert_eq!(a.credential("bob"), a.credential("bob"));
        assert_ne!(a.credential("bob"), b.credential("bob"));
        assert_ne!(a.credential("bob"), a.credential("alice"));
        assert_ne!(a.credential("bob"), a.group("bob"));
        let net = Network::of("192.0.2.1".parse().unwrap());
        assert_ne!(
            a.credential_on_network("ab", net),
            a.credential_on_network("a", net)
        );
        // The key shows nothing of the value.
        let hex = a.credential("+441234567890").hex();
        assert_eq!(hex.len(), 32);
        assert!(!hex.contains("1234567890"));
        assert_eq!(format!("{:?}", a), "KeyHasher(..)");
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let net = |s: &str| Network::of(s.parse().unwrap());
        assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff::9"));
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
        assert_eq!(net("::ffff:192.0.2.7"), net("192.0.2.7"));
        assert_ne!(net("192.0.2.7"), net("192.0.2.8"));
    }
}
