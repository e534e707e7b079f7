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
    if let Some(rest) = message.strip_prefix("invalid ") {
        // "invalid type: string \"…\", expected a boolean": keep the kind of mistake
        // and what was expected, drop what was found.
        let (found, expected) = match rest.split_once(", expected ") {
            Some((found, expected)) => (found, Some(expected)),
            None => (rest, None),
        };
        let kind = found.split(':').next().unwrap_or_default();
        message = match expected {
            Some(expected) => format!("invalid {kind}, expected {}", expected.trim_end()),
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

#[cfg(test)]
mod tests {
    use super::describe;

    fn error_of(text: &str) -> String {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct File {
            flag: Option<bool>,
            key: Option<String>,
        }
        describe(text, &toml::from_str::<File>(text).unwrap_err())
    }

    #[test]
    fn values_are_never_quoted_and_nothing_is_said_twice() {
        let e = error_of("flag = \"s3cret\"\n");
        assert_eq!(
            e,
            "line 1, column 8 (flag): invalid type, expected a boolean"
        );
        let e = error_of("\nkey = tru\n");
        assert_eq!(
            e,
            "line 2, column 7 (key): invalid boolean, expected `true`"
        );
    }
}
