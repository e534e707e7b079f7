//! The provider plugins' settings: the manifest's `[config]` values, read once per call.
//!
//! Keys every provider plugin understands: `api_base` (the provider's API root, so tests and
//! proxies can point elsewhere; the manifest's `[outbound] allow` must cover it),
//! `timeout_ms` (shortens the manifest's outbound connect and first-byte timeouts),
//! `app_name` and `default_locale` (see [`crate::template`]). Errors name the key, never a
//! value: values include secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A missing or malformed setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    key: String,
    message: String,
}

impl ConfigError {
    /// `key` is set to something unusable.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// `key` is not set.
    pub fn missing(key: &str) -> ConfigError {
        ConfigError::invalid(key, "is not set")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[config] {} {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A plugin's `[config]` values.
#[derive(Clone, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
}

// Values are secrets: show the keys only.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.values.keys()).finish()
    }
}

impl Config {
    /// The values of this plugin's manifest (one host call).
    pub fn from_manifest() -> Config {
        Config::from_pairs(otp_plugin_sdk::config::get_all())
    }

    /// Values from pairs (tests).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Config {
        Config {
            values: pairs.into_iter().collect(),
        }
    }

    /// The value of `key`, if set and not blank: a blank optional value (say, an unset
    /// variable substituted into the manifest) is not sent to a provider as an empty field.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// The value of `key`, which must be set and not blank.
    pub fn require(&self, key: &str) -> Result<&str, ConfigError> {
        match self.values.get(key).map(String::as_str) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            Some(_) => Err(ConfigError::invalid(key, "is empty")),
            None => Err(ConfigError::missing(key)),
        }
    }

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.values
            .range(prefix.to_string()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `api_base` without a trailing slash, or `default`; an `http(s)://` URL.
    pub fn api_base(&self, default: &str) -> Result<String, ConfigError> {
        let base = self
            .get("api_base")
            .unwrap_or(default)
            .trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(ConfigError::invalid(
                "api_base",
                "must start with https:// (or http:// for a local test server)",
            ));
        }
        Ok(base.to_string())
    }

    /// `timeout_ms`, if set.
    pub fn timeout(&self) -> Result<Option<Duration>, ConfigError> {
        self.get("timeout_ms")
            .map(|v| match v.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                _ => Err(ConfigError::invalid(
                    "timeout_ms",
                    "must be a positive number of milliseconds",
                )),
            })
            .transpose()
    }

    /// A yes/no setting (`true` / `false`), `default` when unset.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(ConfigError::invalid(key, "must be true or false")),
        }
    }

    /// A positive whole number, `default` when unset.
    pub fn count(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(ConfigError::invalid(key, "must be a positive whole number")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn lookups_and_errors_name_the_key_not_the_value() {
        let c = config(&[
            ("token", "s3cret"),
            ("blank", " "),
            ("template.en", "a"),
            ("template.pt-BR", "b"),
            ("templatex", "c"),
        ]);
        assert_eq!(c.require("token"), Ok("s3cret"));
        let e = c.require("missing").unwrap_err().to_string();
        assert_eq!(e, "[config] missing is not set");
        assert!(c
            .require("blank")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        // An optional blank value is no value.
        assert_eq!(c.get("blank"), None);
        assert_eq!(c.get("token"), Some("s3cret"));
        let keys: Vec<_> = c.with_prefix("template.").map(|(k, _)| k).collect();
        assert_eq!(keys, ["template.en", "template.pt-BR"]);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn typed_values() {
        let c = config(&[
            ("api_base", "http://127.0.0.1:9/"),
            ("timeout_ms", "250"),
            ("yes", "true"),
            ("n", "3"),
        ]);
        assert_eq!(c.api_base("https://x").unwrap(), "http://127.0.0.1:9");
        assert_eq!(config(&[]).api_base("https://x/").unwrap(), "https://x");
        assert!(config(&[("api_base", "ftp://x")])
            .api_base("https://x")
            .is_err());
        assert_eq!(c.timeout().unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(config(&[]).timeout().unwrap(), None);
        assert!(config(&[("timeout_ms", "0")]).timeout().is_err());
        assert_eq!(c.flag("yes", false), Ok(true));
        assert_eq!(c.flag("unset", false), Ok(false));
        assert!(config(&[("f", "yes")]).flag("f", false).is_err());
        assert_eq!(c.count("n", 1), Ok(3));
        assert_eq!(c.count("unset", 1), Ok(1));
        assert!(config(&[("n", "0")]).count("n", 1).is_err());
    }
}
