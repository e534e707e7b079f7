//! Levelled logging into otp-server's log through the `otp:plugin/log` import.
//!
//! Each call writes one line, tagged by the server with the plugin's name. When the SDK is
//! compiled for a non-wasm target (for example to unit-test a plugin's logic with plain
//! `cargo test`) there is no host to import from, so lines go to stderr instead.
//!
//! ```
//! otp_plugin_sdk::log::info("validated a credential");
//! otp_plugin_sdk::log::warn(&format!("slow provider: {} ms", 1200));
//! ```

use std::fmt;

/// The severity of a log line, from the most verbose to the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing, usually disabled.
    Trace,
    /// Diagnostic details useful while developing.
    Debug,
    /// Normal operational messages.
    Info,
    /// Something unexpected that the plugin recovered from.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// The level's lower-case name, as used by the WIT enum (`"info"`, `"warn"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Writes one line at `level` to the server log.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::__private::validator::otp::plugin::log as wit_log;
        let level = match level {
            Level::Trace => wit_log::Level::Trace,
            Level::Debug => wit_log::Level::Debug,
            Level::Info => wit_log::Level::Info,
            Level::Warn => wit_log::Level::Warn,
            Level::Error => wit_log::Level::Error,
        };
        wit_log::log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        eprintln!("[{level}] {message}");
    }
}

/// Writes one line at [`Level::Trace`].
pub fn trace(message: &str) {
    log(Level::Trace, message);
}

/// Writes one line at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// Writes one line at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// Writes one line at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// Writes one line at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names_match_the_wit_enum() {
        let names: Vec<_> = [
            Level::Trace,
            Level::Debug,
            Level::Info,
            Level::Warn,
            Level::Error,
        ]
        .iter()
        .map(|l| l.to_string())
        .collect();
        assert_eq!(names, ["trace", "debug", "info", "warn", "error"]);
        assert!(Level::Trace < Level::Error);
    }

    #[test]
    fn logging_natively_does_not_panic() {
        info("hello from a native test");
        error("and an error");
    }
}
