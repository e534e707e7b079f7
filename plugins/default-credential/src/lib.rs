//! default-credential: otp-server's catch-all credential validator.
//!
//! Any non-empty JSON value names a credential; its id is the value's compact JSON text and
//! its channel is `default`. See [`rules::credential_id`] for exactly what is accepted.

use otp_plugin_sdk::{Credential, CredentialValidator, RequestContext};

pub mod rules;

/// The channel of every credential this plugin accepts.
pub const CHANNEL: &str = "default";

/// The exported validator.
pub struct DefaultCredential;

impl CredentialValidator for DefaultCredential {
    fn validate(body: &str, _ctx: &RequestContext) -> Result<Credential, String> {
        rules::credential_id(body).map(|id| Credential::new(id, CHANNEL))
    }
}

otp_plugin_sdk::export_credential_validator!(DefaultCredential);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_uses_the_default_channel() {
        let credential =
            DefaultCredential::validate(" \"bob\" ", &RequestContext::default()).unwrap();
        assert_eq!(credential, Credential::new("\"bob\"", "default"));
        assert!(DefaultCredential::validate("null", &RequestContext::default()).is_err());
    }
}
