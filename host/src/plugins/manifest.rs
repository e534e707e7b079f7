//! Plugin manifests: `NAME.toml` beside `NAME.wasm` says what the plugin may reach
//! (outbound HTTP destinations), what it is configured with (`[config]`, secrets
//! resolved from the host's environment at load time), which hooks and channels it
//! serves, and per-hook limit overrides. A plugin without a manifest gets no network
//! and no configuration.
//!
//! ```toml
//! hooks = ["sending"]            # bind only these of the hooks the plugin exports
//! channels = ["email"]           # a sender serving only these channels
//!
//! [outbound]
//! allow = ["https://hooks.example.com", "https://*.example.net:8443"]
//! connect_timeout_ms = 3000      # defaults: 3000, 10000, 10000 ms and 1 MiB
//! first_byte_timeout_ms = 5000
//! total_timeout_ms = 8000
//! max_response_bytes = 65536
//!
//! [limits.sending]
//! deadline_ms = 5000
//! memory_mib = 32
//!
//! [config]
//! url = "https://hooks.example.com/otp"
//! secret = "${WEBHOOK_SECRET}"   # resolved from the server's environment
//! ```
//!
//! Parsing is strict (unknown keys are errors) and every error names the field, so a
//! typo never silently drops a restriction. Nothing here logs or prints a config value:
//! the [`Debug`] output of a [`Manifest`] lists config keys only.

use super::allow::{AllowList, RuleError};
use super::hooks::Hook;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_config::WasiConfigVariables;

/// Defaults of the `[outbound]` timeouts and response cap.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
const MAX_TIMEOUT_MS: u64 = 120_000;
const MAX_RESPONSE_BYTES_LIMIT: u64 = 64 * 1024 * 1024;
const MAX_CONFIG_KEY: usize = 256;
const MAX_CONFIG_VALUE: usize = 64 * 1024;

/// Why a manifest was rejected. Messages name the field or variable, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest: {0}")]
    Read(String),
    #[error("manifest does not parse: {0}")]
    Syntax(String),
    #[error("manifest [outbound] {0}")]
    Allow(#[from] RuleError),
    #[error("manifest [config] {key}: the environment variable {variable} is not set")]
    MissingVariable { key: String, variable: String },
    #[error("manifest {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    hooks: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    #[serde(default)]
    outbound: RawOutbound,
    #[serde(default)]
    limits: BTreeMap<String, RawLimits>,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    #[serde(default)]
    allow: Vec<String>,
    connect_timeout_ms: Option<u64>,
    first_byte_timeout_ms: Option<u64>,
    total_timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    deadline_ms: Option<u64>,
    memory_mib: Option<usize>,
}

/// What a plugin may do over the network. The default (no manifest, or no `allow`)
/// denies every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow: AllowList,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub total_timeout: Duration,
    pub max_response_bytes: u64,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        OutboundPolicy {
            allow: AllowList::default(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// A per-hook override of the server's limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LimitOverride {
    pub deadline: Option<Duration>,
    pub memory_bytes: Option<usize>,
}

/// A parsed, validated manifest with its secrets resolved.
#[derive(Clone, Default)]
pub struct Manifest {
    /// The hooks the plugin may be bound to; `None` means every hook it exports.
    pub hooks: Option<BTreeSet<Hook>>,
    /// The channels a sender serves; `None` means every channel.
    pub channels: Option<BTreeSet<String>>,
    pub outbound: Arc<OutboundPolicy>,
    pub limits: BTreeMap<Hook, LimitOverride>,
    /// The `[config]` values, as the plugin sees them through `wasi:config/store`.
    pub config: Arc<WasiConfigVariables>,
    /// The same values, kept for tests and key listings (never logged).
    values: BTreeMap<String, String>,
    /// The first 12 hex digits of the file's SHA-256; empty without a manifest.
    pub digest: String,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("hooks", &self.hooks)
            .field("channels", &self.channels)
            .field("outbound", &self.outbound)
            .field("limits", &self.limits)
            .field("config_keys", &self.values.keys().collect::<Vec<_>>())
            .field("digest", &self.digest)
            .finish()
    }
}

impl Manifest {
    /// Parses a manifest. `env` resolves `${NAME}` references in config values;
    /// `max_memory_bytes` is the largest memory cap the engine was sized for.
    pub fn parse(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        max_memory_bytes: usize,
    ) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            // One line with the position, rather than toml's multi-line snippet, which
            // would quote the file (and so possibly a value) into the log.
            let line = e.span().map(|span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                before.iter().filter(|b| **b == b'\n').count() + 1
            });
            ManifestError::Syntax(match line {
                Some(line) => format!("line {line}: {}", e.message().trim_end()),
                None => e.message().trim_end().to_string(),
            })
        })?;

        let hooks = match raw.hooks {
            None => None,
            Some(names) => {
                let mut hooks = BTreeSet::new();
                for name in names {
                    hooks.insert(Hook::from_name(&name).ok_or_else(|| {
                        invalid(
                            "hooks",
                            format!("unknown hook {name:?}: use credential-validation, sending or final-action"),
                        )
                    })?);
                }
                if hooks.is_empty() {
                    return Err(invalid("hooks", "lists no hook: remove the plugin instead"));
                }
                Some(hooks)
            }
        };
        let channels = match raw.channels {
            None => None,
            Some(list) => {
                if list.is_empty() {
                    return Err(invalid(
                        "channels",
                        "lists no channel: omit it to serve every channel",
                    ));
                }
                if list.iter().any(|c| c.trim().is_empty() || c.trim() != c) {
                    return Err(invalid(
                        "channels",
                        "channel names must be non-empty, without surrounding spaces",
                    ));
                }
                Some(list.into_iter().collect())
            }
        };

        let ms = |field: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Duration::from_millis(ms)),
            Some(_) => Err(invalid(
                format!("[outbound] {field}"),
                format!("must be between 1 and {MAX_TIMEOUT_MS}"),
            )),
        };
        let out = raw.outbound;
        let max_response_bytes = match out.max_response_bytes {
            None => DEFAULT_MAX_RESPONSE_BYTES,
            Some(n) if (1..=MAX_RESPONSE_BYTES_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(invalid(
                    "[outbound] max_response_bytes",
                    format!("must be between 1 and {MAX_RESPONSE_BYTES_LIMIT}"),
                ))
            }
        };
        let outbound = OutboundPolicy {
            allow: AllowList::parse(&out.allow)?,
            connect_timeout: ms(
                "connect_timeout_ms",
                out.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            first_byte_timeout: ms(
                "first_byte_timeout_ms",
                out.first_byte_timeout_ms,
                DEFAULT_FIRST_BYTE_TIMEOUT,
            )?,
            total_timeout: ms(
                "total_timeout_ms",
                out.total_timeout_ms,
                DEFAULT_TOTAL_TIMEOUT,
            )?,
            max_response_bytes,
        };

        let mut limits = BTreeMap::new();
        for (name, raw) in raw.limits {
            let field = format!("[limits.{name}]");
            let hook = Hook::from_name(&name).ok_or_else(|| {
                invalid(
                    &field,
                    "unknown hook: use credential-validation, sending or final-action",
                )
            })?;
            let deadline = match raw.deadline_ms {
                None => None,
                Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Some(Duration::from_millis(ms)),
                Some(_) => {
                    return Err(invalid(
                        format!("{field} deadline_ms"),
                        format!("must be between 1 and {MAX_TIMEOUT_MS}"),
                    ))
                }
            };
            let max_mib = max_memory_bytes / (1024 * 1024);
            let memory_bytes = match raw.memory_mib {
                None => None,
                Some(mib) if mib >= 1 && mib <= max_mib => Some(mib * 1024 * 1024),
                Some(_) => {
                    return Err(invalid(
                        format!("{field} memory_mib"),
                        format!(
                            "must be between 1 and {max_mib} (the largest per-hook memory cap of the server)"
                        ),
                    ))
                }
            };
            limits.insert(
                hook,
                LimitOverride {
                    deadline,
                    memory_bytes,
                },
            );
        }

        let mut values = BTreeMap::new();
        for (key, value) in raw.config {
            if key.is_empty() || key.len() > MAX_CONFIG_KEY {
                return Err(invalid(
                    "[config]",
                    format!("keys must be 1 to {MAX_CONFIG_KEY} bytes"),
                ));
            }
            let text = match value {
                toml::Value::String(s) => resolve(&key, &s, env)?,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(invalid(
                        format!("[config] {key}"),
                        "values must be strings, numbers or booleans",
                    ))
                }
            };
            if text.len() > MAX_CONFIG_VALUE {
                return Err(invalid(
                    format!("[config] {key}"),
                    format!("the value is longer than {MAX_CONFIG_VALUE} bytes"),
                ));
            }
            values.insert(key, text);
        }

        use sha2::{Digest, Sha256};
        Ok(Manifest {
            hooks,
            channels,
            outbound: Arc::new(outbound),
            limits,
            config: Arc::new(
                values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            ),
            values,
            digest: hex::encode(&Sha256::digest(text.as_bytes())[..6]),
        })
    }

    /// The hooks this plugin is bound to, given what it exports. Errors when the
    /// manifest names a hook the plugin does not export, or restricts channels of a
    /// plugin that does not send.
    pub fn bound_hooks(&self, exported: &[Hook]) -> Result<Vec<Hook>, ManifestError> {
        let serves = |hook: &Hook, field: &str| {
            if exported.contains(hook) {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("names {hook}, which the plugin does not export"),
                ))
            }
        };
        if let Some(hooks) = &self.hooks {
            for hook in hooks {
                serves(hook, "hooks")?;
            }
        }
        for hook in self.limits.keys() {
            serves(hook, &format!("[limits.{hook}]"))?;
        }
        let bound: Vec<Hook> = exported
            .iter()
            .copied()
            .filter(|h| self.hooks.as_ref().is_none_or(|set| set.contains(h)))
            .collect();
        if self.channels.is_some() && !bound.contains(&Hook::Sending) {
            return Err(invalid(
                "channels",
                "only applies to a plugin bound to the sending hook",
            ));
        }
        Ok(bound)
    }

    /// Whether this plugin (as a sender) serves `channel`.
    pub fn serves_channel(&self, channel: &str) -> bool {
        self.channels.as_ref().is_none_or(|c| c.contains(channel))
    }

    pub fn config_keys(&self) -> Vec<&str> {
        self.values.keys().map(String::as_str).collect()
    }

    /// One resolved config value (for tests and the plugin check; never log it).
    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }
}

/// Substitutes `${NAME}` with the environment variable `NAME`; `$${` stands for a
/// literal `${`. A missing variable or a malformed reference is an error naming the
/// config key and the variable, never the value.
fn resolve(
    key: &str,
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ManifestError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                invalid(
                    format!("[config] {key}"),
                    "a ${ reference is not closed with }",
                )
            })?;
            let name = &tail[..end];
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(invalid(
                    format!("[config] {key}"),
                    "${...} must name an environment variable (letters, digits, _)",
                ));
            }
            let resolved = env(name).ok_or_else(|| ManifestError::MissingVariable {
                key: key.to_string(),
                variable: name.to_string(),
            })?;
            out.push_str(&resolved);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, &env, 64 * MIB)
    }

    #[test]
    fn an_empty_manifest_denies_and_configures_nothing() {
        let m = parse("").unwrap();
        assert!(m.outbound.allow.is_empty());
        assert!(m.hooks.is_none() && m.channels.is_none());
        assert!(m.config_keys().is_empty());
        assert_eq!(m.outbound.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(m.digest.len(), 12);
    }

    #[test]
    fn a_full_manifest() {
        let m = parse(
            r#"
            hooks = ["sending"]
            channels = ["email", "sms"]
            [outbound]
            allow = ["https://*.example.com", "http://127.0.0.1:*"]
            connect_timeout_ms = 100
            first_byte_timeout_ms = 200
            total_timeout_ms = 300
            max_response_bytes = 4096
            [limits.sending]
            deadline_ms = 500
            memory_mib = 16
            [config]
            url = "http://127.0.0.1/x"
            secret = "${TOKEN}"
            ttl = 60
            "#,
        )
        .unwrap();
        assert_eq!(m.hooks, Some(BTreeSet::from([Hook::Sending])));
        assert!(m.serves_channel("email") && m.serves_channel("sms") && !m.serves_channel("x"));
        assert_eq!(m.outbound.allow.rules().len(), 2);
        assert_eq!(m.outbound.connect_timeout, Duration::from_millis(100));
        assert_eq!(m.outbound.first_byte_timeout, Duration::from_millis(200));
        assert_eq!(m.outbound.total_timeout, Duration::from_millis(300));
        assert_eq!(m.outbound.max_response_bytes, 4096);
        assert_eq!(
            m.limits[&Hook::Sending],
            LimitOverride {
                deadline: Some(Duration::from_millis(500)),
                memory_bytes: Some(16 * MIB)
            }
        );
        assert_eq!(m.config_keys(), ["secret", "ttl", "url"]);
        assert_eq!(m.config_value("secret"), Some("s3cr3t"));
        assert_eq!(m.config_value("ttl"), Some("60"));
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("s3cr3t"),
            "Debug never shows values: {shown}"
        );
        assert_eq!(
            m.bound_hooks(&[Hook::Sending, Hook::FinalAction]).unwrap(),
            [Hook::Sending]
        );
        assert!(m.bound_hooks(&[Hook::FinalAction]).is_err());
    }

    #[test]
    fn references_resolve_from_the_environment() {
        assert_eq!(resolve("k", "${TOKEN}", &env).unwrap(), "s3cr3t");
        assert_eq!(
            resolve("k", "Bearer ${TOKEN}!", &env).unwrap(),
            "Bearer s3cr3t!"
        );
        assert_eq!(resolve("k", "a${EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(
            resolve("k", "$${TOKEN} costs $5", &env).unwrap(),
            "${TOKEN} costs $5"
        );
        let e = resolve("secret", "${NOPE}", &env).unwrap_err().to_string();
        assert!(
            e.contains("secret") && e.contains("NOPE") && e.contains("not set"),
            "{e}"
        );
        for bad in ["${TOKEN", "${}", "${A-B}", "${1A}"] {
            let e = resolve("k", bad, &env).unwrap_err().to_string();
            assert!(e.contains("[config] k"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_secret_rejects_the_manifest() {
        let e = parse("[config]\nsecret = \"${NOT_SET}\"").unwrap_err();
        assert!(matches!(e, ManifestError::MissingVariable { .. }), "{e}");
        assert!(e.to_string().contains("NOT_SET"));
    }

    #[test]
    fn mistakes_are_named() {
        for (text, needle) in [
            ("allow = []", "unknown field"),
            ("[outbound]\nallow = [\"example.com\"]", "scheme://host"),
            ("[outbound]\nallowed = []", "unknown field"),
            ("[outbound]\nconnect_timeout_ms = 0", "connect_timeout_ms"),
            ("[outbound]\nmax_response_bytes = 0", "max_response_bytes"),
            ("hooks = [\"sendng\"]", "unknown hook"),
            ("hooks = []", "lists no hook"),
            ("channels = []", "lists no channel"),
            ("channels = [\" email\"]", "channel names"),
            ("[limits.sendng]\ndeadline_ms = 5", "[limits.sendng]"),
            ("[limits.sending]\ndeadline_ms = 0", "deadline_ms"),
            ("[limits.sending]\nmemory_mib = 65", "memory_mib"),
            ("[config]\nk = [1]", "[config] k"),
            ("[config]\nk = \"${X\"", "[config] k"),
            ("not toml", "does not parse"),
            ("hooks = [\"sending\"]\n[outbound\n", "line 2"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn bound_hooks_follow_the_exports() {
        let m = parse("").unwrap();
        assert_eq!(
            m.bound_hooks(&[Hook::Sending, Hook::FinalAction]).unwrap(),
            [Hook::Sending, Hook::FinalAction]
        );
        let m = parse("channels = [\"email\"]").unwrap();
        assert!(m
            .bound_hooks(&[Hook::FinalAction])
            .unwrap_err()
            .to_string()
            .contains("channels"));
        let m = parse("[limits.final-action]\ndeadline_ms = 5").unwrap();
        assert!(m
            .bound_hooks(&[Hook::Sending])
            .unwrap_err()
            .to_string()
            .contains("final-action"));
    }

    #[test]
    fn config_values_are_strings() {
        let m = parse("[config]\na = \"x\"\nb = 3\nc = true\nd = 1.5").unwrap();
        assert_eq!(m.config_keys(), ["a", "b", "c", "d"]);
        assert_eq!(m.config_value("b"), Some("3"));
        assert_eq!(m.config_value("c"), Some("true"));
        assert_eq!(m.config_value("d"), Some("1.5"));
    }
}
