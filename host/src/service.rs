//! The OTP service: the imperative shell around the pure protocol.
//!
//! For each request it opens the cookie ([`crate::crypto`]), checks that the cookie's
//! single-use id is still live ([`crate::store`]), runs one protocol transition
//! ([`crate::protocol`]), performs the effects in a safe order (retire the old id
//! atomically *before* sending, so a replayed cookie can never trigger another send),
//! calls the hooks ([`crate::plugins`]) and seals the successor cookie. It knows
//! nothing about HTTP beyond the [`ApiError`] it returns.
//!
//! The abuse controls ([`crate::limits`]) are consulted before anything changes: every
//! request first (`before_request`), before a send (`before_send`), and around the
//! comparison of a code (`before_verify` / `after_verify`), so a refused request retires
//! no id, leaves the cookie as it was, costs no attempt and sends nothing.

use crate::clock::Clock;
use crate::crypto::{CookieError, KeyStore, SessionCookie};
use crate::http::error::{ApiError, CookieAction, ErrorCode};
use crate::limits::{GuessOutcome, Limits};
use crate::plugins::{
    self, CodeDelivery, HookError, PluginRegistry, PluginResponse, RequestContext,
};
use crate::protocol::{self, OsCodeSource, Session, SessionId, SessionState, Settings, Transition};
use crate::store::IdStore;
use std::sync::Arc;

/// A successful create or resend: the state to show and the new cookie.
#[derive(Debug)]
pub struct SessionAnswer {
    pub state: SessionState,
    pub cookie: CookieAction,
}

/// A successful verification: the final action's response; the cookie is deleted.
#[derive(Debug)]
pub struct VerifiedAnswer {
    pub response: PluginResponse,
    pub cookie: CookieAction,
}

pub struct OtpService {
    settings: Settings,
    keys: Arc<dyn KeyStore>,
    ids: Arc<dyn IdStore>,
    clock: Arc<dyn Clock>,
    hooks: Arc<PluginRegistry>,
    limits: Arc<Limits>,
}

/// Why a cookie could not be used; all of them answer `OTP:INVALID_COOKIE`.
enum Unusable {
    Missing,
    Invalid,
}

impl OtpService {
    pub fn new(
        settings: Settings,
        keys: Arc<dyn KeyStore>,
        ids: Arc<dyn IdStore>,
        clock: Arc<dyn Clock>,
        hooks: Arc<PluginRegistry>,
        limits: Arc<Limits>,
    ) -> OtpService {
        OtpService {
            settings,
            keys,
            ids,
            clock,
            hooks,
            limits,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the session store answers (for `/ready`).
    pub async fn store_ready(&self) -> Result<(), crate::store::StoreError> {
        self.ids.ping().await
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// `POST /api/otp/create` after the body has been checked to be JSON.
    pub async fn create(
        &self,
        cookie: Option<&str>,
        body: &str,
        context: &RequestContext,
    ) -> Result<SessionAnswer, ApiError> {
        let client = context.client_ip.as_deref();
        self.limits.before_request(client).await?;
        let credential = self.hooks.validate(body, context).await?;
        let now = self.now_ms();
        // An unusable cookie on create simply starts a new session.
        let previous = match cookie {
            Some(value) => self.open(value, now).await?.ok(),
            None => None,
        };
        let new_id = self.ids.successor_id(previous.as_ref().map(|s| &s.id));
        let transition = protocol::create(
            previous.as_ref(),
            new_id,
            &credential.id,
            &credential.channel,
            now,
            &self.settings,
            &mut OsCodeSource,
        )?;
        let ttl = ttl_ms(&transition.session, now);
        if transition.send.is_some() {
            self.limits
                .before_send(client, &credential.id, &credential.channel)
                .await?;
        }

        match &previous {
            Some(old) => {
                if !self.ids.replace(old.id, new_id, ttl, now).await? {
                    return Err(invalid_cookie());
                }
            }
            None => self.ids.create(new_id, ttl, now).await?,
        }
        if let Some(send) = transition.send {
            if let Err(error) = self.send(&transition, send, context).await {
                self.undo(previous.as_ref(), new_id, now).await;
                return Err(error.into());
            }
        }
        Ok(self.seal(transition))
    }

    /// `POST /api/otp/resend`.
    pub async fn resend(
        &self,
        cookie: Option<&str>,
        context: &RequestContext,
    ) -> Result<SessionAnswer, ApiError> {
        let client = context.client_ip.as_deref();
        self.limits.before_request(client).await?;
        let now = self.now_ms();
        let session = self.open_required(cookie, now).await?;
        let new_id = self.ids.successor_id(Some(&session.id));
        let transition =
            match protocol::resend(&session, new_id, now, &self.settings, &mut OsCodeSource) {
                Ok(transition) => transition,
                Err(refused) => return Err(self.refusal(&session, refused, now).await),
            };
        let ttl = ttl_ms(&transition.session, now);
        if let Some(token) = transition
            .send
            .and_then(|send| transition.session.tokens.get(send.token))
        {
            self.limits
                .before_send(client, &token.credential_id, &token.channel)
                .await?;
        }
        if !self.ids.replace(session.id, new_id, ttl, now).await? {
            return Err(invalid_cookie().with_cookie(CookieAction::Delete));
        }
        let Some(send) = transition.send else {
            return Ok(self.seal(transition));
        };
        match self.send(&transition, send, context).await {
            Ok(()) => Ok(self.seal(transition)),
            Err(HookError::Undeliverable(reason)) => {
                // The credential cannot receive codes: block it in this session so the
                // client cannot keep asking, and hand back the session that says so.
                tracing::info!(%reason, "sender: credential undeliverable on resend; token blocked");
                let blocked = protocol::block_current(transition, now, &self.settings);
                let answer = self.seal(blocked);
                Err(ApiError::new(ErrorCode::CredentialInvalid)
                    .with_state(answer.state)
                    .with_cookie(answer.cookie))
            }
            Err(error) => {
                self.undo(Some(&session), new_id, now).await;
                Err(error.into())
            }
        }
    }

    /// `POST /api/otp/verify` with a code already checked for format.
    pub async fn verify(
        &self,
        cookie: Option<&str>,
        code: &str,
        context: &RequestContext,
    ) -> Result<VerifiedAnswer, ApiError> {
        let client = context.client_ip.as_deref();
        self.limits.before_request(client).await?;
        let now = self.now_ms();
        let session = self.open_required(cookie, now).await?;
        let reservation = match session.current_token() {
            Some(token) => {
                self.limits
                    .before_verify(client, &token.credential_id)
                    .await?
            }
            None => Default::default(),
        };
        let result = self.verify_code(&session, code, now, context).await;
        let guess = match &result {
            Ok(_) => GuessOutcome::Verified,
            Err(e) if matches!(e.code, ErrorCode::Incorrect | ErrorCode::TooManyAttempts) => {
                GuessOutcome::Failed
            }
            Err(_) => GuessOutcome::NoGuess,
        };
        self.limits.after_verify(reservation, guess).await;
        result
    }

    /// Compares the code and records the outcome (the part of verify the failure
    /// budgets reserve for).
    async fn verify_code(
        &self,
        session: &Session,
        code: &str,
        now: u64,
        context: &RequestContext,
    ) -> Result<VerifiedAnswer, ApiError> {
        let new_id = self.ids.successor_id(Some(&session.id));
        let outcome = match protocol::verify(session, new_id, code, now, &self.settings) {
            Ok(outcome) => outcome,
            Err(refused) => return Err(self.refusal(session, refused, now).await),
        };
        match outcome {
            protocol::VerifyOutcome::Verified {
                credential_id,
                channel,
            } => {
                if !self.ids.consume(session.id, now).await? {
                    return Err(invalid_cookie().with_cookie(CookieAction::Delete));
                }
                let credential = plugins::Credential {
                    id: credential_id,
                    channel,
                };
                let response = self
                    .hooks
                    .complete(&credential, context)
                    .await
                    .map_err(|e| ApiError::from(e).with_cookie(CookieAction::Delete))?;
                Ok(VerifiedAnswer {
                    response,
                    cookie: CookieAction::Delete,
                })
            }
            protocol::VerifyOutcome::Rejected {
                session: next,
                error,
            } => {
                let ttl = ttl_ms(&next, now);
                if !self.ids.replace(session.id, new_id, ttl, now).await? {
                    return Err(invalid_cookie().with_cookie(CookieAction::Delete));
                }
                let cookie = self.seal_session(&next);
                Err(ApiError::from(error).with_cookie(cookie))
            }
        }
    }

    async fn send(
        &self,
        transition: &Transition,
        send: protocol::SendCode,
        context: &RequestContext,
    ) -> Result<(), HookError> {
        let Some(token) = transition.session.tokens.get(send.token) else {
            return Err(HookError::Failed {
                plugin: "host".into(),
                reason: "transition named a token that does not exist".into(),
            });
        };
        let delivery = CodeDelivery {
            credential_id: token.credential_id.clone(),
            channel: token.channel.clone(),
            code: token.code.clone(),
            expires_at_ms: token.expires_at_ms,
            kind: match send.kind {
                protocol::SendKind::First => plugins::SendKind::First,
                protocol::SendKind::Resend => plugins::SendKind::Resend,
            },
        };
        self.hooks.send(&delivery, context).await
    }

    /// Puts the ids back as they were before a transition whose send failed, so the
    /// client's cookie keeps working ("nothing changes").
    async fn undo(&self, previous: Option<&Session>, new_id: SessionId, now: u64) {
        let outcome = match previous {
            Some(old) => {
                self.ids
                    .replace(new_id, old.id, ttl_ms(old, now), now)
                    .await
            }
            None => self.ids.consume(new_id, now).await,
        };
        if let Err(error) = outcome {
            tracing::warn!(%error, "could not restore the session id after a failed send");
        }
    }

    /// The answer to a transition the protocol refused. A refusal touches no id, so
    /// it must first make sure the cookie state is still live: a used-up state is
    /// `OTP:INVALID_COOKIE` whatever the protocol would have said about it.
    async fn refusal(
        &self,
        session: &Session,
        refused: protocol::ProtocolError,
        now: u64,
    ) -> ApiError {
        match self.ids.contains(session.id, now).await {
            Ok(true) => refused.into(),
            Ok(false) => invalid_cookie().with_cookie(CookieAction::Delete),
            Err(error) => error.into(),
        }
    }

    /// Opens a cookie that the request must carry, without checking its id: resend and
    /// verify retire the id atomically (or, when refused, check it) afterwards, which
    /// keeps the request to one store round trip.
    async fn open_required(&self, cookie: Option<&str>, now: u64) -> Result<Session, ApiError> {
        let Some(value) = cookie else {
            return Err(invalid_cookie());
        };
        match self.decrypt(value, now).await? {
            Ok(session) => Ok(session),
            Err(Unusable::Missing) => Err(invalid_cookie()),
            Err(Unusable::Invalid) => Err(invalid_cookie().with_cookie(CookieAction::Delete)),
        }
    }

    /// Decrypts a cookie and checks that its id is still live. Store errors are the
    /// only `Err`; an unusable cookie is `Ok(Err(_))`.
    async fn open(&self, value: &str, now: u64) -> Result<Result<Session, Unusable>, ApiError> {
        let session = match self.decrypt(value, now).await? {
            Ok(session) => session,
            Err(unusable) => return Ok(Err(unusable)),
        };
        if !self.ids.contains(session.id, now).await? {
            return Ok(Err(Unusable::Invalid));
        }
        Ok(Ok(session))
    }

    /// Authenticates and decodes a cookie.
    async fn decrypt(&self, value: &str, now: u64) -> Result<Result<Session, Unusable>, ApiError> {
        if value.is_empty() {
            return Ok(Err(Unusable::Missing));
        }
        let opened = match SessionCookie::open(value, &*self.keys) {
            // Sealed with a key this instance has not seen: another instance may have
            // rotated a moment ago. Fetch it from the shared store and try once more.
            Err(CookieError::UnknownKey) => match SessionCookie::key_id(value) {
                Some(id) if self.keys.fetch(&id, now).await?.is_some() => {
                    SessionCookie::open(value, &*self.keys)
                }
                _ => Err(CookieError::UnknownKey),
            },
            other => other,
        };
        let session = match opened {
            Ok(session) => session,
            Err(CookieError::Corrupt(id)) => {
                // It authenticated, so it was sealed with one of our keys, yet it does
                // not decode: either a bug or someone holding a key. Stop using that key,
                // and end the session it claims to be.
                if let Some(id) = id {
                    self.ids.consume(id, now).await?;
                }
                tracing::warn!(
                    "a cookie authenticated but did not decode: rotating the key-encryption key"
                );
                self.keys.force_rotation(now).await?;
                return Ok(Err(Unusable::Invalid));
            }
            Err(_) => return Ok(Err(Unusable::Invalid)),
        };
        Ok(Ok(session))
    }

    fn seal(&self, transition: Transition) -> SessionAnswer {
        let cookie = self.seal_session(&transition.session);
        SessionAnswer {
            state: transition.state,
            cookie,
        }
    }

    fn seal_session(&self, session: &Session) -> CookieAction {
        let kek = self.keys.current();
        CookieAction::Set {
            value: SessionCookie::seal(session, &kek),
            expires_at_ms: session.expires_at_ms(),
        }
    }
}

fn ttl_ms(session: &Session, now: u64) -> u64 {
    session.expires_at_ms().saturating_sub(now).max(1)
}

fn invalid_cookie() -> ApiError {
    ApiError::new(ErrorCode::InvalidCookie)
}
