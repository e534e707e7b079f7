//! Fakes of the four providers' HTTP APIs for the provider sender plugins: Twilio's Messages
//! API, SendGrid's v3 mail send, Postmark's `/email` and Amazon SES v2 `SendEmail`.
//!
//! Each fake checks every request as its provider documents it — method, path, credentials,
//! content type, the fields and their values, and for SES the AWS Signature V4, recomputed
//! from what arrived on the wire with `provider_kit::sigv4` (which its own unit tests check
//! against AWS's published test suite). A request with the wrong credentials gets the
//! provider's own authentication error; a malformed one is recorded as a *problem* (tests
//! assert there are none) and answered 400. Well-formed requests are recorded and answered
//! as told: success, each error the plugins map, a rate limit, a 5xx, or success after a
//! delay.

use crate::serve::{serve, Serving};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use provider_kit::sigv4;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const TWILIO_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const TWILIO_AUTH_TOKEN: &str = "twilio-auth-token-0123456789abcdef";
pub const SENDGRID_API_KEY: &str = "SG.fake-key.0123456789abcdef0123456789";
pub const POSTMARK_SERVER_TOKEN: &str = "00000000-1111-2222-3333-444444444444";
pub const AWS_ACCESS_KEY_ID: &str = "AKIDFAKESES00000000";
pub const AWS_SECRET_ACCESS_KEY: &str = "fake/Secret+Access/Key0123456789ABCDEFGHIJ";
pub const AWS_REGION: &str = "eu-west-1";
pub const FROM_PHONE: &str = "+15005550006";
pub const FROM_EMAIL: &str = "codes@example.com";

/// One of the four providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Twilio,
    Sendgrid,
    Postmark,
    Ses,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Twilio,
        Provider::Sendgrid,
        Provider::Postmark,
        Provider::Ses,
    ];

    /// The plugin that speaks this provider's API.
    pub fn plugin(self) -> &'static str {
        match self {
            Provider::Twilio => "twilio-sms",
            Provider::Sendgrid => "sendgrid-email",
            Provider::Postmark => "postmark-email",
            Provider::Ses => "ses-email",
        }
    }

    pub fn is_sms(self) -> bool {
        self == Provider::Twilio
    }

    /// The environment variables holding the secrets, with the fake's values.
    pub fn secrets(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Provider::Twilio => vec![("OTP_PLUGIN_TWILIO_AUTH_TOKEN", TWILIO_AUTH_TOKEN)],
            Provider::Sendgrid => vec![("OTP_PLUGIN_SENDGRID_API_KEY", SENDGRID_API_KEY)],
            Provider::Postmark => {
                vec![("OTP_PLUGIN_POSTMARK_SERVER_TOKEN", POSTMARK_SERVER_TOKEN)]
            }
            Provider::Ses => vec![
                ("OTP_PLUGIN_AWS_ACCESS_KEY_ID", AWS_ACCESS_KEY_ID),
                ("OTP_PLUGIN_AWS_SECRET_ACCESS_KEY", AWS_SECRET_ACCESS_KEY),
            ],
        }
    }

    /// The `[config]` lines (without the header) that point the plugin at `api_base`, with
    /// the secrets referenced from the environment.
    pub fn config(self, api_base: &str) -> String {
        let account = match self {
            Provider::Twilio => format!(
                "account_sid = \"{TWILIO_ACCOUNT_SID}\"\nauth_token = \"${{OTP_PLUGIN_TWILIO_AUTH_TOKEN}}\"\nfrom = \"{FROM_PHONE}\"\n"
            ),
            Provider::Sendgrid => format!(
                "api_key = \"${{OTP_PLUGIN_SENDGRID_API_KEY}}\"\nfrom = \"{FROM_EMAIL}\"\nfrom_name = \"Acme\"\n"
            ),
            Provider::Postmark => format!(
                "server_token = \"${{OTP_PLUGIN_POSTMARK_SERVER_TOKEN}}\"\nfrom = \"{FROM_EMAIL}\"\n"
            ),
            Provider::Ses => format!(
                "region = \"{AWS_REGION}\"\naccess_key_id = \"${{OTP_PLUGIN_AWS_ACCESS_KEY_ID}}\"\nsecret_access_key = \"${{OTP_PLUGIN_AWS_SECRET_ACCESS_KEY}}\"\nfrom = \"{FROM_EMAIL}\"\n"
            ),
        };
        format!("api_base = \"{api_base}\"\n{account}")
    }

    /// A destination of this provider's kind, unique per `n`.
    pub fn destination(self, n: u64) -> String {
        if self.is_sms() {
            format!("+1500555{:04}", n % 10_000)
        } else {
            format!("user{n}@example.com")
        }
    }

    /// The create body that `email-phone-credential` turns into `destination`.
    pub fn credential(self, destination: &str) -> String {
        if self.is_sms() {
            json!({ "phone": destination }).to_string()
        } else {
            json!({ "email": destination }).to_string()
        }
    }

    /// How many different "bad destination" answers [`Answer::BadDestination`] has.
    pub fn bad_destinations(self) -> usize {
        match self {
            Provider::Twilio | Provider::Postmark => 2,
            Provider::Sendgrid | Provider::Ses => 1,
        }
    }
}

/// How a fake answers well-formed requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted.
    Accept,
    /// The i-th "this destination cannot receive it" refusal: Twilio 21211 and 21614,
    /// SendGrid 400 on the recipient, Postmark 300 (naming `To`) and 406, SES
    /// `BadRequestException` "Illegal address".
    BadDestination(usize),
    /// A refusal that is the operator's business: Twilio 21606 (bad `From`), SendGrid 403
    /// (unverified sender), Postmark 400 (no sender signature), SES `MessageRejected`
    /// (an unverified `from` identity).
    Misconfigured,
    /// 429.
    RateLimited,
    /// This 5xx status.
    ServerError(u16),
    /// Accepted after this long.
    Slow(Duration),
}

/// One well-formed request a fake received.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub to: String,
    pub subject: Option<String>,
    /// The SMS text or the email's plain-text body.
    pub text: String,
}

impl Delivery {
    /// The text between `before` and the next `after` in the message text.
    pub fn between(&self, before: &str, after: &str) -> Option<String> {
        let start = self.text.find(before)? + before.len();
        let len = self.text[start..].find(after)?;
        Some(self.text[start..start + len].to_string())
    }
}

struct Shared {
    provider: Provider,
    answer: Mutex<Answer>,
    /// Whether to keep every delivery (tests) or only the latest text per destination.
    record: bool,
    deliveries: Mutex<Vec<Delivery>>,
    latest: Mutex<HashMap<String, String>>,
    problems: Mutex<Vec<String>>,
    refused_credentials: Mutex<usize>,
}

/// A running fake provider; stops when dropped.
pub struct FakeProvider {
    /// `http://127.0.0.1:PORT`: the plugin's `api_base`.
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
    _serving: Serving,
}

impl FakeProvider {
    /// A fake that records every request.
    pub fn start(provider: Provider) -> FakeProvider {
        Self::spawn(provider, true, 1)
    }

    /// A fake that keeps only the latest text per destination, on `threads` threads.
    pub fn start_for_load(provider: Provider, threads: usize) -> FakeProvider {
        Self::spawn(provider, false, threads)
    }

    fn spawn(provider: Provider, record: bool, threads: usize) -> FakeProvider {
        let shared = Arc::new(Shared {
            provider,
            answer: Mutex::new(Answer::Accept),
            record,
            deliveries: Mutex::default(),
            latest: Mutex::default(),
            problems: Mutex::default(),
            refused_credentials: Mutex::new(0),
        });
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let serving = serve(provider.plugin(), app, threads);
        FakeProvider {
            url: format!("http://127.0.0.1:{}", serving.port),
            port: serving.port,
            shared,
            _serving: serving,
        }
    }

    /// Answers well-formed requests this way from now on.
    pub fn answer(&self, answer: Answer) {
        *self.shared.answer.lock().unwrap() = answer;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.deliveries.lock().unwrap().len()
    }

    /// Requests that were not as the provider documents them.
    pub fn problems(&self) -> Vec<String> {
        self.shared.problems.lock().unwrap().clone()
    }

    /// How many requests carried wrong credentials (or, for SES, a wrong signature).
    pub fn refused_credentials(&self) -> usize {
        *self.shared.refused_credentials.lock().unwrap()
    }

    /// The latest message text sent to a destination, taking it out.
    pub fn take_text(&self, to: &str) -> Option<String> {
        self.shared.latest.lock().unwrap().remove(to)
    }
}

/// Why a request is not accepted as it is.
enum Refusal {
    /// Not what the provider documents: a bug in the plugin.
    Problem(String),
    /// Wrong credentials or signature.
    Credentials,
}

fn problem(message: impl Into<String>) -> Refusal {
    Refusal::Problem(message.into())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn expect_header(headers: &HeaderMap, name: &str, wanted: &str) -> Result<(), Refusal> {
    match header(headers, name) {
        v if v == wanted => Ok(()),
        v => Err(problem(format!("{name}: {v:?}, expected {wanted:?}"))),
    }
}

fn json_body(body: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|e| problem(format!("body is not JSON: {e}")))
}

fn string_at<'a>(value: &'a Value, pointer: &str) -> Result<&'a str, Refusal> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| problem(format!("no string at {pointer}")))
}

fn only_keys(value: &Value, pointer: &str, allowed: &[&str]) -> Result<(), Refusal> {
    let object = value
        .pointer(pointer)
        .and_then(Value::as_object)
        .ok_or_else(|| problem(format!("no object at {pointer:?}")))?;
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(problem(format!(
            "unexpected field {unknown:?} at {pointer:?}"
        ))),
        None => Ok(()),
    }
}

fn one_element(value: &Value, pointer: &str) -> Result<(), Refusal> {
    match value.pointer(pointer).and_then(Value::as_array) {
        Some(list) if list.len() == 1 => Ok(()),
        _ => Err(problem(format!("{pointer} is not a one-element list"))),
    }
}

fn check_twilio(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, Refusal> {
    let path = format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}/Messages.json");
    if method != Method::POST || uri.path() != path || uri.query().is_some() {
        return Err(problem(format!("{method} {uri}, expected POST {path}")));
    }
    let basic = STANDARD.encode(format!("{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}"));
    if header(headers, "authorization") != format!("Basic {basic}") {
        return Err(Refusal::Credentials);
    }
    expect_header(headers, "content-type", "application/x-www-form-urlencoded")?;
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| problem(format!("form: {e}")))?;
    let field = |name: &str| {
        let values: Vec<&String> = form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect();
        match values.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.to_string())),
            _ => Err(problem(format!("{name} given twice"))),
        }
    };
    if let Some((unknown, _)) = form
        .iter()
        .find(|(k, _)| !["To", "Body", "From", "MessagingServiceSid"].contains(&k.as_str()))
    {
        return Err(problem(format!("unexpected parameter {unknown:?}")));
    }
    let to = field("To")?.ok_or_else(|| problem("no To"))?;
    let text = field("Body")?
        .filter(|b| !b.is_empty())
        .ok_or_else(|| problem("no Body"))?;
    if field("From")?.as_deref() != Some(FROM_PHONE) && field("MessagingServiceSid")?.is_none() {
        return Err(problem(
            "neither From (the configured number) nor MessagingServiceSid",
        ));
    }
    if !to.starts_with('+') || to.len() < 9 || !to[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(problem(format!("To {to:?} is not E.164")));
    }
    Ok(Delivery {
        to,
        subject: None,
        text,
    })
}

fn check_sendgrid(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, Refusal> {
    if method != Method::POST || uri.path() != "/v3/mail/send" {
        return Err(problem(format!(
            "{method} {uri}, expected POST /v3/mail/send"
        )));
    }
    if header(headers, "authorization") != format!("Bearer {SENDGRID_API_KEY}") {
        return Err(Refusal::Credentials);
    }
    expect_header(headers, "content-type", "application/json")?;
    let v = json_body(body)?;
    only_keys(&v, "", &["personalizations", "from", "subject", "content"])?;
    one_element(&v, "/personalizations")?;
    one_element(&v, "/personalizations/0/to")?;
    one_element(&v, "/content")?;
    if string_at(&v, "/from/email")? != FROM_EMAIL {
        return Err(problem("from.email is not the configured sender"));
    }
    if string_at(&v, "/content/0/type")? != "text/plain" {
        return Err(problem("content[0].type is not text/plain"));
    }
    Ok(Delivery {
        to: string_at(&v, "/personalizations/0/to/0/email")?.to_string(),
        subject: Some(string_at(&v, "/subject")?.to_string()),
        text: string_at(&v, "/content/0/value")?.to_string(),
    })
}

fn check_postmark(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, Refusal> {
    if method != Method::POST || uri.path() != "/email" {
        return Err(problem(format!("{method} {uri}, expected POST /email")));
    }
    if header(headers, "x-postmark-server-token") != POSTMARK_SERVER_TOKEN {
        return Err(Refusal::Credentials);
    }
    expect_header(headers, "accept", "application/json")?;
    expect_header(headers, "content-type", "application/json")?;
    let v = json_body(body)?;
    only_keys(
        &v,
        "",
        &["From", "To", "Subject", "TextBody", "MessageStream"],
    )?;
    if string_at(&v, "/From")? != FROM_EMAIL {
        return Err(problem("From is not the configured sender"));
    }
    if string_at(&v, "/MessageStream")? != "outbound" {
        return Err(problem("MessageStream is not outbound"));
    }
    Ok(Delivery {
        to: string_at(&v, "/To")?.to_string(),
        subject: Some(string_at(&v, "/Subject")?.to_string()),
        text: string_at(&v, "/TextBody")?.to_string(),
    })
}

fn check_ses(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Delivery, Refusal> {
    const PATH: &str = "/v2/email/outbound-emails";
    if method != Method::POST || uri.path() != PATH || uri.query().is_some() {
        return Err(problem(format!("{method} {uri}, expected POST {PATH}")));
    }
    expect_header(headers, "content-type", "application/json")?;
    let auth = sigv4::parse_authorization(header(headers, "authorization"))
        .ok_or_else(|| problem("authorization is not AWS4-HMAC-SHA256"))?;
    if auth.access_key_id != AWS_ACCESS_KEY_ID {
        return Err(Refusal::Credentials);
    }
    if (auth.region.as_str(), auth.service.as_str()) != (AWS_REGION, "ses") {
        return Err(problem(format!(
            "scope {}/{}, expected {AWS_REGION}/ses",
            auth.region, auth.service
        )));
    }
    for needed in ["content-type", "host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == needed) {
            return Err(problem(format!("{needed} is not signed")));
        }
    }
    let amz_date = header(headers, "x-amz-date");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = (now.saturating_sub(300)..=now + 300)
        .step_by(1)
        .any(|t| sigv4::amz_date(t).0 == amz_date);
    if !fresh || !amz_date.starts_with(&auth.date) {
        return Err(problem(format!(
            "x-amz-date {amz_date:?} is not now, or not the scope's day"
        )));
    }
    // Recompute the signature over the signed headers as they arrived.
    let signed: Vec<(String, String)> = auth
        .signed_headers
        .iter()
        .map(|name| (name.clone(), header(headers, name).to_string()))
        .collect();
    let expected = sigv4::authorization(
        &sigv4::Credentials {
            access_key_id: AWS_ACCESS_KEY_ID,
            secret_access_key: AWS_SECRET_ACCESS_KEY,
        },
        AWS_REGION,
        "ses",
        amz_date,
        &sigv4::Signable {
            method: "POST",
            path: PATH,
            query: "",
            headers: &signed,
            body,
        },
    );
    if header(headers, "authorization") != expected {
        return Err(Refusal::Credentials);
    }
    let v = json_body(body)?;
    only_keys(
        &v,
        "",
        &[
            "FromEmailAddress",
            "Destination",
            "Content",
            "ConfigurationSetName",
        ],
    )?;
    only_keys(&v, "/Content", &["Simple"])?;
    one_element(&v, "/Destination/ToAddresses")?;
    if string_at(&v, "/FromEmailAddress")? != FROM_EMAIL {
        return Err(problem("FromEmailAddress is not the configured sender"));
    }
    for charset in [
        "/Content/Simple/Subject/Charset",
        "/Content/Simple/Body/Text/Charset",
    ] {
        if string_at(&v, charset)? != "UTF-8" {
            return Err(problem(format!("{charset} is not UTF-8")));
        }
    }
    Ok(Delivery {
        to: string_at(&v, "/Destination/ToAddresses/0")?.to_string(),
        subject: Some(string_at(&v, "/Content/Simple/Subject/Data")?.to_string()),
        text: string_at(&v, "/Content/Simple/Body/Text/Data")?.to_string(),
    })
}

fn json_answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ses_error(status: u16, kind: &str, message: &str) -> Response {
    let mut response = json_answer(status, json!({ "message": message }));
    let value = format!("{kind}:http://internal.amazon.com/coral/com.amazonaws.sesv2/");
    response
        .headers_mut()
        .insert("x-amzn-errortype", value.parse().unwrap());
    response
}

/// The provider's answer to wrong credentials.
fn credentials_refused(provider: Provider) -> Response {
    match provider {
        Provider::Twilio => json_answer(
            401,
            json!({"code": 20003, "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
        ),
        Provider::Sendgrid => json_answer(
            401,
            json!({"errors": [{"field": null,
            "message": "The provided authorization grant is invalid, expired, or revoked", "help": null}]}),
        ),
        Provider::Postmark => json_answer(
            401,
            json!({"ErrorCode": 10,
            "Message": "No Account or Server API tokens were supplied in the HTTP headers."}),
        ),
        Provider::Ses => ses_error(
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ),
    }
}

/// The provider's answer for a well-formed request to `to`.
fn answer(provider: Provider, answer: Answer, to: &str) -> Response {
    use Answer::*;
    match (provider, answer) {
        (_, Accept | Slow(_)) => match provider {
            Provider::Twilio => json_answer(201, json!({"sid": format!("SM{}", "0".repeat(32)),
                "status": "queued", "to": to, "from": FROM_PHONE})),
            Provider::Sendgrid => (StatusCode::ACCEPTED, [("x-message-id", "fake-sendgrid-id")]).into_response(),
            Provider::Postmark => json_answer(200, json!({"To": to, "SubmittedAt": "2026-12-03T15:00:00.0000000Z",
                "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "ErrorCode": 0, "Message": "OK"})),
            Provider::Ses => json_answer(200, json!({"MessageId": "0100018c-fake-ses"})),
        },
        (Provider::Twilio, BadDestination(0)) => json_answer(400, json!({"code": 21211,
            "message": format!("The 'To' number {to} is not a valid phone number."),
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})),
        (Provider::Twilio, BadDestination(_)) => json_answer(400, json!({"code": 21614,
            "message": format!("'To' number {to} is not a valid mobile number"),
            "more_info": "https://www.twilio.com/docs/errors/21614", "status": 400})),
        (Provider::Twilio, Misconfigured) => json_answer(400, json!({"code": 21606,
            "message": "The 'From' phone number provided is not a valid message-capable Twilio phone number for this destination.",
            "status": 400})),
        (Provider::Twilio, RateLimited) => json_answer(429, json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
        (Provider::Twilio, ServerError(s)) => json_answer(s, json!({"code": 20500,
            "message": "An internal server error has occurred", "status": s})),
        (Provider::Sendgrid, BadDestination(_)) => json_answer(400, json!({"errors": [{
            "message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email",
            "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}]})),
        (Provider::Sendgrid, Misconfigured) => json_answer(403, json!({"errors": [{
            "message": "The from address does not match a verified Sender Identity.", "field": "from", "help": null}]})),
        (Provider::Sendgrid, RateLimited) => json_answer(429, json!({"errors": [{"field": null, "message": "too many requests"}]})),
        (Provider::Sendgrid, ServerError(s)) => json_answer(s, json!({"errors": [{"field": null, "message": "internal error"}]})),
        (Provider::Postmark, BadDestination(0)) => json_answer(422, json!({"ErrorCode": 300,
            "Message": format!("Invalid 'To' address: '{to}'.")})),
        (Provider::Postmark, BadDestination(_)) => json_answer(422, json!({"ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive."})),
        (Provider::Postmark, Misconfigured) => json_answer(422, json!({"ErrorCode": 400,
            "Message": "The 'From' address you supplied is not a Sender Signature on your account."})),
        (Provider::Postmark, RateLimited) => json_answer(429, json!({"ErrorCode": 0, "Message": "Rate limit exceeded"})),
        (Provider::Postmark, ServerError(s)) => {
            (StatusCode::from_u16(s).unwrap(), "Internal Server Error").into_response()
        }
        (Provider::Ses, BadDestination(_)) => ses_error(400, "BadRequestException", "Illegal address"),
        (Provider::Ses, Misconfigured) => ses_error(400, "MessageRejected",
            "Email address is not verified. The following identities failed the check in region EU-WEST-1: codes@example.com"),
        (Provider::Ses, RateLimited) => ses_error(429, "TooManyRequestsException", "Too Many Requests"),
        (Provider::Ses, ServerError(s)) => ses_error(s, "InternalFailure", "The request processing has failed."),
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let provider = shared.provider;
    let checked = match provider {
        Provider::Twilio => check_twilio(&method, &uri, &headers, &body),
        Provider::Sendgrid => check_sendgrid(&method, &uri, &headers, &body),
        Provider::Postmark => check_postmark(&method, &uri, &headers, &body),
        Provider::Ses => check_ses(&method, &uri, &headers, &body),
    };
    let delivery = match checked {
        Ok(delivery) => delivery,
        Err(Refusal::Credentials) => {
            *shared.refused_credentials.lock().unwrap() += 1;
            return credentials_refused(provider);
        }
        Err(Refusal::Problem(message)) => {
            shared.problems.lock().unwrap().push(message.clone());
            return (
                StatusCode::BAD_REQUEST,
                format!("fake {}: {message}", provider.plugin()),
            )
                .into_response();
        }
    };
    let behaviour = *shared.answer.lock().unwrap();
    let to = delivery.to.clone();
    if shared.record {
        shared.deliveries.lock().unwrap().push(delivery);
    } else {
        shared
            .latest
            .lock()
            .unwrap()
            .insert(delivery.to, delivery.text);
    }
    if let Answer::Slow(delay) = behaviour {
        tokio::time::sleep(delay).await;
    }
    answer(provider, behaviour, &to)
}
