//! default-credential's acceptance rules, as a pure function of the request body.
//!
//! Kept apart from the component glue so that `fixture-validator-v2` can include the very
//! same file (a cdylib cannot be a dependency without dragging its exports along) and so that
//! the rules are unit-tested natively.

use serde_json::Value;

/// Returns the credential id for `body`: the compact re-serialization of its JSON value.
///
/// Any JSON value that names something is accepted: numbers, non-empty strings, non-empty
/// arrays and non-empty objects. `null`, booleans, `""`, `[]` and `{}` are rejected, since
/// they cannot tell one user from another.
///
/// Re-serializing removes insignificant whitespace and sorts object keys, so equivalent
/// bodies yield the same id. Numbers keep their exact text (serde_json's
/// `arbitrary_precision`) so that two long numbers never collapse into the same float.
pub fn credential_id(body: &str) -> Result<String, String> {
    let value: Value =
        serde_json::from_str(body).map_err(|err| format!("body is not valid JSON: {err}"))?;
    let empty = match &value {
        Value::Null => return Err("body is null, which names no credential".to_string()),
        Value::Bool(b) => {
            return Err(format!(
                "body is the boolean {b}, which names no credential"
            ))
        }
        Value::Number(_) => None,
        Value::String(s) => s.is_empty().then_some("an empty string"),
        Value::Array(items) => items.is_empty().then_some("an empty array"),
        Value::Object(fields) => fields.is_empty().then_some("an empty object"),
    };
    if let Some(what) = empty {
        return Err(format!("body is {what}, which names no credential"));
    }
    serde_json::to_string(&value).map_err(|err| format!("cannot re-serialize the body: {err}"))
}

#[cfg(test)]
mod tests {
    use super::credential_id;

    #[test]
    fn accepts_and_compacts() {
        assert_eq!(credential_id(r#" {"a" : 1} "#).unwrap(), r#"{"a":1}"#);
        assert_eq!(credential_id(r#""bob""#).unwrap(), r#""bob""#);
        assert_eq!(credential_id("42").unwrap(), "42");
        assert_eq!(credential_id("0").unwrap(), "0");
        assert_eq!(credential_id("-1.5").unwrap(), "-1.5");
        // serde_json spells exponents with a sign; the digits are kept exactly.
        assert_eq!(credential_id("-1.5e3").unwrap(), "-1.5e+3");
        assert_eq!(credential_id("1E-2").unwrap(), "1e-2");
        assert_eq!(credential_id("[ 1 , [ ] ]").unwrap(), "[1,[]]");
        assert_eq!(credential_id(r#"[null]"#).unwrap(), "[null]");
        assert_eq!(credential_id(r#"" ""#).unwrap(), r#"" ""#);
        assert_eq!(
            credential_id("\n{\"user\":\t{\"name\": \"Zoë\"}}\n").unwrap(),
            r#"{"user":{"name":"Zoë"}}"#
        );
    }

    #[test]
    fn equivalent_bodies_yield_the_same_id() {
        assert_eq!(
            credential_id(r#"{"b":1,"a":2}"#).unwrap(),
            credential_id(r#"{ "a": 2, "b": 1 }"#).unwrap()
        );
        assert_eq!(
            credential_id(r#""\u0062ob""#).unwrap(),
            credential_id(r#""bob""#).unwrap()
        );
    }

    #[test]
    fn long_numbers_stay_distinct() {
        let a = credential_id("123456789012345678901234567890").unwrap();
        let b = credential_id("123456789012345678901234567891").unwrap();
        assert_eq!(a, "123456789012345678901234567890");
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_values_that_name_nothing() {
        for body in [
            "false", "true", "null", r#""""#, "{}", "[]", " { } ", "[\n]",
        ] {
            let err = credential_id(body).unwrap_err();
            assert!(err.contains("names no credential"), "{body}: {err}");
        }
    }

    #[test]
    fn rejects_invalid_json_with_a_reason() {
        for body in ["", "{", "bob", "1 2"] {
            let err = credential_id(body).unwrap_err();
            assert!(err.starts_with("body is not valid JSON"), "{body}: {err}");
        }
    }
}
