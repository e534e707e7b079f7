//! Which language a message is written in: the locales the request asks for, and the best
//! of the configured ones.
//!
//! Tags compare case-insensitively (`pt-br` is `pt-BR`). A requested tag matches a template
//! of the same tag first, then one of its bare language (`pt-BR` → `pt`), then any template
//! of that language (`pt-PT` → `pt-BR`): a Portuguese reader is better served by another
//! Portuguese than by the fallback. Nothing matching, the configured default language wins.

use otp_plugin_sdk::RequestContext;

/// The locales a request asks for, most wanted first.
///
/// Contract 0.1.0 hands plugins the raw `Accept-Language` header: this is the one place that
/// reads it, so moving to the host's own pick (contract 0.2.0's `locale`) changes only this.
pub fn requested(ctx: &RequestContext) -> Vec<String> {
    ctx.accept_language
        .as_deref()
        .map(parse_accept_language)
        .unwrap_or_default()
}

/// The language ranges of an `Accept-Language` value by descending quality (ties keep their
/// order); `*`, `q=0` and malformed entries are dropped. At most 16 are kept.
pub fn parse_accept_language(header: &str) -> Vec<String> {
    let mut ranges: Vec<(u16, String)> = header
        .split(',')
        .filter_map(|entry| {
            let mut parts = entry.split(';');
            let tag = parts.next()?.trim();
            if tag.is_empty()
                || tag == "*"
                || tag.len() > 35
                || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return None;
            }
            let mut quality = 1000;
            for param in parts {
                if let Some(q) = param.trim().strip_prefix("q=") {
                    quality = parse_quality(q)?;
                }
            }
            (quality > 0).then(|| (quality, tag.to_string()))
        })
        .take(16)
        .collect();
    ranges.sort_by_key(|r| std::cmp::Reverse(r.0));
    ranges.into_iter().map(|(_, tag)| tag).collect()
}

/// A `qvalue` (`0`, `0.5`, `1.000`) in thousandths.
fn parse_quality(q: &str) -> Option<u16> {
    let (whole, fraction) = q.split_once('.').unwrap_or((q, ""));
    if fraction.len() > 3 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The primary language subtag, lower case (`pt` for `pt-BR`).
pub fn language(tag: &str) -> String {
    tag.split('-').next().unwrap_or(tag).to_ascii_lowercase()
}

/// The best of `available` for the `requested` locales, else `default` when available.
pub fn best<'a>(available: &[&'a str], requested: &[String], default: &str) -> Option<&'a str> {
    for wanted in requested {
        let lang = language(wanted);
        let found = available
            .iter()
            .find(|tag| tag.eq_ignore_ascii_case(wanted))
            .or_else(|| available.iter().find(|tag| tag.eq_ignore_ascii_case(&lang)))
            .or_else(|| available.iter().find(|tag| language(tag) == lang));
        if let Some(tag) = found {
            return Some(tag);
        }
    }
    available
        .iter()
        .find(|tag| tag.eq_ignore_ascii_case(default))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_by_quality() {
        assert_eq!(
            parse_accept_language("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5"),
            ["fr-CH", "fr", "en", "de"]
        );
        assert_eq!(
            parse_accept_language("en;q=0.1,pt-BR,de;q=0"),
            ["pt-BR", "en"]
        );
        assert_eq!(parse_accept_language("da, en-gb;q=0.8"), ["da", "en-gb"]);
        // Malformed entries are skipped, not fatal.
        assert_eq!(
            parse_accept_language("x;q=2, <script>, ;q=1, es;q=0.50"),
            ["es"]
        );
        assert!(parse_accept_language("").is_empty());
        assert_eq!(parse_accept_language(&"en,".repeat(100)).len(), 16);
    }

    #[test]
    fn requested_from_the_context() {
        let ctx = RequestContext {
            accept_language: Some("de-AT,de;q=0.9".into()),
            ..RequestContext::default()
        };
        assert_eq!(requested(&ctx), ["de-AT", "de"]);
        assert!(requested(&RequestContext::default()).is_empty());
    }

    #[test]
    fn best_match() {
        let available = ["en", "pt-BR", "de", "fr-CA"];
        let ask = |tags: &[&str]| -> Vec<String> { tags.iter().map(|t| t.to_string()).collect() };
        assert_eq!(best(&available, &ask(&["pt-br"]), "en"), Some("pt-BR"));
        assert_eq!(best(&available, &ask(&["de-CH"]), "en"), Some("de"));
        assert_eq!(best(&available, &ask(&["pt-PT"]), "en"), Some("pt-BR"));
        assert_eq!(best(&available, &ask(&["fr"]), "en"), Some("fr-CA"));
        // The first requested language that has a template wins over later ones.
        assert_eq!(
            best(&available, &ask(&["ja", "de", "en"]), "en"),
            Some("de")
        );
        assert_eq!(best(&available, &ask(&["ja"]), "de"), Some("de"));
        assert_eq!(best(&available, &ask(&[]), "EN"), Some("en"));
        assert_eq!(best(&available, &ask(&["ja"]), "ko"), None);
    }
}
