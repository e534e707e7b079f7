//! The three forms of a Redis store URL, parsed once into a [`RedisTarget`].
//!
//! - `redis://HOST:PORT[/DB]` or `rediss://…` (TLS): one Redis (any URL redis-rs accepts);
//! - `redis+cluster://[USER:PASS@]H1:P1,H2:P2,…` or `rediss+cluster://…`: a Redis Cluster;
//!   the listed nodes are only seeds, the client learns the rest from `CLUSTER SLOTS`;
//! - `redis+sentinel://[USER:PASS@]S1:P1,S2:P2,…/MASTER[/DB]` or `rediss+sentinel://…`:
//!   the master named `MASTER` as the listed Sentinels report it. The user and password
//!   are those of the Redis nodes; TLS (`rediss+`) applies to Sentinels and nodes alike.
//!
//! Parse errors never repeat the password.

/// Where the store's Redis is and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis, as a URL redis-rs understands.
    Single(String),
    /// Seed nodes of a cluster, each as a `redis://` / `rediss://` URL with credentials.
    Cluster {
        nodes: Vec<String>,
    },
    Sentinel(SentinelTarget),
}

#[derive(Clone, PartialEq, Eq)]
pub struct SentinelTarget {
    pub sentinels: Vec<(String, u16)>,
    pub master: String,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: i64,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single(_) => f.write_str("Single"),
            RedisTarget::Cluster { nodes } => write!(f, "Cluster({} seeds)", nodes.len()),
            RedisTarget::Sentinel(s) => write!(
                f,
                "Sentinel(master {:?}, {} sentinels)",
                s.master,
                s.sentinels.len()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UrlError(String);

/// What the configuration error says the store URL may look like.
pub const URL_FORMS: &str = "use memory, redis://HOST:PORT, rediss://HOST:PORT, \
     redis+cluster://HOST:PORT,HOST:PORT,… (rediss+cluster:// for TLS) or \
     redis+sentinel://HOST:PORT,HOST:PORT,…/MASTER-NAME (rediss+sentinel:// for TLS)";

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget, UrlError> {
        let url = url.trim();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError(format!("not a URL: {URL_FORMS}")))?;
        match scheme {
            "redis" | "rediss" => {
                redis::parse_redis_url(url)
                    .ok_or_else(|| UrlError(format!("not a valid Redis URL: {URL_FORMS}")))?;
                Ok(RedisTarget::Single(url.to_string()))
            }
            "redis+cluster" | "rediss+cluster" => {
                let tls = scheme.starts_with("rediss");
                let (userinfo, hosts, path) = split_authority(rest)?;
                if !path.is_empty() {
                    return Err(UrlError(
                        "a cluster URL has no path (a cluster has only database 0)".into(),
                    ));
                }
                let nodes = hosts
                    .iter()
                    .map(|(host, port)| {
                        let auth = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                        let scheme = if tls { "rediss" } else { "redis" };
                        format!("{scheme}://{auth}{host}:{port}")
                    })
                    .collect();
                Ok(RedisTarget::Cluster { nodes })
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let (userinfo, sentinels, path) = split_authority(rest)?;
                let mut segments = path.split('/').filter(|s| !s.is_empty());
                let master = segments.next().ok_or_else(|| {
                    UrlError("a Sentinel URL names the master: …/MASTER-NAME".into())
                })?;
                let db = match segments.next() {
                    None => 0,
                    Some(db) => db
                        .parse()
                        .map_err(|_| UrlError(format!("database {db:?} is not a number")))?,
                };
                if segments.next().is_some() {
                    return Err(UrlError(
                        "a Sentinel URL's path is /MASTER-NAME or /MASTER-NAME/DB".into(),
                    ));
                }
                let (username, password) = match userinfo {
                    None => (None, None),
                    Some(info) => match info.split_once(':') {
                        Some((user, pass)) => {
                            ((!user.is_empty()).then(|| decode(user)), Some(decode(pass)))
                        }
                        None => (Some(decode(info)), None),
                    },
                };
                Ok(RedisTarget::Sentinel(SentinelTarget {
                    sentinels,
                    master: decode(master),
                    tls: scheme.starts_with("rediss"),
                    username,
                    password,
                    db,
                }))
            }
            _ => Err(UrlError(format!("unknown scheme {scheme:?}: {URL_FORMS}"))),
        }
    }
}

/// The parts of `[USERINFO@]H1:P1,H2:P2[/PATH]`: user info, hosts with ports, path.
type Authority<'a> = (Option<&'a str>, Vec<(String, u16)>, &'a str);

/// Splits `[USERINFO@]H1:P1,H2:P2[/PATH]` into its parts. As in any URL, the first `/`
/// ends the authority, so a password writes `/` as `%2F`; one that does not would leave
/// part of itself where the hosts are read, so an error about the hosts then names none
/// of them.
fn split_authority(rest: &str) -> Result<Authority<'_>, UrlError> {
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let hosts = parse_hosts(hosts).map_err(|error| match userinfo {
        None if path.contains('@') => UrlError(
            "no HOST:PORT list before the first `/`: write a `/` in a password as %2F".into(),
        ),
        _ => error,
    })?;
    Ok((userinfo, hosts, path))
}

/// `H1:P1,H2:P2`, each with its port.
fn parse_hosts(hosts: &str) -> Result<Vec<(String, u16)>, UrlError> {
    let mut parsed = Vec::new();
    for host in hosts.split(',').filter(|h| !h.trim().is_empty()) {
        let (name, port) = host
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| UrlError(format!("{host:?} needs a port (HOST:PORT)")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| UrlError(format!("{host:?}: the port is not a number")))?;
        let name = name.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            return Err(UrlError(format!("{host:?} has no host name")));
        }
        parsed.push((name.to_string(), port));
    }
    if parsed.is_empty() {
        return Err(UrlError("the URL lists no HOST:PORT".into()));
    }
    Ok(parsed)
}

/// Percent-decoding for user names, passwords and master names.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        if let [b'%', high, low, ..] = bytes[i..] {
            if let (Some(high), Some(low)) = (hex(high), hex(low)) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any password is read when written as a URL writes it (`/` as `%2F`), odd escapes
    /// and all; one that is not repeats no part of itself in the error.
    #[test]
    fn passwords_with_slashes_and_odd_escapes() {
        let RedisTarget::Sentinel(target) =
            RedisTarget::parse("redis+sentinel://app:pa%2Fs@s%aé%+1@a:26379,b:26380/mymaster@dc1")
                .unwrap()
        else {
            panic!("a Sentinel target");
        };
        assert_eq!(target.password.as_deref(), Some("pa/s@s%aé%+1"));
        assert_eq!(target.master, "mymaster@dc1");
        assert_eq!(target.sentinels.len(), 2);
        let RedisTarget::Cluster { nodes } =
            RedisTarget::parse("redis+cluster://app:pa%2Fs@a:7000,b:7001").unwrap()
        else {
            panic!("a Cluster target");
        };
        assert_eq!(nodes[0], "redis://app:pa%2Fs@a:7000");
        for url in [
            "redis+cluster://app:zq/secret@a:7000",
            "redis+sentinel://app:zq/secret@a:1/m",
            "redis+sentinel://app:zq:x/secret@a:1/m",
        ] {
            let error = RedisTarget::parse(url).unwrap_err().0;
            assert!(
                !error.contains("secret") && !error.contains("zq"),
                "{error}"
            );
        }
        assert_eq!(decode("%41%4a%e"), "AJ%e");
    }

    #[test]
    fn single_urls_pass_through() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTarget::Single("redis://127.0.0.1:6379/2".into())
        );
        assert!(matches!(
            RedisTarget::parse("rediss://cache.example:6380").unwrap(),
            RedisTarget::Single(_)
        ));
    }

    #[test]
    fn cluster_urls_become_seed_nodes() {
        let RedisTarget::Cluster { nodes } =
            RedisTarget::parse("rediss+cluster://app:s%40cret@a:7000,b:7001,[::1]:7002").unwrap()
        else {
            panic!("a cluster")
        };
        assert_eq!(
            nodes,
            [
                "rediss://app:s%40cret@a:7000",
                "rediss://app:s%40cret@b:7001",
                "rediss://app:s%40cret@::1:7002"
            ]
        );
        assert!(RedisTarget::parse("redis+cluster://a:7000/1").is_err());
        assert!(RedisTarget::parse("redis+cluster://a").is_err());
        assert!(RedisTarget::parse("redis+cluster://").is_err());
    }

    #[test]
    fn sentinel_urls_name_the_master() {
        let RedisTarget::Sentinel(target) =
            RedisTarget::parse("redis+sentinel://:p%3Ass@s1:26379,s2:26380/mymaster/3").unwrap()
        else {
            panic!("a sentinel")
        };
        assert_eq!(
            target.sentinels,
            [("s1".to_string(), 26379), ("s2".to_string(), 26380)]
        );
        assert_eq!(target.master, "mymaster");
        assert_eq!(target.db, 3);
        assert_eq!(target.username, None);
        assert_eq!(target.password.as_deref(), Some("p:ss"));
        assert!(!target.tls);
        assert!(RedisTarget::parse("redis+sentinel://s1:26379").is_err());
        assert!(RedisTarget::parse("redis+sentinel://s1:26379/m/x").is_err());
    }

    #[test]
    fn errors_never_repeat_the_password() {
        for url in [
            "redis+cluster://u:hunter2@a",
            "redis+sentinel://u:hunter2@s1:x/m",
            "memcached://u:hunter2@a:1",
        ] {
            let error = RedisTarget::parse(url).unwrap_err().to_string();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
