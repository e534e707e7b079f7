//! AWS Signature Version 4 (header signing), for `ses-email` — and for the tests' fake SES,
//! which recomputes the signature of every request it receives.
//!
//! Signing: hash a canonical form of the request (method, path, sorted query, the signed
//! headers lower-cased and trimmed, the SHA-256 of the body), build the "string to sign"
//! from it, the time and the credential scope (`date/region/service/aws4_request`), and
//! HMAC it with a key derived from the secret through that scope. Checked against AWS's
//! published test suite (`get-vanilla`, `get-vanilla-query-order-key-case`, `post-vanilla`,
//! `post-x-www-form-urlencoded`) in the tests below. Paths are taken as given: the APIs
//! signed here use paths of unreserved characters only.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The algorithm name in the string to sign and the `Authorization` header.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An access key.
pub struct Credentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
}

/// The parts of a request that are signed.
pub struct Signable<'a> {
    pub method: &'a str,
    /// The path, e.g. `/v2/email/outbound-emails`.
    pub path: &'a str,
    /// The query string without `?` (may be empty).
    pub query: &'a str,
    /// The headers to sign, `host` and `x-amz-date` included; any case, any order.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn uri_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The query's parameters encoded and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(k), uri_encode(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical headers block and the `SignedHeaders` list.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut lines: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
            (name.to_ascii_lowercase(), value)
        })
        .collect();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    // Repeated headers become one line with comma-separated values.
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in lines {
        match merged.last_mut() {
            Some((last, values)) if *last == name => {
                values.push(',');
                values.push_str(&value);
            }
            _ => merged.push((name, value)),
        }
    }
    let block = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (block, signed)
}

/// The canonical request and its `SignedHeaders` list.
pub fn canonical_request(request: &Signable<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(request.headers);
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        request.path,
        canonical_query(request.query),
        headers,
        signed,
        sha256_hex(request.body)
    );
    (canonical, signed)
}

/// `date/region/service/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// The string to sign for a canonical request at `amz_date` (`YYYYMMDDTHHMMSSZ`).
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

/// The signing key for a day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The `Authorization` header value for `request`, signed at `amz_date`, whose first eight
/// characters are the date of the scope.
pub fn authorization(
    credentials: &Credentials<'_>,
    region: &str,
    service: &str,
    amz_date: &str,
    request: &Signable<'_>,
) -> String {
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = scope(date, region, service);
    let (canonical, signed) = canonical_request(request);
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(credentials.secret_access_key, date, region, service);
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key_id
    )
}

/// The parts of an `Authorization` header, as a verifier reads them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Reads an `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
pub fn parse_authorization(value: &str) -> Option<ParsedAuthorization> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (name, v) = part.trim().split_once('=')?;
        match name {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return None,
        }
    }
    let scope: Vec<&str> = credential?.split('/').collect();
    let [key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some(ParsedAuthorization {
        access_key_id: key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed?.split(';').map(str::to_string).collect(),
        signature: signature?.to_string(),
    })
}

/// `(YYYYMMDDTHHMMSSZ, YYYYMMDD)` for a Unix time in seconds (UTC).
pub fn amz_date(unix_seconds: u64) -> (String, String) {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm), valid for any date after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    );
    (time, date)
}

#[cfg(test)]
mod tests {
    //! The vectors are AWS's published SigV4 test suite (aws-sig-v4-test-suite): credentials
    //! `AKIDEXAMPLE` / `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`, region `us-east-1`,
    //! service `service`, at 20150830T123600Z, on host `example.amazonaws.com`.
    use super::*;

    const KEY: Credentials<'static> = Credentials {
        access_key_id: "AKIDEXAMPLE",
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    };
    const AMZ_DATE: &str = "20150830T123600Z";

    fn headers(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut h = vec![
            ("Host".to_string(), "example.amazonaws.com".to_string()),
            ("X-Amz-Date".to_string(), AMZ_DATE.to_string()),
        ];
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        h
    }

    fn sign(method: &str, query: &str, headers: &[(String, String)], body: &[u8]) -> String {
        authorization(
            &KEY,
            "us-east-1",
            "service",
            AMZ_DATE,
            &Signable {
                method,
                path: "/",
                query,
                headers,
                body,
            },
        )
    }

    fn expected(signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders={signed}, Signature={signature}"
        )
    }

    #[test]
    fn get_vanilla() {
        let h = headers(&[]);
        let request = Signable {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        let (canonical, _) = canonical_request(&request);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            string_to_sign(
                AMZ_DATE,
                &scope("20150830", "us-east-1", "service"),
                &canonical
            ),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        assert_eq!(
            sign("GET", "", &h, b""),
            expected(
                "host;x-amz-date",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert_eq!(
            sign("GET", "Param2=value2&Param1=value1", &headers(&[]), b""),
            expected(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn post_vanilla() {
        assert_eq!(
            sign("POST", "", &headers(&[]), b""),
            expected(
                "host;x-amz-date",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded() {
        let h = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            sha256_hex(b"Param1=value1"),
            "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            sign("POST", "", &h, b"Param1=value1"),
            expected(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }

    #[test]
    fn a_signature_reads_back() {
        let value = sign("GET", "", &headers(&[]), b"");
        let parsed = parse_authorization(&value).unwrap();
        assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");
        assert_eq!(
            (
                parsed.date.as_str(),
                parsed.region.as_str(),
                parsed.service.as_str()
            ),
            ("20150830", "us-east-1", "service")
        );
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(parsed.signature.len(), 64);
        assert_eq!(parse_authorization("Basic abc"), None);
        assert_eq!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=x, Signature=y"),
            None
        );
    }

    #[test]
    fn dates() {
        assert_eq!(
            amz_date(1_440_938_160),
            ("20150830T123600Z".to_string(), "20150830".to_string())
        );
        assert_eq!(amz_date(0).0, "19700101T000000Z");
        assert_eq!(amz_date(951_782_400).1, "20000229");
        assert_eq!(amz_date(4_102_444_799).0, "20991231T235959Z");
    }
}
