//! webhook-sender: delivers each code by POSTing it as JSON to a configured URL, signed per
//! the Standard Webhooks specification.
//!
//! Manifest `[config]`: `url` (required), `secret` (required, `whsec_<base64>`: reference it
//! from the environment, e.g. `secret = "${OTP_PLUGIN_WEBHOOK_SECRET}"`) and `timeout_ms`
//! (optional, shortens the manifest's outbound timeouts). The manifest's `[outbound] allow`
//! must cover the URL.
//!
//! Outcome: a 2xx answer delivers; 400, 410 or 422 means the receiver refuses this
//! credential (*undeliverable*: 400 `CREDENTIAL:INVALID`); any other answer (401, 403 and
//! 404 included: a rotated secret or a wrong URL is not the user's doing), a timeout, a
//! connection failure or a destination the manifest does not allow is *unavailable* (503
//! `SEND:UNAVAILABLE`, the client may retry). The body holds the code: it is never logged.

use otp_plugin_sdk::{config, log, Message, RequestContext, SendError, Sender};

pub mod webhook;

/// The exported sender.
pub struct WebhookSender;

impl Sender for WebhookSender {
    fn send(msg: &Message, _ctx: &RequestContext) -> Result<(), SendError> {
        let setup =
            |e: String| SendError::Unavailable(format!("webhook-sender configuration: {e}"));
        let url = config::require("url").map_err(setup)?;
        let key = standard_webhooks::decode_secret(&config::require("secret").map_err(setup)?)
            .map_err(setup)?;
        let timeout = standard_webhooks::timeout_from_config().map_err(setup)?;
        let user_agent = "otp-server-webhook-sender/0.2";
        match standard_webhooks::post(&url, &key, user_agent, webhook::payload(msg), timeout) {
            Ok(delivery) => {
                let outcome = webhook::outcome(delivery.status);
                if outcome.is_err() {
                    log::warn(&format!(
                        "webhook {} answered {}",
                        delivery.id, delivery.status
                    ));
                }
                outcome
            }
            Err((id, error)) => {
                log::warn(&format!("webhook {id} not delivered: {error}"));
                Err(SendError::Unavailable(format!("webhook: {error}")))
            }
        }
    }
}

otp_plugin_sdk::export_sender!(WebhookSender);
