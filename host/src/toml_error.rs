//! TOML errors told without the text they are about, for the server's configuration
//! file and plugin manifests alike. The parser's own report quotes the offending line,
//! and serde's "invalid type/value" messages quote the value; either may be a secret (a
//! misspelt `master-key = "…"`, a token written as a number, a manifest `[config]`
//! value), and these errors end up in logs and on terminals.

/// `error` of parsing `text`, as "line L, column C (key): message": the key when the
/// line's key looks like a setting's name (lowercase letters, `_` and `.`, as every
/// setting and manifest field is), and any value in the message left out.
pub fn describe(text: &str, error: &toml::de::Error) -> String {
    let mut message = error.message().to_string();
    if let Some(kind) = message.strip_prefix("invalid ") {
        // "invalid type: string \"…\", expected a boolean": keep what was expected.
        let kind = kind.split(':').next().unwrap_or_default();
        message = match message.rsplit_once(", expected ") {
            Some((_, expected)) => format!("invalid {kind}, expected {expected}"),
            None => format!("invalid {kind}"),
        };
    }
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    let column = before[line_start..].chars().count() + 1;
    let key = text[line_start..]
        .lines()
        .next()
        .and_then(|l| l.split_once('='))
        .map(|(key, _)| key.trim())
        .filter(|key| {
            (1..=64).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.')
        });
    match key {
        Some(key) => format!("line {line}, column {column} ({key}): {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}
