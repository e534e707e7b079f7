//! Server configuration: defaults, then an optional TOML file, then environment
//! variables (`OTP_*`, and `CORS_ORIGIN` as the reference server names it).
//!
//! Every setting has a documented default (see the README). A value that does not
//! parse stops start-up with a message naming the setting, so a typo never silently
//! becomes a default.

use crate::plugins::{Hook, HookLimits, RuntimeOptions};
use crate::protocol::{Alphabet, Settings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{name}: {message}")]
    Invalid { name: String, message: String },
}

/// Whether the server runs for development or production; production changes the
/// cookie name and attributes, adds HSTS, and warns about development plugins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

/// The whole configuration as the TOML file spells it. All fields are optional in the
/// file; `Default` gives the documented defaults.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: String,
    pub env: Mode,
    pub cors_origin: Option<String>,
    pub plugins_dir: PathBuf,
    pub cache_dir: Option<PathBuf>,
    pub log: String,
    pub code_length: usize,
    pub code_alphabet: String,
    pub session_max_age_secs: u64,
    pub max_attempts: u8,
    pub block_at_attempts_left: u8,
    pub block_secs: u64,
    pub resend_cooldown_secs: u64,
    pub max_resends: u8,
    pub max_credentials: usize,
    pub max_credential_id_len: usize,
    pub kek_rotation_secs: u64,
    pub validate_deadline_ms: u64,
    pub send_deadline_ms: u64,
    pub final_deadline_ms: u64,
    pub plugin_memory_mib: usize,
    /// Per-hook memory caps; each defaults to `plugin_memory_mib`.
    pub validate_memory_mib: Option<usize>,
    pub send_memory_mib: Option<usize>,
    pub final_memory_mib: Option<usize>,
    pub max_concurrent_plugin_calls: u32,
    /// Hook name → plugin name, for hooks that several plugins export.
    pub hooks: BTreeMap<String, String>,
    /// Enables `POST /test/clock` (never allowed in production). For black-box tests.
    pub test_clock: bool,
    /// `memory`, or a `redis://` / `rediss://` URL.
    pub store: String,
    /// Prefix of every Redis key.
    pub store_prefix: String,
    /// Timeout of every Redis call.
    pub store_timeout_ms: u64,
    /// Base64 of the 32-byte master key that wraps KEKs stored in Redis.
    pub master_key: Option<String>,
    /// A file holding the master key (base64), instead of `master_key`.
    pub master_key_file: Option<PathBuf>,
}

impl Default for FileConfig {
    fn default() -> Self {
        let settings = Settings::default();
        FileConfig {
            listen: "127.0.0.1:8080".into(),
            env: Mode::Development,
            cors_origin: None,
            plugins_dir: PathBuf::from("plugins/dist"),
            cache_dir: default_cache_dir(),
            log: "info".into(),
            code_length: settings.code_length,
            code_alphabet: "alphanumeric".into(),
            session_max_age_secs: settings.session_max_age_ms / 1000,
            max_attempts: settings.max_attempts,
            block_at_attempts_left: settings.block_at_attempts_left,
            block_secs: settings.block_duration_ms / 1000,
            resend_cooldown_secs: settings.resend_cooldown_ms / 1000,
            max_resends: settings.max_resends,
            max_credentials: settings.max_credentials,
            max_credential_id_len: settings.max_credential_id_len,
            kek_rotation_secs: 24 * 3600,
            validate_deadline_ms: 100,
            send_deadline_ms: 10_000,
            final_deadline_ms: 1_000,
            plugin_memory_mib: 64,
            validate_memory_mib: None,
            send_memory_mib: None,
            final_memory_mib: None,
            max_concurrent_plugin_calls: 256,
            hooks: BTreeMap::new(),
            test_clock: false,
            store: "memory".into(),
            store_prefix: "otp:".into(),
            store_timeout_ms: 500,
            master_key: None,
            master_key_file: None,
        }
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("otp-server").join("wasmtime"))
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub cors_origin: Option<String>,
    pub plugins_dir: PathBuf,
    pub log: String,
    pub otp: Settings,
    pub kek_rotation: Duration,
    pub runtime: RuntimeOptions,
    pub hook_preferences: BTreeMap<Hook, String>,
    pub test_clock: bool,
    pub store: StoreConfig,
}

/// Where single-use ids and KEKs live. Debug output never shows the master key.
#[derive(Clone)]
pub enum StoreConfig {
    Memory,
    Redis {
        url: String,
        prefix: String,
        timeout: Duration,
        /// Base64 of the master key (validated at start-up).
        master_key: String,
    },
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreConfig::Memory => f.write_str("Memory"),
            StoreConfig::Redis {
                prefix, timeout, ..
            } => f
                .debug_struct("Redis")
                .field("prefix", prefix)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}

impl Config {
    /// Loads the configuration: the file named by `--config` or `OTP_CONFIG` (if
    /// any), then the environment.
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env("OTP_CONFIG").map(PathBuf::from));
        let mut raw = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    message: e.to_string(),
                })?
            }
            None => FileConfig::default(),
        };
        apply_env(&mut raw, env)?;
        raw.validate()
    }
}

/// Reads `name` from the environment and parses it into `slot`.
fn set<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    slot: &mut T,
) -> Result<(), ConfigError>
where
    T::Err: std::fmt::Display,
{
    if let Some(value) = env(name) {
        *slot = value
            .trim()
            .parse()
            .map_err(|e: T::Err| ConfigError::Invalid {
                name: name.to_string(),
                message: format!("{value:?} is not valid: {e}"),
            })?;
    }
    Ok(())
}

fn apply_env(c: &mut FileConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    set(env, "OTP_LISTEN", &mut c.listen)?;
    if let Some(mode) = env("OTP_ENV") {
        c.env = match mode.trim() {
            "production" => Mode::Production,
            "development" => Mode::Development,
            other => {
                return Err(ConfigError::Invalid {
                    name: "OTP_ENV".into(),
                    message: format!("{other:?} is not valid: use development or production"),
                })
            }
        };
    }
    if let Some(origin) = env("CORS_ORIGIN") {
        c.cors_origin = Some(origin);
    }
    set(env, "OTP_PLUGINS_DIR", &mut c.plugins_dir)?;
    if let Some(dir) = env("OTP_CACHE_DIR") {
        c.cache_dir = if dir.is_empty() {
            None
        } else {
            Some(PathBuf::from(dir))
        };
    }
    set(env, "OTP_LOG", &mut c.log)?;
    set(env, "OTP_CODE_LENGTH", &mut c.code_length)?;
    set(env, "OTP_CODE_ALPHABET", &mut c.code_alphabet)?;
    set(env, "OTP_SESSION_MAX_AGE_SECS", &mut c.session_max_age_secs)?;
    set(env, "OTP_MAX_ATTEMPTS", &mut c.max_attempts)?;
    set(
        env,
        "OTP_BLOCK_AT_ATTEMPTS_LEFT",
        &mut c.block_at_attempts_left,
    )?;
    set(env, "OTP_BLOCK_SECS", &mut c.block_secs)?;
    set(env, "OTP_RESEND_COOLDOWN_SECS", &mut c.resend_cooldown_secs)?;
    set(env, "OTP_MAX_RESENDS", &mut c.max_resends)?;
    set(env, "OTP_MAX_CREDENTIALS", &mut c.max_credentials)?;
    set(
        env,
        "OTP_MAX_CREDENTIAL_ID_LEN",
        &mut c.max_credential_id_len,
    )?;
    set(env, "OTP_KEK_ROTATION_SECS", &mut c.kek_rotation_secs)?;
    set(env, "OTP_VALIDATE_DEADLINE_MS", &mut c.validate_deadline_ms)?;
    set(env, "OTP_SEND_DEADLINE_MS", &mut c.send_deadline_ms)?;
    set(env, "OTP_FINAL_DEADLINE_MS", &mut c.final_deadline_ms)?;
    set(env, "OTP_PLUGIN_MEMORY_MIB", &mut c.plugin_memory_mib)?;
    for (name, slot) in [
        ("OTP_VALIDATE_MEMORY_MIB", &mut c.validate_memory_mib),
        ("OTP_SEND_MEMORY_MIB", &mut c.send_memory_mib),
        ("OTP_FINAL_MEMORY_MIB", &mut c.final_memory_mib),
    ] {
        if env(name).is_some() {
            let mut value = 0usize;
            set(env, name, &mut value)?;
            *slot = Some(value);
        }
    }
    set(
        env,
        "OTP_MAX_CONCURRENT_PLUGIN_CALLS",
        &mut c.max_concurrent_plugin_calls,
    )?;
    for hook in Hook::ALL {
        let name = format!("OTP_HOOK_{}", hook.name().replace('-', "_").to_uppercase());
        if let Some(plugin) = env(&name) {
            c.hooks.insert(hook.name().to_string(), plugin);
        }
    }
    set(env, "OTP_STORE", &mut c.store)?;
    set(env, "OTP_STORE_PREFIX", &mut c.store_prefix)?;
    set(env, "OTP_STORE_TIMEOUT_MS", &mut c.store_timeout_ms)?;
    if let Some(key) = env("OTP_MASTER_KEY") {
        c.master_key = Some(key);
    }
    if let Some(file) = env("OTP_MASTER_KEY_FILE") {
        c.master_key_file = Some(PathBuf::from(file));
    }
    if let Some(flag) = env("OTP_TEST_CLOCK") {
        c.test_clock = matches!(flag.trim(), "1" | "true" | "yes");
    }
    Ok(())
}

fn invalid(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        message: message.into(),
    }
}

impl FileConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| invalid("listen (OTP_LISTEN)", format!("{:?}: {e}", self.listen)))?;
        let alphabet = match self.code_alphabet.as_str() {
            "alphanumeric" => Alphabet::LowerAlnum,
            "digits" => Alphabet::Digits,
            other => {
                return Err(invalid(
                    "code_alphabet (OTP_CODE_ALPHABET)",
                    format!("{other:?}: use alphanumeric or digits"),
                ))
            }
        };
        let otp = Settings {
            code_length: self.code_length,
            alphabet,
            session_max_age_ms: self.session_max_age_secs.saturating_mul(1000),
            max_attempts: self.max_attempts,
            block_at_attempts_left: self.block_at_attempts_left,
            block_duration_ms: self.block_secs.saturating_mul(1000),
            resend_cooldown_ms: self.resend_cooldown_secs.saturating_mul(1000),
            max_resends: self.max_resends,
            max_credentials: self.max_credentials,
            max_credential_id_len: self.max_credential_id_len,
            ..Settings::default()
        };
        otp.validate().map_err(|m| invalid("OTP settings", m))?;
        // `__Host-Http-o=` plus `; Path=/; HttpOnly; SameSite=Strict; Secure; Expires=…`.
        crate::crypto::validate_cookie_budget(&otp, 120)
            .map_err(|m| invalid("max_credentials / max_credential_id_len", m))?;
        if let Some(origin) = &self.cors_origin {
            if origin.is_empty()
                || origin == "*"
                || origin.parse::<axum::http::HeaderValue>().is_err()
            {
                return Err(invalid(
                    "cors_origin (CORS_ORIGIN)",
                    format!("{origin:?}: give one origin such as https://app.example.com (credentials rule out \"*\")"),
                ));
            }
        }
        if self.kek_rotation_secs < 60 {
            return Err(invalid(
                "kek_rotation_secs (OTP_KEK_ROTATION_SECS)",
                "must be at least 60",
            ));
        }
        for (name, ms) in [
            (
                "validate_deadline_ms (OTP_VALIDATE_DEADLINE_MS)",
                self.validate_deadline_ms,
            ),
            (
                "send_deadline_ms (OTP_SEND_DEADLINE_MS)",
                self.send_deadline_ms,
            ),
            (
                "final_deadline_ms (OTP_FINAL_DEADLINE_MS)",
                self.final_deadline_ms,
            ),
        ] {
            if !(1..=120_000).contains(&ms) {
                return Err(invalid(name, "must be between 1 and 120000"));
            }
        }
        let memory_mib = |name: &str, value: Option<usize>| {
            let mib = value.unwrap_or(self.plugin_memory_mib);
            if (1..=4096).contains(&mib) {
                Ok(mib * 1024 * 1024)
            } else {
                Err(invalid(name, "must be between 1 and 4096"))
            }
        };
        memory_mib("plugin_memory_mib (OTP_PLUGIN_MEMORY_MIB)", None)?;
        let validate_memory = memory_mib(
            "validate_memory_mib (OTP_VALIDATE_MEMORY_MIB)",
            self.validate_memory_mib,
        )?;
        let send_memory = memory_mib(
            "send_memory_mib (OTP_SEND_MEMORY_MIB)",
            self.send_memory_mib,
        )?;
        let final_memory = memory_mib(
            "final_memory_mib (OTP_FINAL_MEMORY_MIB)",
            self.final_memory_mib,
        )?;
        if !(1..=10_000).contains(&self.max_concurrent_plugin_calls) {
            return Err(invalid(
                "max_concurrent_plugin_calls (OTP_MAX_CONCURRENT_PLUGIN_CALLS)",
                "must be between 1 and 10000",
            ));
        }
        let mut hook_preferences = BTreeMap::new();
        for (hook, plugin) in &self.hooks {
            let parsed = Hook::from_name(hook).ok_or_else(|| {
                invalid(
                    &format!("hooks.{hook}"),
                    "unknown hook: use credential-validation, sending or final-action",
                )
            })?;
            hook_preferences.insert(parsed, plugin.clone());
        }
        if self.test_clock && self.env == Mode::Production {
            return Err(invalid(
                "test_clock (OTP_TEST_CLOCK)",
                "is never allowed in production mode",
            ));
        }
        let store = self.store_config()?;
        let limits = |ms: u64, memory_bytes: usize| HookLimits {
            deadline: Duration::from_millis(ms),
            memory_bytes,
        };
        Ok(Config {
            listen,
            mode: self.env,
            cors_origin: self.cors_origin,
            plugins_dir: self.plugins_dir,
            log: self.log,
            otp,
            kek_rotation: Duration::from_secs(self.kek_rotation_secs),
            runtime: RuntimeOptions {
                validate: limits(self.validate_deadline_ms, validate_memory),
                send: limits(self.send_deadline_ms, send_memory),
                final_action: limits(self.final_deadline_ms, final_memory),
                max_concurrent_calls: self.max_concurrent_plugin_calls,
                cache_dir: self.cache_dir,
            },
            hook_preferences,
            test_clock: self.test_clock,
            store,
        })
    }

    fn store_config(&self) -> Result<StoreConfig, ConfigError> {
        let url = self.store.trim();
        if url == "memory" {
            return Ok(StoreConfig::Memory);
        }
        if let Err(e) = crate::store::redis::RedisTarget::parse(url) {
            return Err(invalid("store (OTP_STORE)", e.to_string()));
        }
        if !(1..=60_000).contains(&self.store_timeout_ms) {
            return Err(invalid(
                "store_timeout_ms (OTP_STORE_TIMEOUT_MS)",
                "must be between 1 and 60000",
            ));
        }
        let master_key = match (&self.master_key, &self.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "master_key (OTP_MASTER_KEY)",
                    "give the master key or a master key file, not both",
                ))
            }
            (Some(key), None) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid("master_key_file (OTP_MASTER_KEY_FILE)", format!("{}: {e}", path.display()))
            })?,
            (None, None) => {
                return Err(invalid(
                    "master_key (OTP_MASTER_KEY)",
                    "Redis mode needs a master key to wrap the shared key-encryption keys: \
                     set OTP_MASTER_KEY to base64 of 32 random bytes (e.g. `openssl rand -base64 32`) \
                     or OTP_MASTER_KEY_FILE to a file holding it",
                ))
            }
        };
        if let Err(e) = crate::crypto::MasterKey::from_base64(&master_key) {
            return Err(invalid("master_key (OTP_MASTER_KEY)", e.to_string()));
        }
        Ok(StoreConfig::Redis {
            url: url.to_string(),
            prefix: self.store_prefix.clone(),
            timeout: Duration::from_millis(self.store_timeout_ms),
            master_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, &env_of(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(c.otp.code_length, 10);
        assert_eq!(c.runtime.validate.deadline, Duration::from_millis(100));
    }

    #[test]
    fn environment_overrides() {
        let c = Config::load(
            None,
            &env_of(&[
                ("OTP_LISTEN", "0.0.0.0:9000"),
                ("OTP_ENV", "production"),
                ("CORS_ORIGIN", "https://app.example.com"),
                ("OTP_HOOK_SENDING", "webhook"),
                ("OTP_CODE_ALPHABET", "digits"),
                ("OTP_CODE_LENGTH", "6"),
                ("OTP_SEND_MEMORY_MIB", "16"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.mode, Mode::Production);
        assert_eq!(c.cors_origin.as_deref(), Some("https://app.example.com"));
        assert_eq!(
            c.hook_preferences.get(&Hook::Sending).map(String::as_str),
            Some("webhook")
        );
        assert_eq!(c.otp.alphabet, Alphabet::Digits);
        assert_eq!(c.otp.code_length, 6);
        assert_eq!(c.runtime.send.memory_bytes, 16 * 1024 * 1024);
        assert_eq!(c.runtime.validate.memory_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("OTP_LISTEN", "nowhere"),
            ("OTP_ENV", "staging"),
            ("OTP_MAX_ATTEMPTS", "many"),
            ("CORS_ORIGIN", "*"),
            ("OTP_CODE_ALPHABET", "emoji"),
            ("OTP_FINAL_MEMORY_MIB", "0"),
            ("OTP_MAX_CREDENTIALS", "many"),
        ] {
            let err = Config::load(None, &env_of(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
        let err = Config::load(
            None,
            &env_of(&[("OTP_ENV", "production"), ("OTP_TEST_CLOCK", "1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("OTP_TEST_CLOCK"), "{err}");
    }

    #[test]
    fn redis_needs_a_valid_master_key() {
        let err = Config::load(None, &env_of(&[("OTP_STORE", "redis://127.0.0.1:6379")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTP_MASTER_KEY"), "{err}");
        let err = Config::load(
            None,
            &env_of(&[
                ("OTP_STORE", "redis://127.0.0.1:6379"),
                ("OTP_MASTER_KEY", "c2hvcnQ="),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("32 bytes"), "{err}");
        let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let c = Config::load(
            None,
            &env_of(&[
                ("OTP_STORE", "redis://127.0.0.1:6379"),
                ("OTP_MASTER_KEY", key),
            ]),
        )
        .unwrap();
        assert!(matches!(c.store, StoreConfig::Redis { .. }));
        let err = Config::load(None, &env_of(&[("OTP_STORE", "postgres://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTP_STORE"), "{err}");
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_rejected() {
        let dir = std::env::temp_dir().join(format!("otp-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(
            &good,
            "listen = \"127.0.0.1:7000\"\nmax_attempts = 5\n[hooks]\nsending = \"x\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&good), &env_of(&[])).unwrap();
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.otp.max_attempts, 5);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "listne = \"x\"\n").unwrap();
        let err = Config::load(Some(&bad), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
    }
}
