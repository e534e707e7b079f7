//! How many SMS a text costs: GSM 03.38 (GSM-7) or UCS-2, and the number of segments.
//!
//! A single SMS carries 140 bytes: 160 characters of the GSM-7 alphabet, or 70 UTF-16 code
//! units once a single character falls outside it (the whole message then switches to
//! UCS-2). Longer texts are split into concatenated segments that each lose room to a
//! header: 153 GSM-7 characters or 67 UTF-16 units per segment. The characters of the GSM-7
//! extension table (`{ } [ ] ~ \ | ^ €` and form feed) take two septets each, and neither an
//! escape pair nor a surrogate pair is split between two segments.

/// The GSM 03.38 default alphabet (one septet each), in table order.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table (an escape septet plus one: two septets each).
const EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// The character set a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38, 7 bits per character.
    Gsm7,
    /// UTF-16 (UCS-2 on the air), needed as soon as one character is outside GSM-7.
    Ucs2,
}

impl Encoding {
    /// `"GSM-7"` or `"UCS-2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// The cost of a text as SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// How many SMS it is sent as (at least 1).
    pub count: usize,
}

/// The septets a character takes in GSM-7, or `None` outside the alphabet.
fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Whether a character can be sent in GSM-7.
pub fn is_gsm7(c: char) -> bool {
    septets(c).is_some()
}

/// The encoding, size and number of segments of `text`.
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<usize>> = text.chars().map(septets).collect();
    let (encoding, costs, single, multi) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs, 160, 153),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            70,
            67,
        ),
    };
    let units = costs.iter().sum();
    let count = if units <= single {
        1
    } else {
        // Fill each segment greedily; a character that does not fit opens the next one.
        let mut count = 1;
        let mut used = 0;
        for cost in costs {
            if used + cost > multi {
                count += 1;
                used = 0;
            }
            used += cost;
        }
        count
    };
    Segments {
        encoding,
        units,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alphabet_has_127_plus_10_characters() {
        assert_eq!(BASIC.chars().count(), 127, "128 minus the escape code");
        assert_eq!(EXTENSION.chars().count(), 10);
        assert!(is_gsm7('é') && is_gsm7('Ñ') && is_gsm7('€'));
        assert!(!is_gsm7('ã') && !is_gsm7('ç') && !is_gsm7('á') && !is_gsm7('😀'));
    }

    #[test]
    fn gsm7_limits() {
        let one = "a".repeat(160);
        assert_eq!(
            segments(&one),
            Segments {
                encoding: Encoding::Gsm7,
                units: 160,
                count: 1
            }
        );
        assert_eq!(segments(&"a".repeat(161)).count, 2);
        assert_eq!(segments(&"a".repeat(306)).count, 2);
        assert_eq!(segments(&"a".repeat(307)).count, 3);
        // Extension characters take two septets.
        assert_eq!(segments(&"€".repeat(80)).units, 160);
        assert_eq!(segments(&"€".repeat(80)).count, 1);
        assert_eq!(segments(&format!("{}€", "a".repeat(159))).count, 2);
        // An escape pair is never split: 152 + 2 does not fit in 153.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(segments(&text).units, 164);
        assert_eq!(segments(&text).count, 2);
        assert_eq!(segments("").count, 1);
    }

    #[test]
    fn ucs2_limits() {
        let s = segments(&format!("{}ã", "a".repeat(69)));
        assert_eq!(
            s,
            Segments {
                encoding: Encoding::Ucs2,
                units: 70,
                count: 1
            }
        );
        assert_eq!(segments(&format!("{}ã", "a".repeat(70))).count, 2);
        assert_eq!(segments(&"ã".repeat(134)).count, 2);
        assert_eq!(segments(&"ã".repeat(135)).count, 3);
        // An emoji is two UTF-16 units.
        assert_eq!(segments("😀").units, 2);
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
    }
}
