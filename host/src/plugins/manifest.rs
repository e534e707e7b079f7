//! Plugin manifests: `NAME.toml` beside `NAME.wasm` says what the plugin may reach
//! (outbound HTTP destinations), what it is configured with (`[config]`, secrets
//! resolved from the host's environment at load time), which hooks and channels it
//! serves, and per-hook limit overrides. A plugin without a manifest gets no network
//! and no configuration.
//!
//! `${NAME}` reads only the variables the operator made available to plugins
//! ([`PluginEnv`]): those named `OTP_PLUGIN_*` and those listed in the server setting
//! `plugin_env`. The server's own settings never (`OTP_*` other than `OTP_PLUGIN_*`:
//! the master keys, the admin token, the store URL with its password), even if listed;
//! any other name rejects the manifest with a message naming the variable.
//!
//! ```toml
//! hooks = ["sending"]            # bind only these of the hooks the plugin exports
//! channels = ["email"]           # a sender serving only these channels
//!
//! [outbound]
//! allow = [
//!     "https://hooks.example.com",
//!     "https://*.example.net:8443",
//!     { url = "http://sms-gateway.internal:8080", private = true },  # may be a private address
//! ]
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
//! secret = "${OTP_PLUGIN_WEBHOOK_SECRET}"   # resolved from the server's environment
//! ```
//!
//! Parsing is strict (unknown keys are errors) and every error names the field, so a
//! typo never silently drops a restriction. Nothing here logs or prints a config value:
//! the [`Debug`] output of a [`Manifest`] lists config keys only.

use super::allow::{AllowEntry, AllowList, RuleError};
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

/// Variables with this prefix are available to every manifest.
pub const PLUGIN_ENV_PREFIX: &str = "OTP_PLUGIN_";
/// The server's own settings' prefix: no manifest may read these variables (but
/// [`PLUGIN_ENV_PREFIX`]'s), whatever the configuration says.
pub const SERVER_ENV_PREFIX: &str = "OTP_";

/// Whether `name` is one of the server's own variables (its settings, its secrets).
fn is_server_variable(name: &str) -> bool {
    name.starts_with(SERVER_ENV_PREFIX) && !name.starts_with(PLUGIN_ENV_PREFIX)
}

/// Looks up a host environment variable.
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The server environment variables that `${NAME}` in a manifest may read: those
/// named `OTP_PLUGIN_*` and those the configuration lists in `plugin_env`, never the
/// server's own `OTP_*`.
#[derive(Clone)]
pub struct PluginEnv {
    listed: Arc<BTreeSet<String>>,
    lookup: EnvLookup,
}

/// Why a `plugin_env` list is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginEnvError {
    #[error(
        "lists {0}, one of the server's own variables ({SERVER_ENV_PREFIX}*), which are never \
         available to plugins (name a plugin's variable {PLUGIN_ENV_PREFIX}*)"
    )]
    ServerVariable(String),
    #[error("{0:?} is not an environment variable name (letters, digits, _)")]
    BadName(String),
}

impl PluginEnv {
    /// The variables `listed` (and every `OTP_PLUGIN_*`), read with `lookup`.
    pub fn new(
        listed: impl IntoIterator<Item = String>,
        lookup: EnvLookup,
    ) -> Result<PluginEnv, PluginEnvError> {
        let listed: BTreeSet<String> = listed.into_iter().collect();
        for name in &listed {
            if is_server_variable(name) {
                return Err(PluginEnvError::ServerVariable(name.clone()));
            }
            if !is_variable_name(name) {
                return Err(PluginEnvError::BadName(name.clone()));
            }
        }
        Ok(PluginEnv {
            listed: Arc::new(listed),
            lookup,
        })
    }

    /// The variables `listed` (and every `OTP_PLUGIN_*`) of the process environment.
    pub fn from_process(
        listed: impl IntoIterator<Item = String>,
    ) -> Result<PluginEnv, PluginEnvError> {
        PluginEnv::new(listed, Arc::new(|name| std::env::var(name).ok()))
    }

    /// Whether a manifest may read `name`.
    pub fn allows(&self, name: &str) -> bool {
        !is_server_variable(name)
            && (name.starts_with(PLUGIN_ENV_PREFIX) || self.listed.contains(name))
    }
}

impl Default for PluginEnv {
    /// Only `OTP_PLUGIN_*` of the process environment.
    fn default() -> Self {
        PluginEnv::from_process([]).expect("an empty list is valid")
    }
}

impl fmt::Debug for PluginEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginEnv")
            .field("listed", &self.listed)
            .finish_non_exhaustive()
    }
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why a manifest was rejected. Messages name the field or variable, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read the manifest: {0}")]
    Read(String),
    #[error(
        "the manifest was removed, and with it the restriction of the plugin's hooks or \
         channels; the running version keeps serving with its manifest: write an empty \
         manifest to lift the restriction, or remove the .wasm file to remove the plugin"
    )]
    Removed,
    #[error("manifest does not parse: {0}")]
    Syntax(String),
    #[error("manifest [outbound] {0}")]
    Allow(#[from] RuleError),
    #[error("manifest [config] {key}: the environment variable {variable} is not set")]
    MissingVariable { key: String, variable: String },
    #[error(
        "manifest [config] {key}: ${{{variable}}} is not available to plugins: {}",
        why_not_available(.variable)
    )]
    VariableNotAllowed { key: String, variable: String },
    #[error("manifest {field}: {message}")]
    Invalid { field: String, message: String },
}

fn why_not_available(variable: &str) -> String {
    if is_server_variable(variable) {
        "the server's own variables never are".to_string()
    } else {
        format!(
            "name it {PLUGIN_ENV_PREFIX}… or list it in the server setting plugin_env (OTP_PLUGIN_ENV)"
        )
    }
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
    allow: Vec<AllowEntry>,
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
        env: &PluginEnv,
        max_memory_bytes: usize,
    ) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| ManifestError::Syntax(crate::toml_error::describe(text, &e)))?;

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
            allow: AllowList::from_entries(&out.allow)?,
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

    /// Whether it narrows what the plugin is bound to (`hooks` or `channels`): the
    /// one kind of field whose loss would let a plugin do more.
    pub fn restricts_binding(&self) -> bool {
        self.hooks.is_some() || self.channels.is_some()
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
/// literal `${`. A variable the plugin may not read, a missing one or a malformed
/// reference is an error naming the config key and the variable, never the value.
fn resolve(key: &str, value: &str, env: &PluginEnv) -> Result<String, ManifestError> {
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
            if !is_variable_name(name) {
                return Err(invalid(
                    format!("[config] {key}"),
                    "${...} must name an environment variable (letters, digits, _)",
                ));
            }
            if !env.allows(name) {
                return Err(ManifestError::VariableNotAllowed {
                    key: key.to_string(),
                    variable: name.to_string(),
                });
            }
            let resolved = (env.lookup)(name).ok_or_else(|| ManifestError::MissingVariable {
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

    /// Every variable below is set; `LISTED` is listed in `plugin_env`.
    fn env_listing(listed: &[&str]) -> PluginEnv {
        PluginEnv::new(
            listed.iter().map(|s| s.to_string()),
            Arc::new(|name| match name {
                "OTP_PLUGIN_TOKEN" => Some("s3cr3t".into()),
                "OTP_PLUGIN_EMPTY" => Some(String::new()),
                "LISTED" => Some("listed-value".into()),
                "OTP_MASTER_KEY" => Some("the-master-key".into()),
                "HOME" => Some("/root".into()),
                _ => None,
            }),
        )
        .unwrap()
    }

    fn env() -> PluginEnv {
        env_listing(&["LISTED"])
    }

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse(text, &env(), 64 * MIB)
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
            secret = "${OTP_PLUGIN_TOKEN}"
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
        let env = env();
        assert_eq!(resolve("k", "${OTP_PLUGIN_TOKEN}", &env).unwrap(), "s3cr3t");
        assert_eq!(
            resolve("k", "Bearer ${OTP_PLUGIN_TOKEN}!", &env).unwrap(),
            "Bearer s3cr3t!"
        );
        assert_eq!(resolve("k", "a${OTP_PLUGIN_EMPTY}b", &env).unwrap(), "ab");
        assert_eq!(resolve("k", "${LISTED}", &env).unwrap(), "listed-value");
        assert_eq!(
            resolve("k", "$${HOME} costs $5", &env).unwrap(),
            "${HOME} costs $5"
        );
        let e = resolve("secret", "${OTP_PLUGIN_NOPE}", &env)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("secret") && e.contains("OTP_PLUGIN_NOPE") && e.contains("not set"),
            "{e}"
        );
        for bad in ["${OTP_PLUGIN_TOKEN", "${}", "${A-B}", "${1A}"] {
            let e = resolve("k", bad, &env).unwrap_err().to_string();
            assert!(e.contains("[config] k"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_secret_rejects_the_manifest() {
        let e = parse("[config]\nsecret = \"${OTP_PLUGIN_NOT_SET}\"").unwrap_err();
        assert!(matches!(e, ManifestError::MissingVariable { .. }), "{e}");
        assert!(e.to_string().contains("OTP_PLUGIN_NOT_SET"));
    }

    #[test]
    fn only_plugin_variables_resolve() {
        // Set in the environment, but neither OTP_PLUGIN_* nor listed: rejected, named,
        // and the value never appears in the message.
        let e = parse("[config]\nhome = \"${HOME}\"").unwrap_err();
        assert!(matches!(e, ManifestError::VariableNotAllowed { .. }), "{e}");
        let message = e.to_string();
        assert!(
            message.contains("[config] home")
                && message.contains("${HOME}")
                && message.contains("plugin_env")
                && !message.contains("/root"),
            "{message}"
        );
        // Listed in plugin_env: resolves.
        let m = Manifest::parse("[config]\nhome = \"${HOME}\"", &env_listing(&["HOME"]), MIB);
        assert_eq!(m.unwrap().config_value("home"), Some("/root"));
    }

    #[test]
    fn the_servers_own_variables_never_resolve() {
        let e = parse("[config]\nkey = \"x${OTP_MASTER_KEY}\"").unwrap_err();
        assert!(matches!(e, ManifestError::VariableNotAllowed { .. }), "{e}");
        let message = e.to_string();
        assert!(
            message.contains("OTP_MASTER_KEY") && !message.contains("the-master-key"),
            "{message}"
        );
        // Nor any other of the server's own variables, listed or not.
        for name in ["OTP_MASTER_KEY_PREVIOUS", "OTP_ADMIN_TOKEN", "OTP_STORE"] {
            let e = parse(&format!("[config]\nkey = \"${{{name}}}\"")).unwrap_err();
            assert!(matches!(e, ManifestError::VariableNotAllowed { .. }), "{e}");
            let env = PluginEnv::new([], Arc::new(|_| Some("secret".into()))).unwrap();
            assert!(!env.allows(name) && env.allows("OTP_PLUGIN_TOKEN"));
            // Listing one is refused when the configuration is loaded.
            let refused = PluginEnv::new([name.to_string()], Arc::new(|_| None));
            assert_eq!(
                refused.unwrap_err(),
                PluginEnvError::ServerVariable(name.into())
            );
        }
        assert!(PluginEnvError::ServerVariable("OTP_MASTER_KEY".into())
            .to_string()
            .contains("OTP_MASTER_KEY"));
        let bad = PluginEnv::new(["A-B".to_string()], Arc::new(|_| None));
        assert!(matches!(bad, Err(PluginEnvError::BadName(_))));
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
            // A value in the wrong place is named by its key, never quoted.
            (
                "[outbound]\nmax_response_bytes = \"sk_live_4242\"",
                "line 2, column 22 (max_response_bytes): invalid type, expected u64",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains("sk_live_4242"), "{e}");
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
