//! dev-sender: a sender for development that writes each code to the server log.
//!
//! It never fails and delivers nothing: it lets a developer (or a test) read the code from the
//! log. Do not use it in production, where codes must never reach a log.

use otp_plugin_sdk::{log, Message, RequestContext, SendError, Sender};

pub mod line;

/// The exported sender.
pub struct DevSender;

impl Sender for DevSender {
    fn send(msg: &Message, _ctx: &RequestContext) -> Result<(), SendError> {
        log::info(&line::otp_line(msg));
        Ok(())
    }
}

otp_plugin_sdk::export_sender!(DevSender);
