//! The log line dev-sender writes for each code.
//!
//! The black-box tests parse `OTP for <id> via <channel>: <code>` out of the server log, so
//! this format is a contract. `fixture-all` includes this file to write the same line.

use otp_plugin_sdk::Message;

/// `OTP for <credential-id> via <channel>: <code> (<first|resend>, expires at <ms>)`.
pub fn otp_line(msg: &Message) -> String {
    format!(
        "OTP for {} via {}: {} ({}, expires at {})",
        msg.credential_id, msg.channel, msg.code, msg.kind, msg.expires_at
    )
}

#[cfg(test)]
mod tests {
    use super::otp_line;
    use otp_plugin_sdk::{Message, SendKind};

    #[test]
    fn line_format() {
        let mut msg = Message {
            credential_id: "\"bob\"".into(),
            channel: "default".into(),
            code: "042137".into(),
            expires_at: 1_700_000_000_000,
            kind: SendKind::First,
        };
        assert_eq!(
            otp_line(&msg),
            "OTP for \"bob\" via default: 042137 (first, expires at 1700000000000)"
        );
        msg.kind = SendKind::Resend;
        assert!(otp_line(&msg).ends_with("(resend, expires at 1700000000000)"));
    }
}
