//! Parsing and normalization of email addresses and phone numbers, as pure functions.
//!
//! Two spellings of the same address must give the same credential id, since the id keys the
//! session and the code. Anything ambiguous is rejected rather than guessed at.

use serde_json::Value;

/// Channel for credentials that are email addresses.
pub const EMAIL_CHANNEL: &str = "email";
/// Channel for credentials that are phone numbers.
pub const SMS_CHANNEL: &str = "sms";

/// The longest email address accepted, in bytes (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Fewest and most digits of an E.164 number, country code included.
const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// Parses a create-request body into `(id, channel)`.
///
/// Accepted bodies: `{"email": "..."}`, `{"phone": "+..."}`, or a bare JSON string holding
/// either (a leading `+` means a phone number, otherwise an `@` means an email address).
pub fn parse_body(body: &str) -> Result<(String, &'static str), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|err| format!("body is not valid JSON: {err}"))?;
    match value {
        Value::String(text) => {
            let text = text.trim();
            if text.starts_with('+') {
                normalize_phone(text).map(|id| (id, SMS_CHANNEL))
            } else if text.contains('@') {
                normalize_email(text).map(|id| (id, EMAIL_CHANNEL))
            } else {
                Err("the string is neither an email address nor a phone number \
                     (phone numbers start with +)"
                    .to_string())
            }
        }
        Value::Object(fields) => {
            if fields.len() != 1 {
                let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(format!(
                    "expected exactly one of the keys \"email\" or \"phone\", got {keys:?}"
                ));
            }
            let (key, value) = fields.into_iter().next().expect("one field");
            let Value::String(text) = value else {
                return Err(format!(
                    "\"{key}\" must be a string, got {}",
                    kind_of(&value)
                ));
            };
            match key.as_str() {
                "email" => normalize_email(&text).map(|id| (id, EMAIL_CHANNEL)),
                "phone" => normalize_phone(&text).map(|id| (id, SMS_CHANNEL)),
                other => Err(format!(
                    "unknown key {other:?}: expected \"email\" or \"phone\""
                )),
            }
        }
        other => Err(format!(
            "expected an object or a string, got {}",
            kind_of(&other)
        )),
    }
}

/// Normalizes an email address: trimmed, domain lower-cased, local part kept as written
/// (only the receiving server may interpret its case).
///
/// Requires exactly one `@`, a non-empty local part, a domain of at least two non-empty
/// dot-separated labels of letters, digits and `-`, no whitespace or control characters,
/// none of `<>,;:"()[]\` (a display name, quoting or a comment: `Name <a@b>` would be
/// delivered to `a@b`), and at most [`MAX_EMAIL_LEN`] bytes.
pub fn normalize_email(raw: &str) -> Result<String, String> {
    let address = raw.trim();
    if address.is_empty() {
        return Err("the email address is empty".to_string());
    }
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the email address contains whitespace or control characters".to_string());
    }
    let (local, domain) = match address.split_once('@') {
        Some((local, domain)) if !domain.contains('@') => (local, domain),
        Some(_) => return Err("the email address has more than one @".to_string()),
        None => return Err("the email address has no @".to_string()),
    };
    if local.is_empty() {
        return Err("the email address has an empty local part".to_string());
    }
    // Display names, quoted and commented forms (`Name <a@b>`, `"a b"@c`, `a(x)@b`) are
    // not one mailbox: a provider that parses them delivers elsewhere than the id says.
    if let Some(c) = address.chars().find(|c| "<>,;:\"()[]\\".contains(*c)) {
        return Err(format!("the email address contains {c:?}"));
    }
    if let Some(c) = domain
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(format!("the email domain contains {c:?}"));
    }
    if !domain.contains('.') {
        return Err(format!("the email domain {domain:?} has no dot"));
    }
    if domain.split('.').any(str::is_empty) {
        return Err(format!("the email domain {domain:?} has an empty label"));
    }
    let normalized = format!("{local}@{}", domain.to_lowercase());
    if normalized.len() > MAX_EMAIL_LEN {
        return Err(format!(
            "the email address is longer than {MAX_EMAIL_LEN} bytes"
        ));
    }
    Ok(normalized)
}

/// Normalizes a phone number to E.164 (`+` then 8–15 digits, the first not 0).
///
/// The number must start with `+` (after trimming); spaces, dashes, dots and parentheses
/// between digits are dropped.
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let Some(rest) = raw.trim().strip_prefix('+') else {
        return Err("the phone number must start with + and a country code".to_string());
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            other => {
                return Err(format!(
                    "the phone number contains {other:?}; only digits, spaces, dashes, \
                     dots and parentheses are allowed"
                ))
            }
        }
    }
    if !PHONE_DIGITS.contains(&digits.len()) {
        return Err(format!(
            "the phone number has {} digits; E.164 numbers have {} to {}",
            digits.len(),
            PHONE_DIGITS.start(),
            PHONE_DIGITS.end()
        ));
    }
    if digits.starts_with('0') {
        return Err("the phone number's country code cannot start with 0".to_string());
    }
    Ok(format!("+{digits}"))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            normalize_email("  Alice.Smith@Example.COM ").unwrap(),
            "Alice.Smith@example.com"
        );
        assert_eq!(
            normalize_email("a+tag@sub.example.org").unwrap(),
            "a+tag@sub.example.org"
        );
        assert_eq!(normalize_email("x@ÉCOLE.fr").unwrap(), "x@école.fr");
    }

    #[test]
    fn bad_emails_are_rejected() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "a@b@example.com",
            "alice smith@example.com",
            "alice@exa mple.com",
            "alice\t@example.com",
            "alice@.com",
            "alice@example.",
            "alice@example..com",
            "alice\u{0}@example.com",
            "Victim<me@evil.com>",
            "\"alice smith\"@example.com",
            "alice(comment)@example.com",
            "alice,bob@example.com",
            "alice@[192.0.2.1]",
            "alice@exam_ple.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn email_length_limit() {
        let domain = "@example.com";
        let fits = format!("{}{domain}", "a".repeat(MAX_EMAIL_LEN - domain.len()));
        assert_eq!(normalize_email(&fits).unwrap().len(), MAX_EMAIL_LEN);
        let too_long = format!("a{fits}");
        assert!(normalize_email(&too_long).unwrap_err().contains("longer"));
    }

    #[test]
    fn phones_are_normalized() {
        assert_eq!(
            normalize_phone("+33 6 12 34 56 78").unwrap(),
            "+33612345678"
        );
        assert_eq!(
            normalize_phone(" +1 (555) 123-4567 ").unwrap(),
            "+15551234567"
        );
        assert_eq!(
            normalize_phone("+44.20.7946.0958").unwrap(),
            "+442079460958"
        );
        assert_eq!(normalize_phone("+12345678").unwrap(), "+12345678");
        assert_eq!(
            normalize_phone("+123456789012345").unwrap(),
            "+123456789012345"
        );
    }

    #[test]
    fn bad_phones_are_rejected() {
        for bad in [
            "",
            "+",
            "0612345678",
            "33612345678",
            "+1234567",
            "+1234567890123456",
            "+0612345678",
            "+33 6 12 34 56 7a",
            "+33/612345678",
            "++33612345678",
            "+33\t612345678",
        ] {
            assert!(normalize_phone(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bodies() {
        let ok = |body: &str| parse_body(body).unwrap();
        assert_eq!(
            ok(r#"{"email": " Bob@Example.com "}"#),
            ("Bob@example.com".to_string(), "email")
        );
        assert_eq!(
            ok(r#"{"phone": "+33 6 12 34 56 78"}"#),
            ("+33612345678".to_string(), "sms")
        );
        assert_eq!(
            ok(r#""bob@EXAMPLE.com""#),
            ("bob@example.com".to_string(), "email")
        );
        assert_eq!(
            ok(r#"" +1 555 123 4567""#),
            ("+15551234567".to_string(), "sms")
        );
    }

    #[test]
    fn bad_bodies_are_rejected_with_a_reason() {
        let cases = [
            (
                r#"{"email": "a@b.c", "phone": "+33612345678"}"#,
                "exactly one",
            ),
            (r#"{}"#, "exactly one"),
            (r#"{"mail": "a@b.c"}"#, "unknown key"),
            (r#"{"email": 42}"#, "must be a string"),
            (r#"{"phone": null}"#, "must be a string"),
            (r#"{"email": ["a@b.c"]}"#, "must be a string"),
            (r#"["a@b.c"]"#, "expected an object or a string"),
            ("42", "expected an object or a string"),
            ("null", "expected an object or a string"),
            ("true", "expected an object or a string"),
            (r#""bob""#, "neither"),
            (r#""""#, "neither"),
            (r#"{"phone": "a@b.c"}"#, "must start with +"),
            (r#"{"email": "+33612345678"}"#, "no @"),
            ("not json", "not valid JSON"),
        ];
        for (body, reason) in cases {
            let err = parse_body(body).unwrap_err();
            assert!(err.contains(reason), "{body}: {err}");
        }
    }
}
