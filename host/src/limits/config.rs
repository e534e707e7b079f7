//! The `[limits]` table: every abuse-control setting, declared once (key, environment
//! variable, default, parser, doc) with the configuration's [`settings!`] macro, and
//! checked into a [`LimitsConfig`] by [`LimitsTable::validate`].
//!
//! Each setting is read from the TOML table and then from `OTP_LIMITS_<KEY>` in the
//! environment (lists there are comma-separated). An unknown key in `[limits]`, or a value
//! that does not parse, stops start-up with an error naming the key (and the variable), so
//! a typo never silently leaves a budget at its default.
//!
//! Budgets are written `LIMIT/PERIOD` (`5/10m`, `20/1d`), optionally with a smaller burst
//! (`30/1h burst 10`), or `off`. Periods take `s`, `m`, `h` or `d`.

use super::fraud::{FraudMode, FraudThresholds};
use super::gcra::Rate;
use crate::config::table::{flag, parsed, settings};
use crate::config::ConfigError;
use ipnet::{IpNet, Ipv4Net};
use std::net::IpAddr;

settings! {
    /// `[limits]`: abuse controls — send and guess budgets, the fraud guard, the client
    /// address behind proxies.
    pub struct LimitsTable (LimitsSetting) {
        /// `false` switches every budget and the fraud guard off
        enabled: bool { default: true, env: "OTP_LIMITS_ENABLED", parse: flag },
        /// codes sent to one credential (create and resend)
        sends_per_credential: String {
            default: "5/10m".into(),
            env: "OTP_LIMITS_SENDS_PER_CREDENTIAL",
            parse: parsed,
        },
        /// codes sent to one credential per day
        sends_per_credential_daily: String {
            default: "20/1d".into(),
            env: "OTP_LIMITS_SENDS_PER_CREDENTIAL_DAILY",
            parse: parsed,
        },
        /// codes requested from one client network (IPv4 /32, IPv6 /64)
        sends_per_network: String {
            default: "30/1h burst 10".into(),
            env: "OTP_LIMITS_SENDS_PER_NETWORK",
            parse: parsed,
        },
        /// requests of one client network to the three OTP endpoints
        requests_per_network: String {
            default: "120/1m".into(),
            env: "OTP_LIMITS_REQUESTS_PER_NETWORK",
            parse: parsed,
        },
        /// failed verifications from one client network
        failed_verifies_per_network: String {
            default: "60/1h".into(),
            env: "OTP_LIMITS_FAILED_VERIFIES_PER_NETWORK",
            parse: parsed,
        },
        /// failed verifications of one credential from one client network
        failed_verifies_per_credential_network: String {
            default: "10/15m".into(),
            env: "OTP_LIMITS_FAILED_VERIFIES_PER_CREDENTIAL_NETWORK",
            parse: parsed,
        },
        /// codes sent by all instances together: a circuit breaker
        global_sends: String { default: "off".into(), env: "OTP_LIMITS_GLOBAL_SENDS", parse: parsed },
        /// `record` (log, count), `deny` (429 for a tripped group) or `off`
        fraud_guard: String { default: "record".into(), env: "OTP_LIMITS_FRAUD_GUARD", parse: parsed },
        /// unverified sends per group per hour that never trip the guard
        fraud_hourly_floor: u64 { default: 3, env: "OTP_LIMITS_FRAUD_HOURLY_FLOOR", parse: parsed },
        /// unverified sends per group per day that never trip the guard
        fraud_daily_floor: u64 { default: 20, env: "OTP_LIMITS_FRAUD_DAILY_FLOOR", parse: parsed },
        /// daily threshold = max(floor, ratio × verified sends of the last day)
        fraud_verified_ratio: f64 {
            default: 0.2,
            env: "OTP_LIMITS_FRAUD_VERIFIED_RATIO",
            parse: parsed,
        },
        /// destination groups refused with 403 (`sms:+44`; a trailing `*` matches a prefix)
        deny_groups: Vec<String> { default: Vec::new(), env: "OTP_LIMITS_DENY_GROUPS", parse: list },
        /// when not empty, the only destination groups served
        allow_groups: Vec<String> { default: Vec::new(), env: "OTP_LIMITS_ALLOW_GROUPS", parse: list },
        /// credential ids exempt from every budget (test numbers)
        safe_credentials: Vec<String> {
            default: Vec::new(),
            env: "OTP_LIMITS_SAFE_CREDENTIALS",
            parse: list,
        },
        /// client networks exempt from every budget (an office), as CIDRs or addresses
        safe_networks: Vec<String> { default: Vec::new(), env: "OTP_LIMITS_SAFE_NETWORKS", parse: list },
        /// proxies (CIDRs or addresses) whose forwarding header names the client
        trusted_proxies: Vec<String> {
            default: Vec::new(),
            env: "OTP_LIMITS_TRUSTED_PROXIES",
            parse: list,
        },
        /// the header those proxies write: `x-forwarded-for` or `forwarded`
        client_address_header: String {
            default: "x-forwarded-for".into(),
            env: "OTP_LIMITS_CLIENT_ADDRESS_HEADER",
            parse: parsed,
        },
        /// limiter store down: `true` serves without limits, `false` answers 503
        fail_open: bool { default: false, env: "OTP_LIMITS_FAIL_OPEN", parse: flag },
        /// most entries of the in-memory limiter store
        memory_max_keys: usize {
            default: 1_000_000,
            env: "OTP_LIMITS_MEMORY_MAX_KEYS",
            parse: parsed,
        },
    }
}

/// A comma-separated list; blanks around items and empty items are dropped.
fn list(text: &str) -> Result<Vec<String>, String> {
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect())
}

/// Which header a trusted proxy writes the client's address into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

/// The validated `[limits]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitsConfig {
    pub enabled: bool,
    pub sends_per_credential: Option<Rate>,
    pub sends_per_credential_daily: Option<Rate>,
    pub sends_per_network: Option<Rate>,
    pub requests_per_network: Option<Rate>,
    pub failed_verifies_per_network: Option<Rate>,
    pub failed_verifies_per_credential_network: Option<Rate>,
    pub global_sends: Option<Rate>,
    pub fraud_guard: Option<FraudMode>,
    pub fraud: FraudThresholds,
    pub deny_groups: Vec<String>,
    pub allow_groups: Vec<String>,
    pub safe_credentials: Vec<String>,
    pub safe_networks: Vec<IpNet>,
    pub trusted_proxies: Vec<IpNet>,
    pub client_address_header: ForwardedHeader,
    pub fail_open: bool,
    pub memory_max_keys: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsTable::default()
            .validate()
            .expect("the declared defaults are valid")
    }
}

fn invalid(setting: LimitsSetting, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: format!("limits.{}", setting.label()),
        message: message.into(),
    }
}

impl LimitsTable {
    /// Checks every value and converts it to what the limits run with.
    pub fn validate(&self) -> Result<LimitsConfig, ConfigError> {
        use LimitsSetting as S;
        let budget = |setting: S, text: &str| {
            parse_budget(text).map_err(|m| {
                invalid(
                    setting,
                    format!("{m} (write LIMIT/PERIOD like 5/10m, optionally `burst N`, or off)"),
                )
            })
        };
        let networks = |setting: S, items: &[String]| {
            items
                .iter()
                .map(|item| {
                    item.parse::<IpNet>()
                        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                        .map(|net| as_compared(net.trunc()))
                        .map_err(|_| {
                            invalid(
                                setting,
                                format!("{item:?} is not an address or CIDR network"),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let groups = |setting: S, items: &[String]| match items
            .iter()
            .find(|g| g.trim_end_matches('*').contains('*'))
        {
            Some(bad) => Err(invalid(
                setting,
                format!("{bad:?}: `*` may only end a group pattern"),
            )),
            None => Ok(items.to_vec()),
        };
        let fraud_guard = match self.fraud_guard.as_str() {
            "record" => Some(FraudMode::Record),
            "deny" => Some(FraudMode::Deny),
            "off" => None,
            other => {
                return Err(invalid(
                    S::fraud_guard,
                    format!("{other:?}: use record, deny or off"),
                ))
            }
        };
        // A floor of 0 would trip the guard on a group's first send, and in `deny` mode
        // no code would ever reach it to be verified: the group would stay shut.
        for (setting, floor) in [
            (S::fraud_hourly_floor, self.fraud_hourly_floor),
            (S::fraud_daily_floor, self.fraud_daily_floor),
        ] {
            if floor == 0 {
                return Err(invalid(setting, "0: must be at least 1"));
            }
        }
        if !(0.0..=1000.0).contains(&self.fraud_verified_ratio) {
            return Err(invalid(
                S::fraud_verified_ratio,
                format!("{}: must be between 0 and 1000", self.fraud_verified_ratio),
            ));
        }
        let client_address_header = match self.client_address_header.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => ForwardedHeader::XForwardedFor,
            "forwarded" => ForwardedHeader::Forwarded,
            other => {
                return Err(invalid(
                    S::client_address_header,
                    format!("{other:?}: use x-forwarded-for or forwarded"),
                ))
            }
        };
        if !(1024..=100_000_000).contains(&self.memory_max_keys) {
            return Err(invalid(
                S::memory_max_keys,
                format!(
                    "{}: must be between 1024 and 100000000",
                    self.memory_max_keys
                ),
            ));
        }
        Ok(LimitsConfig {
            enabled: self.enabled,
            sends_per_credential: budget(S::sends_per_credential, &self.sends_per_credential)?,
            sends_per_credential_daily: budget(
                S::sends_per_credential_daily,
                &self.sends_per_credential_daily,
            )?,
            sends_per_network: budget(S::sends_per_network, &self.sends_per_network)?,
            requests_per_network: budget(S::requests_per_network, &self.requests_per_network)?,
            failed_verifies_per_network: budget(
                S::failed_verifies_per_network,
                &self.failed_verifies_per_network,
            )?,
            failed_verifies_per_credential_network: budget(
                S::failed_verifies_per_credential_network,
                &self.failed_verifies_per_credential_network,
            )?,
            global_sends: budget(S::global_sends, &self.global_sends)?,
            fraud_guard,
            fraud: FraudThresholds {
                hourly_floor: self.fraud_hourly_floor,
                daily_floor: self.fraud_daily_floor,
                verified_ratio: self.fraud_verified_ratio,
            },
            deny_groups: groups(S::deny_groups, &self.deny_groups)?,
            allow_groups: groups(S::allow_groups, &self.allow_groups)?,
            safe_credentials: self.safe_credentials.clone(),
            safe_networks: networks(S::safe_networks, &self.safe_networks)?,
            trusted_proxies: networks(S::trusted_proxies, &self.trusted_proxies)?,
            client_address_header,
            fail_open: self.fail_open,
            memory_max_keys: self.memory_max_keys,
        })
    }
}

/// `off`, `LIMIT/PERIOD` or `LIMIT/PERIOD burst N`.
pub fn parse_budget(text: &str) -> Result<Option<Rate>, String> {
    let text = text.trim();
    if text == "off" {
        return Ok(None);
    }
    let mut words = text.split_whitespace();
    let (Some(spec), rest) = (words.next(), words.collect::<Vec<_>>()) else {
        return Err(format!("{text:?} is empty"));
    };
    let (limit, period) = spec
        .split_once('/')
        .ok_or_else(|| format!("{text:?} has no `/`"))?;
    let limit: u32 = limit
        .parse()
        .map_err(|_| format!("{limit:?} is not a whole number"))?;
    let period_ms = duration_ms(period)?;
    if limit == 0 || u64::from(limit) > period_ms {
        return Err(format!(
            "{text:?}: the limit must be between 1 and one per millisecond"
        ));
    }
    let emission_ms = period_ms / u64::from(limit);
    let burst = match rest.as_slice() {
        [] => limit,
        ["burst", n] => n
            .parse::<u32>()
            .ok()
            .filter(|b| *b >= 1)
            .ok_or_else(|| format!("burst {n:?} is not a whole number of at least 1"))?,
        _ => return Err(format!("{text:?}: unexpected words after the rate")),
    };
    Ok(Some(Rate { emission_ms, burst }))
}

/// A network as addresses are compared with it: clients' and peers' IPv4-mapped IPv6
/// addresses are taken as IPv4 (`to_canonical`), so a network written in that form
/// (`::ffff:10.0.0.0/104`) becomes the IPv4 network it maps, or it would never match.
fn as_compared(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, IpNet::V4),
        net => net,
    }
}

fn duration_ms(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = if number.is_empty() {
        1
    } else {
        number
            .parse()
            .map_err(|_| format!("{number:?} is not a whole number"))?
    };
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("{other:?} is not a unit: use s, m, h or d")),
    };
    match number.checked_mul(unit_ms) {
        Some(ms) if ms > 0 && ms <= 366 * 86_400_000 => Ok(ms),
        _ => Err(format!("{text:?}: the period must be between 1s and 366d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::table::SettingTable;
    use std::collections::BTreeMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn load(toml_text: &str, env: &[(&str, &str)]) -> Result<LimitsConfig, String> {
        let mut table: LimitsTable = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        table.apply_env(&env_of(env)).map_err(|e| e.to_string())?;
        table.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_budgets() {
        let c = LimitsConfig::default();
        assert!(c.enabled);
        assert_eq!(c.sends_per_credential, Some(Rate::per(5, 600_000)));
        assert_eq!(
            c.sends_per_credential_daily,
            Some(Rate::per(20, 86_400_000))
        );
        assert_eq!(
            c.sends_per_network,
            Some(Rate {
                emission_ms: 120_000,
                burst: 10
            })
        );
        assert_eq!(c.requests_per_network, Some(Rate::per(120, 60_000)));
        assert_eq!(
            c.failed_verifies_per_network,
            Some(Rate::per(60, 3_600_000))
        );
        assert_eq!(
            c.failed_verifies_per_credential_network,
            Some(Rate::per(10, 900_000))
        );
        assert_eq!(c.global_sends, None);
        assert_eq!(c.fraud_guard, Some(FraudMode::Record));
        assert_eq!(c.fraud.hourly_floor, 3);
        assert_eq!(c.fraud.daily_floor, 20);
        assert!(!c.fail_open);
        assert_eq!(c.client_address_header, ForwardedHeader::XForwardedFor);
    }

    #[test]
    fn networks_written_as_ipv4_mapped_match_ipv4_addresses() {
        let c = load(
            r#"trusted_proxies = ["::ffff:10.0.0.0/104", "::ffff:192.0.2.1", "2001:db8::/32"]"#,
            &[],
        )
        .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c.trusted_proxies[0].contains(&ip("10.9.8.7")));
        assert!(!c.trusted_proxies[0].contains(&ip("11.0.0.1")));
        assert!(c.trusted_proxies[1].contains(&ip("192.0.2.1")));
        assert!(c.trusted_proxies[2].contains(&ip("2001:db8::1")));
    }

    #[test]
    fn table_then_environment() {
        let c = load(
            r#"
            sends_per_credential = "3/1m"
            global_sends = "1000/1h"
            trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
            safe_credentials = ["+15550000000"]
            deny_groups = ["sms:+7", "sms:+99*"]
            fraud_guard = "deny"
            fraud_verified_ratio = 0.5
            fail_open = true
            "#,
            &[
                ("OTP_LIMITS_SENDS_PER_CREDENTIAL", "off"),
                ("OTP_LIMITS_SAFE_NETWORKS", "203.0.113.0/24, 2001:db8::/48"),
            ],
        )
        .unwrap();
        assert_eq!(c.sends_per_credential, None);
        assert_eq!(c.global_sends, Some(Rate::per(1000, 3_600_000)));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[1].contains(&"192.0.2.1".parse::<IpAddr>().unwrap()));
        assert_eq!(c.safe_credentials, vec!["+15550000000"]);
        assert_eq!(c.safe_networks.len(), 2);
        assert_eq!(c.deny_groups, vec!["sms:+7", "sms:+99*"]);
        assert_eq!(c.fraud_guard, Some(FraudMode::Deny));
        assert_eq!(c.fraud.verified_ratio, 0.5);
        assert!(c.fail_open);
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key() {
        let err = load("sends_per_credentail = \"5/10m\"", &[]).unwrap_err();
        assert!(err.contains("sends_per_credentail"), "{err}");
        for (key, value) in [
            ("sends_per_network", "5"),
            ("fail_open", "\"maybe\""),
            ("trusted_proxies", "[\"10.0.0.0/33\"]"),
            ("fraud_guard", "\"block\""),
            ("fraud_hourly_floor", "0"),
            ("fraud_daily_floor", "0"),
        ] {
            let err = load(&format!("{key} = {value}"), &[]).unwrap_err();
            assert!(err.contains(key), "{key}: {err}");
        }
        for (name, value) in [
            ("OTP_LIMITS_SENDS_PER_CREDENTIAL", "5 per minute"),
            ("OTP_LIMITS_SENDS_PER_CREDENTIAL", "0/1m"),
            ("OTP_LIMITS_SENDS_PER_NETWORK", "30/1h burst"),
            ("OTP_LIMITS_REQUESTS_PER_NETWORK", "10/1w"),
            ("OTP_LIMITS_ENABLED", "sure"),
            ("OTP_LIMITS_FRAUD_DAILY_FLOOR", "-1"),
            ("OTP_LIMITS_FRAUD_HOURLY_FLOOR", "0"),
            ("OTP_LIMITS_DENY_GROUPS", "sms:*+44"),
            ("OTP_LIMITS_MEMORY_MAX_KEYS", "10"),
            ("OTP_LIMITS_CLIENT_ADDRESS_HEADER", "x-real-ip"),
        ] {
            let err = load("", &[(name, value)]).unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn budget_syntax() {
        assert_eq!(parse_budget("off"), Ok(None));
        assert_eq!(parse_budget("60/h"), Ok(Some(Rate::per(60, 3_600_000))));
        assert_eq!(
            parse_budget("30/1h burst 10"),
            Ok(Some(Rate {
                emission_ms: 120_000,
                burst: 10
            }))
        );
        assert!(parse_budget("30/1h bursts 10").is_err());
        assert!(parse_budget("1/400d").is_err());
    }
}
