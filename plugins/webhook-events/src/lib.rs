//! webhook-events: the audit sink that POSTs each batch of events as JSON to a configured
//! URL, signed per Standard Webhooks like `webhook-sender`.
//!
//! Manifest `[config]`: `url` (required), `secret` (required, `whsec_<base64>`, from the
//! environment) and `timeout_ms` (optional). The manifest's `[outbound] allow` must cover
//! the URL. The body is `{"events": [CloudEvent, …]}`, each event in the CloudEvents 1.0
//! JSON format (`specversion`, `id`, `type`, `time`, `source`, `subject`,
//! `datacontenttype`, `data`). A 2xx answer delivers the batch; anything else fails it
//! (the server logs and counts the lost events and goes on with the next batch after a pause).

use otp_plugin_sdk::{config, AuditEvent, EventSink};

/// The exported sink.
pub struct WebhookEvents;

impl EventSink for WebhookEvents {
    fn deliver(batch: &[AuditEvent]) -> Result<(), String> {
        let setup = |e: String| format!("webhook-events configuration: {e}");
        let url = config::require("url").map_err(setup)?;
        let key = standard_webhooks::decode_secret(&config::require("secret").map_err(setup)?)
            .map_err(setup)?;
        let timeout = standard_webhooks::timeout_from_config().map_err(setup)?;
        let user_agent = "otp-server-webhook-events/0.2";
        match standard_webhooks::post(&url, &key, user_agent, payload(batch), timeout) {
            Ok(delivery) if (200..300).contains(&delivery.status) => Ok(()),
            Ok(delivery) => Err(format!(
                "webhook {} answered {}",
                delivery.id, delivery.status
            )),
            Err((id, error)) => Err(format!("webhook {id} not delivered: {error}")),
        }
    }
}

otp_plugin_sdk::export_event_sink!(WebhookEvents);

/// `{"events": [...]}` with each event as a CloudEvents 1.0 JSON object.
pub fn payload(batch: &[AuditEvent]) -> String {
    let events: Vec<serde_json::Value> = batch
        .iter()
        .map(|e| {
            let data: serde_json::Value =
                serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null);
            let mut event = serde_json::json!({
                "specversion": "1.0",
                "id": e.id,
                "type": e.kind,
                "time": e.time,
                "source": e.source,
                "datacontenttype": "application/json",
                "data": data,
            });
            if let Some(subject) = &e.subject {
                event["subject"] = subject.clone().into();
            }
            event
        })
        .collect();
    serde_json::json!({ "events": events }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_a_cloudevent() {
        let batch = [AuditEvent {
            id: "e1".into(),
            kind: "otp.code.sent".into(),
            time: "2026-12-03T10:00:00.000Z".into(),
            source: "/otp-server".into(),
            subject: Some("cred_ab".into()),
            data: r#"{"channel":"sms"}"#.into(),
        }];
        let v: serde_json::Value = serde_json::from_str(&payload(&batch)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"events": [{
                "specversion": "1.0", "id": "e1", "type": "otp.code.sent",
                "time": "2026-12-03T10:00:00.000Z", "source": "/otp-server",
                "subject": "cred_ab", "datacontenttype": "application/json",
                "data": {"channel": "sms"}
            }]})
        );
    }
}
