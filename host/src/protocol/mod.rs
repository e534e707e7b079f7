//! The OTP session protocol as a pure state machine.
//!
//! Nothing in here performs I/O, reads a clock or touches the OS random number generator
//! (except the explicitly-named [`OsCodeSource`] and [`SessionId::random`], which the shell
//! calls). Each transition ([`create`], [`resend`], [`block_current`], [`verify`]) is a
//! function of the previous session contents, the request input, `now` and the
//! [`Settings`]; it returns the next session contents, what the shell must do (send a code,
//! consume the session id) and the [`SessionState`] to show the client. The shell (HTTP
//! layer) owns everything around it: opening and sealing cookies ([`crate::crypto`]),
//! single-use session ids ([`crate::store`]) and calling the hooks.

mod code;
mod error;
mod session;
mod settings;
mod state;
mod time;
mod transition;

pub use code::{codes_match, Alphabet, CodeSource, OsCodeSource, SequentialCodeSource};
pub use error::ProtocolError;
pub use session::{
    Session, SessionId, Token, HARD_MAX_CHANNEL_LEN, HARD_MAX_CODE_LEN, HARD_MAX_CREDENTIAL_ID_LEN,
    HARD_MAX_TOKENS,
};
pub use settings::{Rule, Settings, SettingsError, SettingsField};
pub use state::SessionState;
pub use time::{ceil_to_second, floor_to_second, iso8601_ms};
pub use transition::{
    block_current, create, resend, verify, SendCode, SendKind, Transition, VerifyOutcome,
};
