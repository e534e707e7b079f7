//! Server configuration: defaults, then an optional TOML file, then environment
//! variables (`OTP_*`, and `CORS_ORIGIN` as the reference server names it).
//!
//! Every setting is declared once, in the [`settings!`] tables below: its TOML key, its
//! environment variable, its default, the parser of the variable and a doc line. From that
//! one declaration come the TOML struct (unknown keys are rejected), the defaults, the
//! environment overrides, the `key (ENV)` label of error messages and the list a test
//! compares with the README's configuration table. A value that does not parse — in the
//! file or in the environment, booleans included — stops start-up with a message naming
//! the setting, so a typo never silently becomes a default.
//!
//! **Adding a setting**: add one line to the table it belongs to, e.g.
//!
//! ```ignore
//!     /// per-call deadline of the sending hook (ms)
//!     send_deadline_ms: u64 { default: 10_000, env: "OTP_SEND_DEADLINE_MS", parse: parsed },
//! ```
//!
//! then add its row (key, variable, default, meaning) to the README's "Configuration"
//! table (`readme_lists_every_setting` fails until you do) and, if the raw value needs
//! checking or converting, do it in [`FileConfig::validate`] and name it in errors with
//! `Setting::send_deadline_ms.label()`. Parsers: [`parsed`](table::parsed) (any `FromStr`),
//! [`some`](table::some) (an `Option`), [`path_or_none`](table::path_or_none),
//! [`flag`](table::flag) (strict booleans), or any `fn(&str) -> Result<T, String>`.
//!
//! **Adding a sub-table** such as `[limits]`: declare it with its own `settings!` (a struct
//! name and a setting-enum name; it may live in the module that owns it, importing
//! `crate::config::table::{settings, parsed, ...}`), then add one field to [`FileConfig`]:
//!
//! ```ignore
//! settings! {
//!     /// `[limits]`: abuse controls.
//!     pub struct LimitsTable (LimitsSetting) {
//!         /// codes sent per credential per hour
//!         sends_per_hour: u32 { default: 10, env: "OTP_LIMITS_SENDS_PER_HOUR", parse: parsed },
//!     }
//! }
//! // in FileConfig:
//!     /// `[limits]`: abuse controls
//!     limits: LimitsTable { table },
//! ```
//!
//! Its keys are listed (and written in the README) as `limits.sends_per_hour`, a valid TOML
//! dotted key; `[hooks]` below is the example in use. The macro itself is in [`table`].

pub mod table;

use crate::events::EventOptions;
use crate::http::edge::EdgeLimits;
use crate::limits::config::LimitsTable;
use crate::limits::LimitsConfig;
use crate::plugins::{Hook, HookChoices, HookLimits, PluginEnv, RuntimeOptions};
use crate::protocol::{Alphabet, Settings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use table::{flag, parsed, path_or_none, settings, some, SettingTable};

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

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Mode, String> {
        match text {
            "development" => Ok(Mode::Development),
            "production" => Ok(Mode::Production),
            _ => Err("use development or production".into()),
        }
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("use text or json".into()),
        }
    }
}

settings! {
    /// The whole configuration as the TOML file spells it. All fields are optional in the
    /// file; `Default` gives the documented defaults.
    pub struct FileConfig (Setting) {
        /// address and port
        listen: String { default: "127.0.0.1:8080".into(), env: "OTP_LISTEN", parse: parsed },
        /// `development` or `production` (cookie attributes, HSTS, warnings)
        env: Mode { default: Mode::Development, env: "OTP_ENV", parse: parsed },
        /// the one origin allowed to call with credentials
        cors_origin: Option<String> { default: None, env: "CORS_ORIGIN", parse: some },
        /// the plugins folder
        plugins_dir: PathBuf { default: "plugins/dist".into(), env: "OTP_PLUGINS_DIR", parse: parsed },
        /// compiled-plugin cache; empty disables
        cache_dir: Option<PathBuf> { default: default_cache_dir(), env: "OTP_CACHE_DIR", parse: path_or_none },
        /// log filter (`tracing` `EnvFilter` syntax)
        log: String { default: "info".into(), env: "OTP_LOG", parse: parsed },
        /// `text`, or `json` (one JSON object per line, with the request's span fields)
        log_format: LogFormat { default: LogFormat::Text, env: "OTP_LOG_FORMAT", parse: parsed },
        /// one log line per request: method, route, status, duration, request id (never the cookie or the body)
        access_log: bool { default: true, env: "OTP_ACCESS_LOG", parse: flag },
        /// time a client has to send a request's headers; also closes idle keep-alive connections
        header_read_timeout_ms: u64 { default: 10_000, env: "OTP_HEADER_READ_TIMEOUT_MS", parse: parsed },
        /// time a client has to send a request's body, from the end of its headers
        body_read_timeout_ms: u64 { default: 10_000, env: "OTP_BODY_READ_TIMEOUT_MS", parse: parsed },
        /// time a write to a client may stay blocked (a client that stops reading is disconnected)
        write_timeout_ms: u64 { default: 10_000, env: "OTP_WRITE_TIMEOUT_MS", parse: parsed },
        /// open connections at most; more clients wait in the listen backlog (logged when reached)
        max_connections: usize { default: 10_000, env: "OTP_MAX_CONNECTIONS", parse: parsed },
        /// open connections from one client address (an IPv6 /64) at most, trusted proxies excepted; more are closed at once (logged)
        max_connections_per_client: usize { default: 256, env: "OTP_MAX_CONNECTIONS_PER_CLIENT", parse: parsed },
        /// on shutdown, how long in-flight requests may take to finish
        shutdown_grace_ms: u64 { default: 10_000, env: "OTP_SHUTDOWN_GRACE_MS", parse: parsed },
        /// the admin listener (`/metrics`, the detailed `/ready`, `POST /admin/keys/rotate`); empty turns it and the metrics off
        admin_listen: String { default: "127.0.0.1:9090".into(), env: "OTP_ADMIN_LISTEN", parse: parsed },
        /// bearer token every admin route requires once set; mandatory beyond loopback; 16 characters at least
        admin_token: Option<String> { default: None, env: "OTP_ADMIN_TOKEN", parse: some },
        /// code length (4–64)
        code_length: usize { default: Settings::default().code_length, env: "OTP_CODE_LENGTH", parse: parsed },
        /// `alphanumeric` (a–z0–9) or `digits` (0–9)
        code_alphabet: String { default: "alphanumeric".into(), env: "OTP_CODE_ALPHABET", parse: parsed },
        /// how long a code (and the session holding it) lives
        session_max_age_secs: u64 {
            default: Settings::default().session_max_age_ms / 1000,
            env: "OTP_SESSION_MAX_AGE_SECS",
            parse: parsed,
        },
        /// wrong codes before the credential is blocked in the session
        max_attempts: u8 { default: Settings::default().max_attempts, env: "OTP_MAX_ATTEMPTS", parse: parsed },
        /// a temporary block starts when attempts fall to this
        block_at_attempts_left: u8 {
            default: Settings::default().block_at_attempts_left,
            env: "OTP_BLOCK_AT_ATTEMPTS_LEFT",
            parse: parsed,
        },
        /// length of the temporary block
        block_secs: u64 {
            default: Settings::default().block_duration_ms / 1000,
            env: "OTP_BLOCK_SECS",
            parse: parsed,
        },
        /// wait before a resend
        resend_cooldown_secs: u64 {
            default: Settings::default().resend_cooldown_ms / 1000,
            env: "OTP_RESEND_COOLDOWN_SECS",
            parse: parsed,
        },
        /// resends per credential
        max_resends: u8 { default: Settings::default().max_resends, env: "OTP_MAX_RESENDS", parse: parsed },
        /// live credentials per session
        max_credentials: usize {
            default: Settings::default().max_credentials,
            env: "OTP_MAX_CREDENTIALS",
            parse: parsed,
        },
        /// bytes; keeps the cookie well under 4 KB
        max_credential_id_len: usize {
            default: Settings::default().max_credential_id_len,
            env: "OTP_MAX_CREDENTIAL_ID_LEN",
            parse: parsed,
        },
        /// key-encryption key rotation period (60 s to 366 days)
        kek_rotation_secs: u64 { default: 24 * 3600, env: "OTP_KEK_ROTATION_SECS", parse: parsed },
        /// per-call deadline of the validation hook, waiting for a call slot included
        validate_deadline_ms: u64 { default: 100, env: "OTP_VALIDATE_DEADLINE_MS", parse: parsed },
        /// deadline of a send, waiting for a call slot included; a failover chain of senders shares it
        send_deadline_ms: u64 { default: 10_000, env: "OTP_SEND_DEADLINE_MS", parse: parsed },
        /// per-call deadline of the final action
        final_deadline_ms: u64 { default: 1_000, env: "OTP_FINAL_DEADLINE_MS", parse: parsed },
        /// memory cap per plugin call
        plugin_memory_mib: usize { default: 64, env: "OTP_PLUGIN_MEMORY_MIB", parse: parsed },
        /// memory cap of the validation hook; defaults to `plugin_memory_mib`
        validate_memory_mib: Option<usize> { default: None, env: "OTP_VALIDATE_MEMORY_MIB", parse: some },
        /// memory cap of the sending hook; defaults to `plugin_memory_mib`
        send_memory_mib: Option<usize> { default: None, env: "OTP_SEND_MEMORY_MIB", parse: some },
        /// memory cap of the final action; defaults to `plugin_memory_mib`
        final_memory_mib: Option<usize> { default: None, env: "OTP_FINAL_MEMORY_MIB", parse: some },
        /// call slots of each hook; further calls wait for a slot until their deadline
        max_concurrent_plugin_calls: u32 {
            default: 256,
            env: "OTP_MAX_CONCURRENT_PLUGIN_CALLS",
            parse: parsed,
        },
        /// call slots of the validation hook; defaults to `max_concurrent_plugin_calls`
        validate_max_concurrent_calls: Option<u32> {
            default: None,
            env: "OTP_VALIDATE_MAX_CONCURRENT_CALLS",
            parse: some,
        },
        /// call slots of the sending hook; defaults to `max_concurrent_plugin_calls`
        send_max_concurrent_calls: Option<u32> {
            default: None,
            env: "OTP_SEND_MAX_CONCURRENT_CALLS",
            parse: some,
        },
        /// call slots of the final action; defaults to `max_concurrent_plugin_calls`
        final_max_concurrent_calls: Option<u32> {
            default: None,
            env: "OTP_FINAL_MAX_CONCURRENT_CALLS",
            parse: some,
        },
        /// per-call deadline of the events hook, waiting for a call slot included (the audit sink, one call at a time)
        events_deadline_ms: u64 { default: 5_000, env: "OTP_EVENTS_DEADLINE_MS", parse: parsed },
        /// memory cap of the events hook; defaults to `plugin_memory_mib`
        events_memory_mib: Option<usize> { default: None, env: "OTP_EVENTS_MEMORY_MIB", parse: some },
        /// audit events waiting for the sink; more are dropped and counted
        events_queue: usize { default: 10_000, env: "OTP_EVENTS_QUEUE", parse: parsed },
        /// the CloudEvents `source` of every audit event
        events_source: String { default: "/otp-server".into(), env: "OTP_EVENTS_SOURCE", parse: parsed },
        /// put credential ids into audit events as they are, instead of a keyed hash
        events_plain_credentials: bool {
            default: false,
            env: "OTP_EVENTS_PLAIN_CREDENTIALS",
            parse: flag,
        },
        /// variables a manifest's `${NAME}` may read besides `OTP_PLUGIN_*` (comma-separated; never the server's other `OTP_*` settings)
        plugin_env: Vec<String> { default: Vec::new(), env: "OTP_PLUGIN_ENV", parse: name_list },
        /// `[hooks]`: which plugin serves a hook that several plugins export
        hooks: HookTable { table },
        /// enables `POST /test/clock` for black-box tests; never allowed in production
        test_clock: bool { default: false, env: "OTP_TEST_CLOCK", parse: flag },
        /// serves the demo page `GET /demo`; unset: on in development, off in production
        demo: Option<bool> { default: None, env: "OTP_DEMO", parse: optional_flag },
        /// `memory`, or a `redis://` / `rediss://`, `redis+cluster://` or `redis+sentinel://` URL
        store: String { default: "memory".into(), env: "OTP_STORE", parse: parsed },
        /// prefix of every Redis key
        store_prefix: String { default: "otp:".into(), env: "OTP_STORE_PREFIX", parse: parsed },
        /// timeout of every Redis call
        store_timeout_ms: u64 { default: 500, env: "OTP_STORE_TIMEOUT_MS", parse: parsed },
        /// base64 of the 32-byte master key that wraps KEKs stored in Redis
        master_key: Option<String> { default: None, env: "OTP_MASTER_KEY", parse: some },
        /// a file holding the master key (base64), instead of `master_key`
        master_key_file: Option<PathBuf> { default: None, env: "OTP_MASTER_KEY_FILE", parse: some },
        /// while the master key is replaced: the previous one (base64), still accepted for opening stored KEKs
        master_key_previous: Option<String> { default: None, env: "OTP_MASTER_KEY_PREVIOUS", parse: some },
        /// a file holding the previous master key, instead of `master_key_previous`
        master_key_previous_file: Option<PathBuf> { default: None, env: "OTP_MASTER_KEY_PREVIOUS_FILE", parse: some },
        /// `[limits]`: abuse controls (declared in `crate::limits::config`)
        limits: LimitsTable { table },
    }
}

settings! {
    /// `[hooks]`: hook name → plugin name, for hooks that several plugins export.
    pub struct HookTable (HookSetting) {
        /// the plugin serving credential validation
        #[key = "credential-validation"]
        credential_validation: Option<String> {
            default: None,
            env: "OTP_HOOK_CREDENTIAL_VALIDATION",
            parse: some,
        },
        /// the sender of every channel without its own, or an ordered failover chain of them (`["twilio-sms", "backup-sms"]`; in the environment, names separated by commas)
        sending: Option<SenderNames> { default: None, env: "OTP_HOOK_SENDING", parse: sender_names },
        /// channel → its ordered failover chain of senders (`sms = ["twilio-sms", "backup-sms"]`; in the environment `sms=twilio-sms,backup-sms;email=sendgrid-email`)
        #[key = "sending-by-channel"]
        sending_by_channel: BTreeMap<String, SenderNames> {
            default: BTreeMap::new(),
            env: "OTP_HOOK_SENDING_BY_CHANNEL",
            parse: channel_senders,
        },
        /// the plugin running the final action
        #[key = "final-action"]
        final_action: Option<String> { default: None, env: "OTP_HOOK_FINAL_ACTION", parse: some },
        /// the plugin receiving audit events
        events: Option<String> { default: None, env: "OTP_HOOK_EVENTS", parse: some },
    }
}

/// Sender plugins in the order a send tries them: in TOML one name or an array of names.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "NameOrNames")]
pub struct SenderNames(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged, expecting = "a plugin name or an array of plugin names")]
enum NameOrNames {
    One(String),
    Many(Vec<String>),
}

impl From<NameOrNames> for SenderNames {
    fn from(names: NameOrNames) -> SenderNames {
        match names {
            NameOrNames::One(name) => SenderNames(vec![name]),
            NameOrNames::Many(names) => SenderNames(names),
        }
    }
}

impl SenderNames {
    /// The names, checked: at least one, none empty, none twice.
    fn checked(&self) -> Result<Vec<String>, String> {
        let names: Vec<String> = self.0.iter().map(|n| n.trim().to_string()).collect();
        if names.is_empty() {
            return Err("names no sender".into());
        }
        for (i, name) in names.iter().enumerate() {
            if name.is_empty() {
                return Err("has an empty sender name".into());
            }
            if names[..i].contains(name) {
                return Err(format!("names {name:?} twice"));
            }
        }
        Ok(names)
    }
}

/// `OTP_HOOK_SENDING`: names separated by commas.
fn sender_names(text: &str) -> Result<Option<SenderNames>, String> {
    Ok(Some(SenderNames(name_list(text)?)))
}

/// `OTP_HOOK_SENDING_BY_CHANNEL`: `CHANNEL=NAME,NAME;CHANNEL=NAME`.
fn channel_senders(text: &str) -> Result<BTreeMap<String, SenderNames>, String> {
    let mut chains = BTreeMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (channel, names) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?}: use CHANNEL=SENDER,SENDER;CHANNEL=SENDER"))?;
        let channel = channel.trim().to_string();
        if chains
            .insert(channel.clone(), SenderNames(name_list(names)?))
            .is_some()
        {
            return Err(format!("channel {channel:?} appears twice"));
        }
    }
    Ok(chains)
}

impl HookTable {
    /// The plugins and sender chains the table names, checked.
    fn choices(&self) -> Result<HookChoices, ConfigError> {
        let plugins = [
            (Hook::CredentialValidation, &self.credential_validation),
            (Hook::FinalAction, &self.final_action),
            (Hook::Events, &self.events),
        ]
        .into_iter()
        .filter_map(|(hook, plugin)| Some((hook, plugin.clone()?)))
        .collect();
        let senders = match &self.sending {
            None => Vec::new(),
            Some(names) => names
                .checked()
                .map_err(|e| invalid(HookSetting::sending.label(), e))?,
        };
        let mut channel_senders = BTreeMap::new();
        for (channel, names) in &self.sending_by_channel {
            let label = HookSetting::sending_by_channel.label();
            if channel.trim().is_empty() || channel.trim() != channel {
                return Err(invalid(label, format!("{channel:?} is not a channel name")));
            }
            let names = names
                .checked()
                .map_err(|e| invalid(label, format!("channel {channel}: {e}")))?;
            channel_senders.insert(channel.clone(), names);
        }
        Ok(HookChoices {
            plugins,
            senders,
            channel_senders,
        })
    }
}

/// A comma-separated list of names; blanks around them and empty entries are ignored.
fn name_list(text: &str) -> Result<Vec<String>, String> {
    Ok(text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect())
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("otp-server").join("wasmtime"))
}

/// A strict boolean that may be left unset (its default then depends on other settings).
fn optional_flag(text: &str) -> Result<Option<bool>, String> {
    flag(text).map(Some)
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub mode: Mode,
    pub cors_origin: Option<String>,
    pub plugins_dir: PathBuf,
    pub log: String,
    pub log_format: LogFormat,
    pub access_log: bool,
    pub otp: Settings,
    pub kek_rotation: Duration,
    pub edge: EdgeLimits,
    /// The admin listener; `None` when off (and then metrics are off too).
    pub admin: Option<AdminConfig>,
    pub runtime: RuntimeOptions,
    pub hook_choices: HookChoices,
    /// What `${NAME}` in a manifest may read.
    pub plugin_env: PluginEnv,
    pub test_clock: bool,
    /// Whether `GET /demo` serves the demo page.
    pub demo: bool,
    pub store: StoreConfig,
    pub events: EventOptions,
    pub limits: LimitsConfig,
}

/// Where the admin listener listens and the token it requires. Debug output never shows
/// the token.
#[derive(Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Required (and then present) when `listen` is not a loopback address.
    pub token: Option<String>,
}

impl AdminConfig {
    /// Whether requests must carry the token: the listener is reachable beyond this host.
    pub fn requires_token(&self) -> bool {
        !self.listen.ip().is_loopback()
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
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
        /// Base64 of the previous master key while it is being replaced.
        master_key_previous: Option<String>,
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
                    message: crate::toml_error::describe(&text, &e),
                })?
            }
            None => FileConfig::default(),
        };
        raw.apply_env(env)?;
        raw.validate()
    }
}

/// The longest key-encryption key rotation period, in seconds: 366 days.
const KEK_ROTATION_MAX_SECS: u64 = 366 * 24 * 3600;

/// `origin` as a browser's `Origin` header carries it (the WHATWG URL serialization of
/// its origin: scheme and host lowercase, IDN hosts in punycode, IP addresses in their
/// short form, no default port), or `None` when it is no http(s) origin at all (a path,
/// a query, user info, port 0).
fn serialized_origin(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && url.port() != Some(0);
    bare.then(|| url.origin().ascii_serialization())
}

fn invalid(name: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        message: message.into(),
    }
}

impl FileConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self
            .listen
            .parse()
            .map_err(|e| invalid(Setting::listen.label(), format!("{:?}: {e}", self.listen)))?;
        let admin = self.admin_config()?;
        let alphabet = match self.code_alphabet.as_str() {
            "alphanumeric" => Alphabet::LowerAlnum,
            "digits" => Alphabet::Digits,
            other => {
                return Err(invalid(
                    Setting::code_alphabet.label(),
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
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(invalid(
                Setting::log.label(),
                format!(
                    "{:?} is not a log filter such as info or otp_server=debug,warn: {error}",
                    self.log
                ),
            ));
        }
        otp.validate().map_err(otp_settings_error)?;
        // `__Host-Http-o=` plus `; Path=/; HttpOnly; SameSite=Strict; Secure; Expires=…`.
        crate::crypto::validate_cookie_budget(&otp, 120).map_err(|m| {
            invalid(
                format!(
                    "{} / {}",
                    Setting::max_credentials.label(),
                    Setting::max_credential_id_len.label()
                ),
                m,
            )
        })?;
        if let Some(origin) = &self.cors_origin {
            // "null" is the origin of sandboxed frames and data: documents, which any
            // page can make.
            if origin.is_empty()
                || origin == "*"
                || origin.eq_ignore_ascii_case("null")
                || origin.parse::<axum::http::HeaderValue>().is_err()
            {
                return Err(invalid(
                    Setting::cors_origin.label(),
                    format!("{origin:?}: give one origin such as https://app.example.com (credentials rule out \"*\" and \"null\")"),
                ));
            }
            // Browsers send the origin serialized (lowercase, no path, no default port)
            // and it is compared byte for byte: anything else would never match.
            match serialized_origin(origin) {
                Some(serialized) if serialized == *origin => {}
                Some(serialized) => {
                    return Err(invalid(
                        Setting::cors_origin.label(),
                        format!("{origin:?}: write it as browsers send it: {serialized:?}"),
                    ))
                }
                None => {
                    return Err(invalid(
                        Setting::cors_origin.label(),
                        format!("{origin:?}: an origin is http(s)://HOST[:PORT], with no path"),
                    ))
                }
            }
        }
        for (key, ms) in [
            (Setting::header_read_timeout_ms, self.header_read_timeout_ms),
            (Setting::body_read_timeout_ms, self.body_read_timeout_ms),
            (Setting::write_timeout_ms, self.write_timeout_ms),
        ] {
            if !(100..=600_000).contains(&ms) {
                return Err(invalid(key.label(), "must be between 100 and 600000 ms"));
            }
        }
        for (key, n) in [
            (Setting::max_connections, self.max_connections),
            (
                Setting::max_connections_per_client,
                self.max_connections_per_client,
            ),
        ] {
            if n == 0 {
                return Err(invalid(key.label(), "must be at least 1"));
            }
        }
        // A year at most: the period is used in milliseconds, and a key that old has
        // sealed more cookies than any rotation policy would let it.
        if !(60..=KEK_ROTATION_MAX_SECS).contains(&self.kek_rotation_secs) {
            return Err(invalid(
                Setting::kek_rotation_secs.label(),
                format!("must be from 60 to {KEK_ROTATION_MAX_SECS} (366 days)"),
            ));
        }
        for (key, ms) in [
            (Setting::validate_deadline_ms, self.validate_deadline_ms),
            (Setting::send_deadline_ms, self.send_deadline_ms),
            (Setting::final_deadline_ms, self.final_deadline_ms),
            (Setting::events_deadline_ms, self.events_deadline_ms),
        ] {
            if !(1..=120_000).contains(&ms) {
                return Err(invalid(key.label(), "must be between 1 and 120000"));
            }
        }
        let memory_mib = |key: Setting, value: Option<usize>| {
            let mib = value.unwrap_or(self.plugin_memory_mib);
            if (1..=4096).contains(&mib) {
                Ok(mib * 1024 * 1024)
            } else {
                Err(invalid(key.label(), "must be between 1 and 4096"))
            }
        };
        memory_mib(Setting::plugin_memory_mib, None)?;
        let validate_memory = memory_mib(Setting::validate_memory_mib, self.validate_memory_mib)?;
        let send_memory = memory_mib(Setting::send_memory_mib, self.send_memory_mib)?;
        let final_memory = memory_mib(Setting::final_memory_mib, self.final_memory_mib)?;
        let events_memory = memory_mib(Setting::events_memory_mib, self.events_memory_mib)?;
        let slots = |key: Setting, value: Option<u32>| {
            let slots = value.unwrap_or(self.max_concurrent_plugin_calls);
            if (1..=10_000).contains(&slots) {
                Ok(slots)
            } else {
                Err(invalid(key.label(), "must be between 1 and 10000"))
            }
        };
        slots(Setting::max_concurrent_plugin_calls, None)?;
        let validate_slots = slots(
            Setting::validate_max_concurrent_calls,
            self.validate_max_concurrent_calls,
        )?;
        let send_slots = slots(
            Setting::send_max_concurrent_calls,
            self.send_max_concurrent_calls,
        )?;
        let final_slots = slots(
            Setting::final_max_concurrent_calls,
            self.final_max_concurrent_calls,
        )?;
        if !(1..=1_000_000).contains(&self.events_queue) {
            return Err(invalid(
                Setting::events_queue.label(),
                "must be between 1 and 1000000",
            ));
        }
        let hook_choices = self.hooks.choices()?;
        if self.test_clock && self.env == Mode::Production {
            return Err(invalid(
                Setting::test_clock.label(),
                "is never allowed in production mode",
            ));
        }
        let store = self.store_config()?;
        let plugin_env = PluginEnv::from_process(self.plugin_env.iter().cloned())
            .map_err(|e| invalid(Setting::plugin_env.label(), e.to_string()))?;
        let abuse_limits = self.limits.validate()?;
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
            log_format: self.log_format,
            access_log: self.access_log,
            otp,
            kek_rotation: Duration::from_secs(self.kek_rotation_secs),
            admin,
            edge: EdgeLimits {
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
                write_timeout: Duration::from_millis(self.write_timeout_ms),
                max_connections: self.max_connections,
                max_connections_per_client: self.max_connections_per_client,
                shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            },
            runtime: RuntimeOptions {
                validate: limits(self.validate_deadline_ms, validate_memory),
                send: limits(self.send_deadline_ms, send_memory),
                final_action: limits(self.final_deadline_ms, final_memory),
                events: limits(self.events_deadline_ms, events_memory),
                validate_slots,
                send_slots,
                final_slots,
                cache_dir: self.cache_dir,
            },
            hook_choices,
            plugin_env,
            test_clock: self.test_clock,
            demo: self.demo.unwrap_or(self.env == Mode::Development),
            store,
            events: EventOptions {
                source: self.events_source,
                plain_credentials: self.events_plain_credentials,
                queue: self.events_queue,
            },
            limits: abuse_limits,
        })
    }

    /// The admin listener's address and token, checked: beyond loopback it needs a token
    /// of 16 characters or more, so metrics and key rotation are never open to the network.
    fn admin_config(&self) -> Result<Option<AdminConfig>, ConfigError> {
        let listen = self.admin_listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let listen: SocketAddr = listen.parse().map_err(|e| {
            invalid(
                Setting::admin_listen.label(),
                format!(
                    "{:?}: {e} (empty turns the admin listener off)",
                    self.admin_listen
                ),
            )
        })?;
        let token = self.admin_token.clone().filter(|t| !t.is_empty());
        if let Some(token) = &token {
            if token.chars().count() < 16 || token.chars().any(|c| c.is_whitespace()) {
                return Err(invalid(
                    Setting::admin_token.label(),
                    "must be at least 16 characters, without spaces",
                ));
            }
        }
        let admin = AdminConfig { listen, token };
        if admin.requires_token() && admin.token.is_none() {
            return Err(invalid(
                Setting::admin_token.label(),
                format!("required: the admin listener {listen} is reachable beyond loopback"),
            ));
        }
        Ok(Some(admin))
    }

    fn store_config(&self) -> Result<StoreConfig, ConfigError> {
        let url = self.store.trim();
        if url == "memory" {
            return Ok(StoreConfig::Memory);
        }
        if let Err(e) = crate::store::redis::RedisTarget::parse(url) {
            return Err(invalid(Setting::store.label(), e.to_string()));
        }
        if !(1..=60_000).contains(&self.store_timeout_ms) {
            return Err(invalid(
                Setting::store_timeout_ms.label(),
                "must be between 1 and 60000",
            ));
        }
        let master_key = match (&self.master_key, &self.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    Setting::master_key.label(),
                    "give the master key or a master key file, not both",
                ))
            }
            (Some(key), None) => key.clone(),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| {
                invalid(Setting::master_key_file.label(), format!("{}: {e}", path.display()))
            })?,
            (None, None) => {
                return Err(invalid(
                    Setting::master_key.label(),
                    "Redis mode needs a master key to wrap the shared key-encryption keys: \
                     set OTP_MASTER_KEY to base64 of 32 random bytes (e.g. `openssl rand -base64 32`) \
                     or OTP_MASTER_KEY_FILE to a file holding it",
                ))
            }
        };
        if let Err(e) = crate::crypto::MasterKey::from_base64(&master_key) {
            return Err(invalid(Setting::master_key.label(), e.to_string()));
        }
        let master_key_previous = match (&self.master_key_previous, &self.master_key_previous_file)
        {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    Setting::master_key_previous.label(),
                    "give the previous master key or its file, not both",
                ))
            }
            (Some(key), None) => Some(key.clone()),
            (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    Setting::master_key_previous_file.label(),
                    format!("{}: {e}", path.display()),
                )
            })?),
            (None, None) => None,
        };
        if let Some(Err(e)) = master_key_previous
            .as_deref()
            .map(crate::crypto::MasterKey::from_base64)
        {
            return Err(invalid(Setting::master_key_previous.label(), e.to_string()));
        }
        Ok(StoreConfig::Redis {
            url: url.to_string(),
            prefix: self.store_prefix.clone(),
            timeout: Duration::from_millis(self.store_timeout_ms),
            master_key,
            master_key_previous,
        })
    }
}

/// A protocol rule broken by the configuration, named as the configuration names it: the
/// setting (and its environment variable), durations in its unit (seconds).
fn otp_settings_error(error: crate::protocol::SettingsError) -> ConfigError {
    use crate::protocol::SettingsField as F;
    let (setting, in_seconds) = match error.field {
        F::CodeLength => (Setting::code_length, false),
        F::SessionMaxAge => (Setting::session_max_age_secs, true),
        F::MaxAttempts => (Setting::max_attempts, false),
        F::BlockAtAttemptsLeft => (Setting::block_at_attempts_left, false),
        F::BlockDuration => (Setting::block_secs, true),
        F::ResendCooldown => (Setting::resend_cooldown_secs, true),
        F::MaxCredentials => (Setting::max_credentials, false),
        F::MaxCredentialIdLen => (Setting::max_credential_id_len, false),
        F::MaxChannelLen => return invalid("max_channel_len", error.to_string()),
    };
    let message = error.rule.describe(|n| {
        if in_seconds {
            format!("{} s", n / 1000)
        } else {
            n.to_string()
        }
    });
    invalid(setting.label(), message)
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
        assert_eq!(c.hook_choices.senders, ["webhook"]);
        assert_eq!(c.otp.alphabet, Alphabet::Digits);
        assert_eq!(c.otp.code_length, 6);
        assert_eq!(c.runtime.send.memory_bytes, 16 * 1024 * 1024);
        assert_eq!(c.runtime.validate.memory_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn protocol_rules_are_reported_in_the_settings_own_names_and_units() {
        let err = Config::load(None, &env_of(&[("OTP_SESSION_MAX_AGE_SECS", "90000")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTP_SESSION_MAX_AGE_SECS"), "{err}");
        assert!(
            err.contains("between 1 s and 86400 s, got 90000 s"),
            "{err}"
        );
        assert!(!err.contains("_ms"), "{err}");
        let err = Config::load(
            None,
            &env_of(&[
                ("OTP_MAX_ATTEMPTS", "2"),
                ("OTP_BLOCK_AT_ATTEMPTS_LEFT", "2"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("OTP_BLOCK_AT_ATTEMPTS_LEFT"), "{err}");
        assert!(err.contains("must be below max_attempts (2)"), "{err}");
        let err = Config::load(None, &env_of(&[("OTP_RESEND_COOLDOWN_SECS", "100000")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("OTP_RESEND_COOLDOWN_SECS"), "{err}");
        assert!(err.contains("at most 86400 s"), "{err}");
    }

    #[test]
    fn cors_origin_is_the_origin_browsers_send() {
        for (written, serialized) in [
            ("https://app.example.com", Some("https://app.example.com")),
            ("https://App.Example.COM/", Some("https://app.example.com")),
            (
                "HTTPS://app.example.com:443",
                Some("https://app.example.com"),
            ),
            ("http://localhost:8080", Some("http://localhost:8080")),
            ("http://[::1]:8080", Some("http://[::1]:8080")),
            ("http://[::1]", Some("http://[::1]")),
            ("https://app.example.com/login", None),
            ("https://user@app.example.com", None),
            ("https://app.example.com:0", None),
            ("https://app.example.com:99999", None),
            (
                "https://app.example.com:0443",
                Some("https://app.example.com"),
            ),
            (
                "https://Bücher.example",
                Some("https://xn--bcher-kva.example"),
            ),
            ("http://[0:0:0:0:0:0:0:1]:8080", Some("http://[::1]:8080")),
            ("https://app.example.com?x=1", None),
            ("ftp://app.example.com", None),
            ("app.example.com", None),
        ] {
            assert_eq!(
                serialized_origin(written).as_deref(),
                serialized,
                "{written}"
            );
        }
        let err = Config::load(
            None,
            &env_of(&[("CORS_ORIGIN", "https://App.example.com/")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"https://app.example.com\""), "{err}");
        let c = Config::load(None, &env_of(&[("CORS_ORIGIN", "http://[::1]:5173")])).unwrap();
        assert_eq!(c.cors_origin.as_deref(), Some("http://[::1]:5173"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("OTP_LISTEN", "nowhere"),
            ("OTP_ENV", "staging"),
            ("OTP_MAX_ATTEMPTS", "many"),
            ("CORS_ORIGIN", "*"),
            ("CORS_ORIGIN", "null"),
            ("CORS_ORIGIN", "https://app.example.com/"),
            ("CORS_ORIGIN", "https://App.example.com"),
            ("CORS_ORIGIN", "https://app.example.com:443"),
            ("CORS_ORIGIN", "https://app.example.com/login"),
            ("CORS_ORIGIN", "app.example.com"),
            ("OTP_LOG", "otp_server=debg"),
            ("OTP_CODE_ALPHABET", "emoji"),
            ("OTP_FINAL_MEMORY_MIB", "0"),
            ("OTP_MAX_CREDENTIALS", "many"),
            ("OTP_TEST_CLOCK", "ture"),
            ("OTP_TEST_CLOCK", ""),
            ("OTP_SEND_MEMORY_MIB", "lots"),
            ("OTP_KEK_ROTATION_SECS", "59"),
            ("OTP_KEK_ROTATION_SECS", "18446744073709552"),
            ("OTP_STORE_TIMEOUT_MS", "-1"),
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
        let dir = crate::test_dir("config-file");
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
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn file_errors_name_the_place_but_never_quote_the_line() {
        let dir = crate::test_dir("config-secret");
        let secret = "c2VjcmV0LW1hc3Rlci1rZXktYnl0ZXMtMzItbG9uZw==";
        for (text, line, says) in [
            // A misspelt key (unknown field) and a secret of the wrong type.
            (
                format!("listen = \"127.0.0.1:7000\"\nmaster-key = \"{secret}\"\n"),
                2,
                "master-key",
            ),
            (
                format!("\nadmin_token = {}\n", 1234567890123456789u64),
                2,
                "string",
            ),
        ] {
            let file = dir.join("bad.toml");
            std::fs::write(&file, &text).unwrap();
            let err = Config::load(Some(&file), &env_of(&[]))
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains(secret) && !err.contains("1234567890123456789"),
                "{err}"
            );
            assert!(
                err.contains(&format!("line {line}, column 1")) && err.contains(says),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_errors_name_key_and_variable() {
        let err = Config::load(None, &env_of(&[("OTP_TEST_CLOCK", "ture")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("test_clock (OTP_TEST_CLOCK)"), "{err}");
        assert!(err.contains("\"ture\""), "{err}");
        for (value, expected) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            let c = Config::load(None, &env_of(&[("OTP_TEST_CLOCK", value)])).unwrap();
            assert_eq!(c.test_clock, expected, "{value}");
        }
        let err = Config::load(
            None,
            &env_of(&[("OTP_HOOK_SENDING", "x"), ("OTP_BLOCK_SECS", "2x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("block_secs (OTP_BLOCK_SECS)"), "{err}");
    }

    #[test]
    fn the_demo_is_on_in_development_only_unless_set() {
        let demo = |vars: &[(&str, &str)]| Config::load(None, &env_of(vars)).unwrap().demo;
        assert!(demo(&[]));
        assert!(!demo(&[("OTP_ENV", "production")]));
        assert!(demo(&[("OTP_ENV", "production"), ("OTP_DEMO", "1")]));
        assert!(!demo(&[("OTP_DEMO", "false")]));
        assert!(Config::load(None, &env_of(&[("OTP_DEMO", "on")])).is_err());
    }

    #[test]
    fn plugin_env_lists_variables_for_manifests_but_never_the_servers_own() {
        let c = Config::load(
            None,
            &env_of(&[("OTP_PLUGIN_ENV", " SMS_TOKEN, ,MAIL_KEY ")]),
        )
        .unwrap();
        assert!(c.plugin_env.allows("SMS_TOKEN") && c.plugin_env.allows("MAIL_KEY"));
        assert!(c.plugin_env.allows("OTP_PLUGIN_ANYTHING"));
        assert!(!c.plugin_env.allows("HOME") && !c.plugin_env.allows("OTP_MASTER_KEY"));
        let c = Config::load(None, &env_of(&[])).unwrap();
        assert!(!c.plugin_env.allows("SMS_TOKEN"));
        for list in [
            "OTP_MASTER_KEY",
            "A,OTP_MASTER_KEY",
            "OTP_MASTER_KEY_PREVIOUS,B",
        ] {
            let err = Config::load(None, &env_of(&[("OTP_PLUGIN_ENV", list)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("plugin_env (OTP_PLUGIN_ENV)")
                    && err.contains(list.split(',').find(|n| n.starts_with("OTP_")).unwrap()),
                "{err}"
            );
        }
        let err = Config::load(None, &env_of(&[("OTP_PLUGIN_ENV", "A-B")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("plugin_env") && err.contains("A-B"), "{err}");
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::load(None, &env_of(&[])).unwrap();
        assert!(
            c.cors_origin.is_none() && !c.test_clock && c.hook_choices == HookChoices::default()
        );
        assert!(matches!(c.store, StoreConfig::Memory));
        assert_eq!(c.plugins_dir, PathBuf::from("plugins/dist"));
        assert_eq!(c.log, "info");
        assert_eq!(c.kek_rotation, Duration::from_secs(86_400));
        assert_eq!(c.runtime.send.deadline, Duration::from_millis(10_000));
        assert_eq!(
            c.runtime.final_action.deadline,
            Duration::from_millis(1_000)
        );
        assert_eq!(c.runtime.final_action.memory_bytes, 64 * 1024 * 1024);
        assert_eq!(c.runtime.send_slots, 256);
        let c = Config::load(None, &env_of(&[("OTP_CACHE_DIR", "")])).unwrap();
        assert!(c.runtime.cache_dir.is_none());
        // The per-hook caps follow `plugin_memory_mib` unless set.
        let c = Config::load(
            None,
            &env_of(&[
                ("OTP_PLUGIN_MEMORY_MIB", "32"),
                ("OTP_FINAL_MEMORY_MIB", "8"),
            ]),
        )
        .unwrap();
        assert_eq!(c.runtime.validate.memory_bytes, 32 * 1024 * 1024);
        assert_eq!(c.runtime.final_action.memory_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn hooks_table_in_file_and_environment() {
        let dir = crate::test_dir("config-hooks");
        let file = dir.join("hooks.toml");
        std::fs::write(
            &file,
            "[hooks]\ncredential-validation = \"a\"\nfinal-action = \"b\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env_of(&[("OTP_HOOK_FINAL_ACTION", "c")])).unwrap();
        let plugins = &c.hook_choices.plugins;
        assert_eq!(plugins.get(&Hook::CredentialValidation).unwrap(), "a");
        assert_eq!(plugins.get(&Hook::FinalAction).unwrap(), "c");
        assert!(c.hook_choices.senders.is_empty());
        std::fs::write(&file, "[hooks]\nsend = \"a\"\n").unwrap();
        let err = Config::load(Some(&file), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("send"), "{err}");
        std::fs::write(&file, "test_clock = \"yes\"\n").unwrap();
        let err = Config::load(Some(&file), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("test_clock"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sender_chains_in_file_and_environment() {
        let dir = crate::test_dir("config-chains");
        let file = dir.join("chains.toml");
        std::fs::write(
            &file,
            "[hooks]\nsending = [\"primary\", \"backup\"]\n\
             [hooks.sending-by-channel]\nsms = [\"twilio-sms\", \"backup-sms\"]\n\
             email = \"sendgrid-email\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&file), &env_of(&[])).unwrap();
        assert_eq!(c.hook_choices.senders, ["primary", "backup"]);
        let by_channel = &c.hook_choices.channel_senders;
        assert_eq!(by_channel["sms"], ["twilio-sms", "backup-sms"]);
        assert_eq!(by_channel["email"], ["sendgrid-email"]);

        // The environment replaces the file's chains.
        let c = Config::load(
            Some(&file),
            &env_of(&[
                ("OTP_HOOK_SENDING", " a , b "),
                ("OTP_HOOK_SENDING_BY_CHANNEL", "sms = x, y ; push=z;"),
            ]),
        )
        .unwrap();
        assert_eq!(c.hook_choices.senders, ["a", "b"]);
        let by_channel = &c.hook_choices.channel_senders;
        assert_eq!(by_channel.len(), 2);
        assert_eq!(by_channel["sms"], ["x", "y"]);
        assert_eq!(by_channel["push"], ["z"]);

        for (name, value, says) in [
            ("OTP_HOOK_SENDING", "a,b,a", "twice"),
            ("OTP_HOOK_SENDING", " , ", "no sender"),
            ("OTP_HOOK_SENDING_BY_CHANNEL", "sms", "CHANNEL=SENDER"),
            ("OTP_HOOK_SENDING_BY_CHANNEL", "sms=a;sms=b", "twice"),
            ("OTP_HOOK_SENDING_BY_CHANNEL", "sms=", "no sender"),
            ("OTP_HOOK_SENDING_BY_CHANNEL", "=a", "not a channel name"),
        ] {
            let err = Config::load(None, &env_of(&[(name, value)]))
                .err()
                .unwrap_or_else(|| panic!("{name}={value:?} accepted"))
                .to_string();
            assert!(
                err.contains(name) && err.contains(says),
                "{name}={value:?}: {err}"
            );
        }
        std::fs::write(&file, "[hooks]\nsending = 3\n").unwrap();
        let err = Config::load(Some(&file), &env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a plugin name or an array"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The README's "Configuration" table lists exactly the declared settings: the
    /// first column is the TOML key, the second the environment variable.
    #[test]
    fn readme_lists_every_setting() {
        let mut declared = Vec::new();
        FileConfig::describe("", &mut declared);
        let declared: Vec<(String, String)> = declared
            .into_iter()
            .map(|s| (s.key, s.env.to_string()))
            .collect();
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let section = readme
            .split("\n## ")
            .find(|s| s.starts_with("Configuration\n"))
            .expect("README has a \"## Configuration\" section");
        let cell = |text: &str| text.trim().trim_matches('`').to_string();
        let documented: Vec<(String, String)> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').collect();
                (cell(cells[1]), cell(cells[2]))
            })
            .collect();
        let missing: Vec<_> = declared
            .iter()
            .filter(|d| !documented.contains(d))
            .collect();
        let extra: Vec<_> = documented
            .iter()
            .filter(|d| !declared.contains(d))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "README rows missing: {missing:?}; README rows not declared: {extra:?}"
        );
        assert_eq!(declared.len(), documented.len(), "a README row is repeated");
    }
}
