//! Plugin-provided text on its way into the host's log: escaped and bounded.
//!
//! A plugin chooses its log lines, its stdout and stderr, the reasons it rejects a
//! credential or fails a send, a final action's error message — and, through function
//! names in its backtraces, even parts of a trap message. None of that may forge a log
//! line or flood the log, so every path that logs such text passes it through
//! [`loggable`] first: control characters (newline, carriage return, escape, …), Unicode
//! line and paragraph separators and bidirectional overrides are written as escapes
//! (`\n`, `\u{1b}`), and whatever goes beyond [`MAX_LOGGED_BYTES`] is cut with a visible
//! marker that says how much was dropped. A backslash stays as it is: a plugin writing
//! `\n` itself gets those two characters on its own line, tagged with its name — it
//! cannot start a new line — and credential ids (JSON texts, full of backslashes) stay
//! searchable in the log exactly as they are.

use std::fmt::Write;

/// At most this many bytes of one plugin string reach the log (escapes included).
pub const MAX_LOGGED_BYTES: usize = 2048;

/// `raw`, escaped so that it stays on one log line, and cut at [`MAX_LOGGED_BYTES`].
pub fn loggable(raw: &str) -> String {
    // The common case, a short line of printable ASCII, is copied as it is.
    if raw.len() <= MAX_LOGGED_BYTES && raw.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return raw.to_string();
    }
    bounded(raw, MAX_LOGGED_BYTES)
}

/// [`loggable`] with an explicit bound (for tests).
fn bounded(raw: &str, max: usize) -> String {
    let mut out = String::with_capacity(raw.len().min(max) + 32);
    for (at, c) in raw.char_indices() {
        let before = out.len();
        escape_into(&mut out, c);
        if out.len() > max {
            out.truncate(before);
            let dropped = raw.len() - at;
            let _ = write!(out, "… [cut: {dropped} bytes dropped]");
            return out;
        }
    }
    out
}

fn escape_into(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// Characters that could end a line, rewrite what a terminal shows, or reorder the text
/// around them: C0 and C1 controls, DEL, line/paragraph separators, bidi controls.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_unchanged() {
        assert_eq!(
            loggable("credential rejected: no @"),
            "credential rejected: no @"
        );
        assert_eq!(loggable("größe ✓ 名前"), "größe ✓ 名前");
        assert_eq!(loggable(""), "");
    }

    #[test]
    fn line_breaks_and_controls_are_escaped() {
        assert_eq!(
            loggable("bad\n2026-12-03T00:00:00Z  INFO forged"),
            "bad\\n2026-12-03T00:00:00Z  INFO forged"
        );
        assert_eq!(loggable("a\r\nb\tc"), "a\\r\\nb\\tc");
        assert_eq!(loggable("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(loggable("x\u{0}y\u{7f}z\u{85}"), "x\\u{0}y\\u{7f}z\\u{85}");
        assert_eq!(loggable("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
        assert_eq!(loggable("back\\slash \\n"), "back\\slash \\n");
        assert!(!loggable("\n\r\u{b}\u{c}\u{1c}\u{2029}").contains(['\n', '\r']));
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        let raw = "x".repeat(5000);
        let out = loggable(&raw);
        assert!(out.starts_with(&"x".repeat(MAX_LOGGED_BYTES)));
        assert!(out.ends_with("… [cut: 2952 bytes dropped]"), "{out}");
        assert_eq!(
            loggable(&"y".repeat(MAX_LOGGED_BYTES)),
            "y".repeat(MAX_LOGGED_BYTES)
        );
    }

    #[test]
    fn the_bound_counts_escapes_and_never_splits_one() {
        // Each newline becomes two bytes: five of them fit in 10, the rest are dropped.
        assert_eq!(
            bounded("\n\n\n\n\n\n\n", 10),
            "\\n\\n\\n\\n\\n… [cut: 2 bytes dropped]"
        );
        // A three-byte character that does not fit is dropped whole.
        assert_eq!(bounded("ab€", 4), "ab… [cut: 3 bytes dropped]");
        assert_eq!(bounded("\u{1b}", 3), "… [cut: 1 bytes dropped]");
    }
}
