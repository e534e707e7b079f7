//! The destination group of a normalized credential, which the server's abuse limits
//! and fraud guard count per: `email:<domain>` for an email address, `sms:+<country
//! calling code>` for an E.164 phone number (`+447700900123` → `sms:+44`).
//!
//! Country calling codes are prefix-free: 1 and 7 are the only one-digit codes, the
//! two-digit ones are listed below (ITU-T E.164 assignments), every other code has three
//! digits.

const TWO_DIGIT_CODES: [&str; 44] = [
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// The group of a credential id as [`crate::normalize::parse_body`] returns it.
pub fn destination_group(id: &str, channel: &str) -> String {
    match channel {
        "sms" => format!("sms:+{}", calling_code(id.trim_start_matches('+'))),
        _ => format!(
            "{channel}:{}",
            id.rsplit_once('@').map_or(id, |(_, domain)| domain)
        ),
    }
}

/// The country calling code at the start of an E.164 number's digits.
fn calling_code(digits: &str) -> &str {
    let take = match digits.as_bytes().first() {
        Some(b'1' | b'7') => 1,
        _ if TWO_DIGIT_CODES.iter().any(|code| digits.starts_with(code)) => 2,
        _ => 3,
    };
    &digits[..take.min(digits.len())]
}

#[cfg(test)]
mod tests {
    use super::destination_group;

    #[test]
    fn phone_numbers_group_by_country_calling_code() {
        assert_eq!(destination_group("+447700900123", "sms"), "sms:+44");
        assert_eq!(destination_group("+14155550100", "sms"), "sms:+1");
        assert_eq!(destination_group("+79161234567", "sms"), "sms:+7");
        assert_eq!(destination_group("+351912345678", "sms"), "sms:+351");
        assert_eq!(destination_group("+8613812345678", "sms"), "sms:+86");
        assert_eq!(destination_group("+2348012345678", "sms"), "sms:+234");
    }

    #[test]
    fn emails_group_by_domain() {
        assert_eq!(
            destination_group("me@mail.example.com", "email"),
            "email:mail.example.com"
        );
    }
}
