//! The machinery behind "each setting declared once": the [`settings!`] macro turns one
//! declaration per setting — TOML key, environment variable, default, parser and doc line —
//! into the TOML struct (serde, unknown keys rejected), its `Default`, the environment
//! overrides, a label for error messages and the list the README table is checked against.
//!
//! A declaration looks like this (see `config.rs` for the real ones):
//!
//! ```ignore
//! settings! {
//!     /// The whole configuration as the TOML file spells it.
//!     pub struct FileConfig (Setting) {
//!         /// address and port
//!         listen: String { default: "127.0.0.1:8080".into(), env: "OTP_LISTEN", parse: parsed },
//!         /// `[hooks]`: which plugin serves a hook that several plugins export
//!         hooks: HookTable { table },
//!     }
//! }
//! ```
//!
//! - `FileConfig` is the generated struct (every field `pub`, `#[serde(default,
//!   deny_unknown_fields)]`); `Setting` is a generated enum with one variant per field, so
//!   `Setting::listen.label()` gives `listen (OTP_LISTEN)` for a validation message without
//!   retyping either name.
//! - The `///` lines (at least one) are the setting's doc; `#[key = "final-action"]` (after the doc lines)
//!   gives a TOML key that is not a Rust identifier; otherwise the key is the field name.
//! - `parse:` turns the environment variable's text into the field's type; the TOML side
//!   is parsed by serde from the field's type. The parsers are below ([`parsed`], [`some`],
//!   [`path_or_none`], [`flag`]) or any `fn(&str) -> Result<T, String>`. A value that does
//!   not parse stops start-up with an error naming the key and the variable.
//! - `{ table }` makes the field a sub-table (`[hooks]`): its type is another `settings!`
//!   struct, its default is that struct's default, its environment overrides are its own
//!   settings' variables, and its keys are listed as `hooks.KEY` (valid TOML dotted keys).

use super::ConfigError;
use std::path::PathBuf;
use std::str::FromStr;

/// One declared setting, as the README's configuration table lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SettingDoc {
    /// The TOML key; `table.key` for a key inside a sub-table.
    pub key: String,
    /// The environment variable that overrides it.
    pub env: &'static str,
    /// The doc line of the declaration.
    pub doc: String,
}

/// A group of settings declared with [`settings!`]: the top level or a sub-table.
pub trait SettingTable: Default {
    /// Overrides the settings whose environment variable is set.
    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError>;
    /// Appends every setting (sub-tables included), keys prefixed with `prefix`.
    fn describe(prefix: &str, out: &mut Vec<SettingDoc>);
}

/// Reads the variable `name` and parses it; an error names `key (name)`.
pub fn read_env<T>(
    env: &dyn Fn(&str) -> Option<String>,
    key: &str,
    name: &str,
    parser: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = env(name) else {
        return Ok(None);
    };
    parser(&value)
        .map(Some)
        .map_err(|message| ConfigError::Invalid {
            name: format!("{key} ({name})"),
            message: format!("{value:?} is not valid: {message}"),
        })
}

/// Any `FromStr` type, surrounding blanks ignored.
pub fn parsed<T: FromStr>(text: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    text.trim().parse().map_err(|e: T::Err| e.to_string())
}

/// An optional setting: a set variable gives `Some` of the parsed value.
pub fn some<T: FromStr>(text: &str) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    parsed(text).map(Some)
}

/// A path, or none when the variable is set but empty (e.g. `OTP_CACHE_DIR=` disables).
pub fn path_or_none(text: &str) -> Result<Option<PathBuf>, String> {
    let text = text.trim();
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

/// A boolean, strictly: `true`/`1`/`yes` or `false`/`0`/`no`; anything else is an error
/// (a typo never silently means false).
pub fn flag(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("use true or false (or 1 / 0)".into()),
    }
}

/// Declares a table of settings; see the module doc for the syntax.
macro_rules! settings {
    // The TOML key of a field: the `#[key = ...]` override, or the field's name.
    (@key $key:literal, $field:ident) => { $key };
    (@key , $field:ident) => { stringify!($field) };

    (@default default: $default:expr, env: $env:literal, parse: $parse:expr $(,)?) => { $default };
    (@default table) => { Default::default() };

    (@apply $self:ident, $env_fn:ident, $field:ident, $key:expr,
        default: $default:expr, env: $env:literal, parse: $parse:expr $(,)?) => {
        if let Some(value) = $crate::config::table::read_env($env_fn, $key, $env, $parse)? {
            $self.$field = value;
        }
    };
    (@apply $self:ident, $env_fn:ident, $field:ident, $key:expr, table) => {
        $crate::config::table::SettingTable::apply_env(&mut $self.$field, $env_fn)?;
    };

    (@describe $out:ident, $prefix:ident, $ty:ty, $key:expr, $doc:expr,
        default: $default:expr, env: $env:literal, parse: $parse:expr $(,)?) => {
        $out.push($crate::config::table::SettingDoc {
            key: format!("{}{}", $prefix, $key),
            env: $env,
            doc: $doc,
        });
    };
    (@describe $out:ident, $prefix:ident, $ty:ty, $key:expr, $doc:expr, table) => {
        <$ty as $crate::config::table::SettingTable>::describe(
            &format!("{}{}.", $prefix, $key),
            $out,
        );
    };

    (@label $key:expr, default: $default:expr, env: $env:literal, parse: $parse:expr $(,)?) => {
        format!("{} ({})", $key, $env)
    };
    (@label $key:expr, table) => { String::from($key) };

    (
        $(#[doc = $table_doc:literal])*
        pub struct $name:ident ($keys:ident) {
            $(
                $(#[doc = $doc:literal])+
                $(#[key = $key:literal])?
                $field:ident : $ty:ty { $($spec:tt)* }
            ),* $(,)?
        }
    ) => {
        $(#[doc = $table_doc])*
        #[derive(Clone, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                $(#[serde(rename = $key)])?
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $crate::config::table::settings!(@default $($spec)*),)*
                }
            }
        }

        impl $crate::config::table::SettingTable for $name {
            fn apply_env(
                &mut self,
                env: &dyn Fn(&str) -> Option<String>,
            ) -> Result<(), $crate::config::ConfigError> {
                $(
                    $crate::config::table::settings!(
                        @apply self, env, $field,
                        $crate::config::table::settings!(@key $($key)?, $field),
                        $($spec)*
                    );
                )*
                Ok(())
            }

            fn describe(prefix: &str, out: &mut Vec<$crate::config::table::SettingDoc>) {
                $(
                    $crate::config::table::settings!(
                        @describe out, prefix, $ty,
                        $crate::config::table::settings!(@key $($key)?, $field),
                        [$($doc),*].iter().map(|line: &&str| line.trim()).collect::<Vec<_>>().join(" "),
                        $($spec)*
                    );
                )*
            }
        }

        #[doc = concat!("The settings of [`", stringify!($name), "`], one variant per field, for error messages.")]
        #[allow(non_camel_case_types, dead_code)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $keys {
            $($field,)*
        }

        impl $keys {
            /// `key (ENV_NAME)`, as validation messages name a setting.
            pub fn label(self) -> String {
                match self {
                    $(
                        $keys::$field => $crate::config::table::settings!(
                            @label $crate::config::table::settings!(@key $($key)?, $field),
                            $($spec)*
                        ),
                    )*
                }
            }
        }
    };
}
pub(crate) use settings;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_strict() {
        for yes in ["true", "1", "yes", " true "] {
            assert_eq!(flag(yes), Ok(true), "{yes}");
        }
        for no in ["false", "0", "no"] {
            assert_eq!(flag(no), Ok(false), "{no}");
        }
        for typo in ["ture", "", "TRUE1", "y"] {
            assert!(flag(typo).is_err(), "{typo}");
        }
    }

    #[test]
    fn errors_name_key_and_variable() {
        let env = |name: &str| (name == "OTP_X").then(|| "many".to_string());
        let err = read_env(&env, "x", "OTP_X", parsed::<u8>)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("x (OTP_X)") && err.contains("\"many\""),
            "{err}"
        );
        assert_eq!(read_env(&env, "y", "OTP_Y", parsed::<u8>).unwrap(), None);
        assert_eq!(path_or_none("").unwrap(), None);
        assert_eq!(
            path_or_none("/tmp/c").unwrap(),
            Some(PathBuf::from("/tmp/c"))
        );
    }
}
