//! A webhook receiver for the `webhook-sender` plugin: a small axum server on
//! `127.0.0.1:0`, on a runtime of its own, that records every request, answers as told
//! (a status, or after a delay), and keeps the latest code per credential. It also
//! verifies Standard Webhooks signatures, independently of the plugin's code.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON webhook body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// How the receiver answers.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// `204 No Content`.
    Accept,
    /// This status, at once.
    Status(u16),
    /// `204` after this long.
    Slow(Duration),
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    /// Credential id → latest code, for the load generator (keeps no history).
    codes: Mutex<HashMap<String, String>>,
    grew: Condvar,
    behaviour: Mutex<Option<Behaviour>>,
    /// Whether to keep every delivery (tests) or only the codes (load generation).
    record: bool,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:PORT/hook`
    pub url: String,
    pub port: u16,
    shared: Arc<Shared>,
    _serving: crate::serve::Serving,
}

impl WebhookReceiver {
    /// A receiver that records every delivery.
    pub fn start() -> WebhookReceiver {
        Self::spawn(true, 1)
    }

    /// A receiver that only keeps the latest code per credential, on `threads` threads.
    pub fn start_for_load(threads: usize) -> WebhookReceiver {
        Self::spawn(false, threads)
    }

    fn spawn(record: bool, threads: usize) -> WebhookReceiver {
        let shared = Arc::new(Shared {
            record,
            ..Shared::default()
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(shared.clone());
        let serving = crate::serve::serve("webhook-receiver", app, threads);
        WebhookReceiver {
            url: format!("http://127.0.0.1:{}/hook", serving.port),
            port: serving.port,
            shared,
            _serving: serving,
        }
    }

    /// Changes how the receiver answers from now on.
    pub fn behave(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = Some(behaviour);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.deliveries.lock().unwrap().len()
    }

    /// Waits until `n` deliveries have arrived and returns the `n`-th (1-based).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Option<Delivery> {
        let deadline = Instant::now() + timeout;
        let mut deliveries = self.shared.deliveries.lock().unwrap();
        loop {
            if deliveries.len() >= n {
                return Some(deliveries[n - 1].clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            deliveries = self
                .shared
                .grew
                .wait_timeout(deliveries, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// The latest code delivered for a credential id, taking it out.
    pub fn take_code(&self, credential_id: &str) -> Option<String> {
        self.shared.codes.lock().unwrap().remove(credential_id)
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let behaviour = shared
        .behaviour
        .lock()
        .unwrap()
        .unwrap_or(Behaviour::Accept);
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
        if let (Some(id), Some(code)) = (json["credential"].as_str(), json["code"].as_str()) {
            shared
                .codes
                .lock()
                .unwrap()
                .insert(id.to_string(), code.to_string());
        }
    }
    if shared.record {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        shared.deliveries.lock().unwrap().push(Delivery {
            headers,
            body: body.to_vec(),
        });
        shared.grew.notify_all();
    }
    match behaviour {
        Behaviour::Accept => StatusCode::NO_CONTENT,
        Behaviour::Status(status) => {
            StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT)
        }
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::NO_CONTENT
        }
    }
}

/// Checks a delivery's Standard Webhooks signature with the `whsec_<base64>` secret:
/// `webhook-signature` must hold `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`
/// (one of its space-separated entries), and the timestamp must be within five minutes.
pub fn verify_signature(secret: &str, delivery: &Delivery) -> Result<(), String> {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("secret: {e}"))?;
    let id = delivery.header("webhook-id").ok_or("no webhook-id")?;
    let timestamp = delivery
        .header("webhook-timestamp")
        .ok_or("no webhook-timestamp")?;
    let signatures = delivery
        .header("webhook-signature")
        .ok_or("no webhook-signature")?;
    let ts: u64 = timestamp
        .parse()
        .map_err(|_| "webhook-timestamp is not a number")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(ts) > 300 {
        return Err(format!("timestamp {ts} is not within 5 minutes of {now}"));
    }
    let mut signed = format!("{id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(&delivery.body);
    for entry in signatures.split(' ') {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
        mac.update(&signed);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no valid v1 signature in {signatures:?}"))
}
