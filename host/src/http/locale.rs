//! The client's preferred language from `Accept-Language` (RFC 9110 §12.5.4): the tag
//! with the highest quality value, earlier tags winning ties, in canonical case
//! (`pt-br` → `pt-BR`). Wildcards, malformed entries and `q=0` are skipped. Plugins get
//! the result as `request-context.locale` and choose their own best template from it.

/// The preferred language tag of an `Accept-Language` value, if it names one.
pub fn preferred(header: &str) -> Option<String> {
    let mut best: Option<(u16, &str)> = None;
    for entry in header.split(',').take(32) {
        let mut parts = entry.split(';');
        let tag = parts.next().unwrap_or("").trim();
        if tag == "*" || !is_language_tag(tag) {
            continue;
        }
        let quality = parts
            .find_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .map_or(Some(1000), parse_quality);
        let Some(quality) = quality else { continue };
        if quality > 0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, tag));
        }
    }
    best.map(|(_, tag)| canonical(tag))
}

/// `1*8ALPHA *("-" 1*8alphanum)`, at most 35 bytes.
fn is_language_tag(tag: &str) -> bool {
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or("");
    tag.len() <= 35
        && (1..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A quality value in thousandths: `0`, `0.5`, `1`, `1.000`; `None` if malformed.
fn parse_quality(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Language lower case, two-letter regions upper case, four-letter scripts title case.
fn canonical(tag: &str) -> String {
    tag.split('-')
        .enumerate()
        .map(|(i, s)| match (i, s.len()) {
            (0, _) => s.to_ascii_lowercase(),
            (_, 2) => s.to_ascii_uppercase(),
            (_, 4) => {
                let lower = s.to_ascii_lowercase();
                lower[..1].to_ascii_uppercase() + &lower[1..]
            }
            _ => s.to_ascii_lowercase(),
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::preferred;

    #[test]
    fn the_highest_quality_wins_and_ties_go_to_the_first() {
        assert_eq!(
            preferred("da, en-gb;q=0.8, en;q=0.7").as_deref(),
            Some("da")
        );
        assert_eq!(preferred("en;q=0.5, pt-br;q=0.9").as_deref(), Some("pt-BR"));
        assert_eq!(preferred("fr;q=0.8, de;q=0.8").as_deref(), Some("fr"));
        assert_eq!(preferred("zh-hant-tw").as_deref(), Some("zh-Hant-TW"));
    }

    #[test]
    fn wildcards_zero_quality_and_garbage_name_nothing() {
        assert_eq!(preferred("*"), None);
        assert_eq!(preferred("en;q=0"), None);
        assert_eq!(preferred("en;q=2, fr;q=abc, <script>"), None);
        assert_eq!(preferred(""), None);
        assert_eq!(preferred("*;q=1, es;q=0.1").as_deref(), Some("es"));
    }
}
