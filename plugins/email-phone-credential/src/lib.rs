//! email-phone-credential: a credential validator for email addresses and phone numbers.
//!
//! Accepts `{"email": "..."}`, `{"phone": "+..."}` or a bare JSON string holding either.
//! Email addresses get channel `email`, phone numbers (normalized to E.164) channel `sms`,
//! and each its destination group (`email:example.com`, `sms:+44`) for the server's abuse
//! limits. The rules live in [`normalize`] and [`group`].

use otp_plugin_sdk::{Credential, CredentialValidator, RequestContext};

pub mod group;
pub mod normalize;

/// The exported validator.
pub struct EmailPhoneCredential;

impl CredentialValidator for EmailPhoneCredential {
    fn validate(body: &str, _ctx: &RequestContext) -> Result<Credential, String> {
        normalize::parse_body(body).map(|(id, channel)| {
            let group = group::destination_group(&id, channel);
            Credential::new(id, channel).with_group(group)
        })
    }
}

otp_plugin_sdk::export_credential_validator!(EmailPhoneCredential);
