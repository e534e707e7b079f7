//! webhook-sender: delivers each code by POSTing it as JSON to a configured URL, signed per
//! the Standard Webhooks specification.
//!
//! Manifest `[config]`: `url` (required), `secret` (required, `whsec_<base64>`: reference it
//! from the environment, e.g. `secret = "${OTP_PLUGIN_WEBHOOK_SECRET}"`) and `timeout_ms`
//! (optional, shortens the manifest's outbound timeouts). The manifest's `[outbound] allow`
//! must cover the URL.
//!
//! Outcome: a 2xx answer delivers; a 4xx answer means the receiver refuses this credential
//! (*undeliverable*: 400 `CREDENTIAL:INVALID`); a 5xx or any other answer, a timeout, a
//! connection failure or a destination the manifest does not allow is *unavailable* (503
//! `SEND:UNAVAILABLE`, the client may retry). The body holds the code: it is never logged.

use otp_plugin_sdk::http::{Method, Request};
use otp_plugin_sdk::{config, log, random, Message, RequestContext, SendError, Sender};
use std::time::Duration;

pub mod webhook;

/// The exported sender.
pub struct WebhookSender;

impl Sender for WebhookSender {
    fn send(msg: &Message, _ctx: &RequestContext) -> Result<(), SendError> {
        let setup =
            |e: String| SendError::Unavailable(format!("webhook-sender configuration: {e}"));
        let url = config::require("url").map_err(setup)?;
        let key =
            webhook::decode_secret(&config::require("secret").map_err(setup)?).map_err(setup)?;
        let timeout = config::get("timeout_ms")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| setup("timeout_ms is not a number".into()))
            })
            .transpose()?;

        let body = webhook::payload(msg);
        let id = format!("msg_{}", random::hex(16));
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let signature = webhook::signature(&key, &id, timestamp, &body);

        let mut request = Request::new(Method::Post, url)
            .header("content-type", "application/json")
            .header("user-agent", "otp-server-webhook-sender/0.1")
            .header("webhook-id", id.clone())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .max_response_bytes(64 * 1024);
        if let Some(ms) = timeout {
            request = request.timeout(Duration::from_millis(ms));
        }
        match request.send() {
            Ok(response) => {
                let outcome = webhook::outcome(response.status);
                if outcome.is_err() {
                    log::warn(&format!("webhook {id} answered {}", response.status));
                }
                outcome
            }
            Err(error) => {
                log::warn(&format!("webhook {id} not delivered: {error}"));
                Err(SendError::Unavailable(format!("webhook: {error}")))
            }
        }
    }
}

otp_plugin_sdk::export_sender!(WebhookSender);
