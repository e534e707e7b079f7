//! The OTP service: the imperative shell around the pure protocol.
//!
//! For each request it opens the cookie ([`crate::crypto`]), checks that the cookie's
//! single-use id is still live ([`crate::store`]), runs one protocol transition
//! ([`crate::protocol`]), performs the effects in a safe order (retire the old id
//! atomically *before* sending, so a replayed cookie can never trigger another send;
//! take the final action's call slot *before* spending the id, so a verified user is
//! never left without a session when the final action cannot run), calls the hooks
//! through the [`Hooks`] trait and seals the successor cookie, and records what
//! happened as audit events ([`crate::events`]).
//!
//! The abuse controls ([`crate::limits`]) are consulted before anything changes: every
//! request first (requests per client network), before a send (the destination group's
//! lists, the send budgets, the fraud guard), and around the comparison of a code (a
//! failure reserved before, given back after a right code or no guess), so a refused
//! request retires no id, leaves the cookie as it was, costs no attempt and sends nothing.
//! A charge carries the request's id change ([`IdChange`]; for a verify, the pure
//! protocol's verdict on the code is known first), so a store that holds both — one
//! Redis, or a Redis Cluster for ids in the limiter's slot — makes the two in one round
//! trip; otherwise the id store makes the change.
//!
//! It speaks its own vocabulary: a [`ServiceError`] says what went wrong and what to do
//! with the cookie ([`CookieAction`]); only the HTTP layer turns that into statuses and
//! wire codes.

use crate::clock::Clock;
use crate::crypto::{CookieError, KeyStore, SessionCookie};
use crate::events::{AuditLog, Subject};
use crate::limits::{GuessOutcome, LimitError, Limits, RateLimited, SendCharge};
use crate::plugins::{
    self, CodeDelivery, Hook, HookError, Hooks, PluginResponse, RequestContext, SendFailure,
};
use crate::protocol::{
    self, OsCodeSource, ProtocolError, Session, SessionId, SessionState, Settings, Transition,
};
use crate::store::{IdChange, IdStore, StoreError};
use std::sync::Arc;

#[cfg(test)]
mod tests;

/// What to do with the session cookie alongside an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CookieAction {
    Keep,
    /// A new cookie value, to expire at `expires_at_ms`, which is `max_age_secs` from
    /// now (rounded up): browsers count `Max-Age` on their own clock from when they
    /// receive it, so a client clock minutes ahead does not drop a live session as an
    /// `Expires` alone would.
    Set {
        value: String,
        expires_at_ms: u64,
        max_age_secs: u64,
    },
    Delete,
}

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

/// Why a request was not served, and what to do with the cookie.
#[derive(Debug)]
pub struct ServiceError {
    pub kind: ServiceErrorKind,
    pub cookie: CookieAction,
}

/// What went wrong, in the service's words.
#[derive(Debug, thiserror::Error)]
pub enum ServiceErrorKind {
    /// The cookie is missing, unreadable, expired or already used.
    #[error("the session cookie is missing, invalid or already used")]
    InvalidCookie,
    /// The protocol refused the request (it may carry the session state to show).
    #[error(transparent)]
    Refused(#[from] ProtocolError),
    /// The validation plugin rejected the credential.
    #[error("the credential was rejected")]
    CredentialRejected,
    /// The sender says the credential cannot receive codes; on a resend the session
    /// now blocks it, and `state` shows that.
    #[error("the credential cannot receive codes")]
    Undeliverable { state: Option<SessionState> },
    /// The sender had a transient failure; nothing changed (unless an earlier sender of
    /// its chain may have sent: then the session moved on, see `OtpService::maybe_sent`).
    #[error("the code cannot be sent right now")]
    SendUnavailable,
    /// A plugin trapped, timed out, ran out of memory or answered nonsense.
    #[error("plugin {plugin} failed")]
    PluginFailed { plugin: String },
    /// No plugin serves the hook, or its call slots (or its share of the instance pool) are
    /// all taken.
    #[error("the {hook} hook cannot run now")]
    PluginUnavailable { hook: Hook, busy: bool },
    /// The session store (or the limiter store, failing closed) did not answer.
    #[error("the session store is unavailable")]
    StoreUnavailable,
    /// A send or guess budget ran out; nothing changed.
    #[error("rate limited: {}", .0.policy)]
    RateLimited(RateLimited),
    /// The credential's destination group is denied (or not on the allow list).
    #[error("the destination is not allowed")]
    CredentialNotAllowed,
}

impl ServiceError {
    fn new(kind: ServiceErrorKind) -> ServiceError {
        ServiceError {
            kind,
            cookie: CookieAction::Keep,
        }
    }

    fn with_cookie(mut self, cookie: CookieAction) -> ServiceError {
        self.cookie = cookie;
        self
    }

    fn invalid_cookie() -> ServiceError {
        ServiceError::new(ServiceErrorKind::InvalidCookie)
    }

    /// Whether a code was compared and was wrong (the guess counts against the
    /// failure budgets).
    fn is_wrong_code(&self) -> bool {
        matches!(
            self.kind,
            ServiceErrorKind::Refused(ProtocolError::Incorrect(_))
                | ServiceErrorKind::Refused(ProtocolError::TooManyAttempts(_))
        )
    }
}

impl From<ProtocolError> for ServiceError {
    fn from(error: ProtocolError) -> Self {
        ServiceError::new(ServiceErrorKind::Refused(error))
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "session store error");
        ServiceError::new(ServiceErrorKind::StoreUnavailable)
    }
}

impl From<HookError> for ServiceError {
    fn from(error: HookError) -> Self {
        let kind = match error {
            // The plugin's reason goes to the log, not to the client: it may reveal how
            // validation works, and it is the operator who can act on it.
            HookError::Rejected(reason) => {
                tracing::info!(%reason, "credential rejected by the validation plugin");
                ServiceErrorKind::CredentialRejected
            }
            HookError::Undeliverable(reason) => {
                tracing::info!(%reason, "sender: credential undeliverable");
                ServiceErrorKind::Undeliverable { state: None }
            }
            HookError::Unavailable(reason) => {
                tracing::warn!(%reason, "sender unavailable");
                ServiceErrorKind::SendUnavailable
            }
            HookError::Failed { plugin, .. } => ServiceErrorKind::PluginFailed { plugin },
            HookError::Unbound(hook) => ServiceErrorKind::PluginUnavailable { hook, busy: false },
            HookError::Busy(hook) => ServiceErrorKind::PluginUnavailable { hook, busy: true },
        };
        ServiceError::new(kind)
    }
}

pub struct OtpService {
    settings: Settings,
    keys: Arc<dyn KeyStore>,
    ids: Arc<dyn IdStore>,
    clock: Arc<dyn Clock>,
    hooks: Arc<dyn Hooks>,
    audit: Arc<AuditLog>,
    limits: Arc<Limits>,
}

/// Why a cookie could not be used; all of them answer "invalid cookie".
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
        hooks: Arc<dyn Hooks>,
        audit: Arc<AuditLog>,
        limits: Arc<Limits>,
    ) -> OtpService {
        OtpService {
            settings,
            keys,
            ids,
            clock,
            hooks,
            audit,
            limits,
        }
    }

    /// The abuse controls (for `/ready`).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every OTP request is charged to its network's request budget exactly once, before
    /// it changes anything: folded into its send or verify charge, or — when it ended
    /// before those (a rejected credential, an unusable cookie, a protocol refusal) —
    /// here, alone; a refusal then answers instead of the request's own error.
    async fn charge_unless_charged<T>(
        &self,
        charged: bool,
        result: Result<T, ServiceError>,
        context: &RequestContext,
    ) -> Result<T, ServiceError> {
        if charged {
            return result;
        }
        match self
            .limits
            .before_request(context.client_ip.as_deref())
            .await
        {
            Err(refused) if result.is_err() => Err(self.limited(refused, context)),
            _ => result,
        }
    }

    /// Refuses at once a client network whose request budget this instance saw run out,
    /// before any plugin runs or any store is asked ([`Limits::before_anything`]).
    fn spent_network(&self, context: &RequestContext) -> Result<(), ServiceError> {
        self.limits
            .before_anything(context.client_ip.as_deref())
            .map_err(|e| self.limited(e, context))
    }

    /// A limits refusal in the service's words, recorded as an audit event.
    fn limited(&self, error: LimitError, context: &RequestContext) -> ServiceError {
        match error {
            LimitError::Limited(limited) => {
                crate::metrics::rate_limited(limited.policy);
                self.audit.emit("otp.rate_limited", Subject::None, || {
                    serde_json::json!({
                        "policy": limited.policy,
                        "retryAfter": limited.retry_after_secs,
                        "requestId": context.request_id,
                    })
                });
                ServiceError::new(ServiceErrorKind::RateLimited(limited))
            }
            LimitError::NotAllowed => {
                crate::metrics::rate_limited("group_not_allowed");
                ServiceError::new(ServiceErrorKind::CredentialNotAllowed)
            }
            LimitError::Unavailable(error) => error.into(),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether the session store answers (for `/ready`).
    pub async fn store_ready(&self) -> Result<(), StoreError> {
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
    ) -> Result<SessionAnswer, ServiceError> {
        self.spent_network(context)?;
        let mut charged = false;
        let result = self.create_once(cookie, body, context, &mut charged).await;
        self.charge_unless_charged(charged, result, context).await
    }

    async fn create_once(
        &self,
        cookie: Option<&str>,
        body: &str,
        context: &RequestContext,
        charged: &mut bool,
    ) -> Result<SessionAnswer, ServiceError> {
        let client = context.client_ip.as_deref();
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
        let change = match &previous {
            Some(old) => successor(old, new_id, &transition.session, now),
            None => IdChange::Create {
                id: new_id,
                ttl_ms: ttl_ms(&transition.session, now),
            },
        };
        *charged = true;
        let charge = match transition.send {
            Some(_) => {
                let group = credential.group.as_deref().unwrap_or(&credential.channel);
                self.limits
                    .before_send(client, &credential.id, Some(group), Some(change))
                    .await
            }
            None => self
                .limits
                .before_request(client)
                .await
                .map(|()| SendCharge::default()),
        }
        .map_err(|e| self.limited(e, context))?;
        let charge = self
            .make_or_refund(change, charge, ServiceError::invalid_cookie(), now)
            .await?;
        if let Some(send) = transition.send {
            if let Err(failure) = self.send(&transition, send, context).await {
                if failure.moves_on() {
                    return Err(self.maybe_sent(&transition, failure.error));
                }
                self.undo(previous.as_ref(), new_id, now).await;
                if failure.sent_nothing() {
                    self.limits.after_unsent(charge).await;
                }
                return Err(failure.error.into());
            }
        }
        Ok(self.seal(transition))
    }

    /// `POST /api/otp/resend`.
    pub async fn resend(
        &self,
        cookie: Option<&str>,
        context: &RequestContext,
    ) -> Result<SessionAnswer, ServiceError> {
        self.spent_network(context)?;
        let mut charged = false;
        let result = self.resend_once(cookie, context, &mut charged).await;
        self.charge_unless_charged(charged, result, context).await
    }

    async fn resend_once(
        &self,
        cookie: Option<&str>,
        context: &RequestContext,
        charged: &mut bool,
    ) -> Result<SessionAnswer, ServiceError> {
        let client = context.client_ip.as_deref();
        let now = self.now_ms();
        let session = self.open_required(cookie, now).await?;
        let new_id = self.ids.successor_id(Some(&session.id));
        let transition =
            match protocol::resend(&session, new_id, now, &self.settings, &mut OsCodeSource) {
                Ok(transition) => transition,
                Err(refused) => return Err(self.refusal(&session, refused, None, now).await),
            };
        let change = successor(&session, new_id, &transition.session, now);
        // A spent state is turned away before it can charge: a kept copy of an old cookie,
        // replayed after each cooldown, would otherwise use up its credential's send
        // budgets and count sends for its group's fraud guard, and no code would go out.
        // (The id change after the charge still decides who wins a race; with the limits
        // off there is nothing to protect, so no extra store call.)
        if transition.send.is_some()
            && self.limits.config().enabled
            && !self.ids.contains(session.id, now).await?
        {
            return Err(ServiceError::invalid_cookie().with_cookie(CookieAction::Delete));
        }
        *charged = true;
        let charge = match transition
            .send
            .and_then(|send| transition.session.tokens.get(send.token))
        {
            // The cookie keeps no destination group: the group's lists were applied
            // when the session was created; the fraud guard finds the group itself.
            Some(token) => {
                self.limits
                    .before_send(client, &token.credential_id, None, Some(change))
                    .await
            }
            None => self
                .limits
                .before_request(client)
                .await
                .map(|()| SendCharge::default()),
        }
        .map_err(|e| self.limited(e, context))?;
        let spent = ServiceError::invalid_cookie().with_cookie(CookieAction::Delete);
        let charge = self.make_or_refund(change, charge, spent, now).await?;
        let Some(send) = transition.send else {
            return Ok(self.seal(transition));
        };
        let failure = match self.send(&transition, send, context).await {
            Ok(()) => return Ok(self.seal(transition)),
            Err(failure) => failure,
        };
        let sent_nothing = failure.sent_nothing();
        if failure.moves_on() {
            return Err(self.maybe_sent(&transition, failure.error));
        }
        match failure.error {
            HookError::Undeliverable(reason) => {
                // The credential cannot receive codes: block it in this session so the
                // client cannot keep asking, and hand back the session that says so.
                tracing::info!(%reason, "sender: credential undeliverable on resend; token blocked");
                if let Some(token) = transition.session.tokens.get(send.token) {
                    self.audit.emit(
                        "otp.session.blocked",
                        Subject::Credential(&token.credential_id),
                        || {
                            serde_json::json!({
                                "channel": token.channel,
                                "reason": "undeliverable",
                                "requestId": context.request_id,
                            })
                        },
                    );
                }
                let blocked = protocol::block_current(transition, now, &self.settings);
                let answer = self.seal(blocked);
                Err(ServiceError::new(ServiceErrorKind::Undeliverable {
                    state: Some(answer.state),
                })
                .with_cookie(answer.cookie))
            }
            error => {
                self.undo(Some(&session), new_id, now).await;
                if sent_nothing {
                    self.limits.after_unsent(charge).await;
                }
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
    ) -> Result<VerifiedAnswer, ServiceError> {
        self.spent_network(context)?;
        let client = context.client_ip.as_deref();
        let now = self.now_ms();
        let session = match self.open_required(cookie, now).await {
            Ok(session) => session,
            Err(error) => return self.charge_unless_charged(false, Err(error), context).await,
        };
        // The protocol's verdict is pure, so it is known before the charge: a wrong code
        // retires the cookie's id, a change the store may make with the charge (one
        // round trip); a refused request makes none of it. A right code or a refusal
        // changes nothing yet but asks, the same way, whether the id is live: so a spent
        // cookie state costs the same store calls whatever code comes with it, and its
        // answer's timing cannot tell a right code from a wrong one.
        let new_id = self.ids.successor_id(Some(&session.id));
        let outcome = protocol::verify(&session, new_id, code, now, &self.settings);
        let change = match &outcome {
            Ok(protocol::VerifyOutcome::Rejected { session: next, .. }) => {
                successor(&session, new_id, next, now)
            }
            _ => IdChange::Keep { id: session.id },
        };
        // The request's charge goes with the failure reservation (one store call).
        let (reservation, made) = match session.current_token() {
            Some(token) => {
                self.limits
                    .before_verify(client, &token.credential_id, Some(change))
                    .await
            }
            None => self
                .limits
                .before_request(client)
                .await
                .map(|()| Default::default()),
        }
        .map_err(|e| self.limited(e, context))?;
        let mut consumed = false;
        let result = self
            .verify_outcome(&session, outcome, new_id, made, now, context, &mut consumed)
            .await;
        let guess = match &result {
            // A right code that spent the session is a conversion, also when the final
            // action then failed: the user did receive the code.
            Ok(_) => GuessOutcome::Verified,
            Err(_) if consumed => GuessOutcome::Verified,
            // A spent cookie state replayed with a code counts as a guess too, right or
            // wrong: otherwise old cookies would be free guesses.
            Err(e) if e.is_wrong_code() || matches!(e.kind, ServiceErrorKind::InvalidCookie) => {
                GuessOutcome::Failed
            }
            Err(_) => GuessOutcome::NoGuess,
        };
        self.limits.after_verify(reservation, guess).await;
        result
    }

    /// Acts on the protocol's verdict on the code: the part of a verify that the failure
    /// budgets reserve for. `made` says whether the charge already made the verdict's id
    /// change: a wrong code's replace (to `new_id`), or the keep of a right code or a
    /// refusal (whether the id is live). `consumed` is set once a right code has spent
    /// the session, whatever the final action then answers.
    #[allow(clippy::too_many_arguments)]
    async fn verify_outcome(
        &self,
        session: &Session,
        outcome: Result<protocol::VerifyOutcome, ProtocolError>,
        new_id: SessionId,
        made: Option<bool>,
        now: u64,
        context: &RequestContext,
        consumed: &mut bool,
    ) -> Result<VerifiedAnswer, ServiceError> {
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(refused) => {
                let answer = self.refusal(session, refused, made, now).await;
                // Only a live state's refusal is a failed verification: a spent one
                // replayed is answered as any spent cookie, and recorded as nothing.
                if let ServiceErrorKind::Refused(refused) = &answer.kind {
                    self.verification_failed(session, refused, context);
                }
                return Err(answer);
            }
        };
        match outcome {
            protocol::VerifyOutcome::Verified {
                credential_id,
                channel,
            } => {
                // A spent cookie state answers as a spent cookie whatever the code, before
                // anything else could tell a right code from a wrong one (a 503 for a
                // busy final action would).
                if !self.still_live(session, made, now).await? {
                    return Err(ServiceError::invalid_cookie().with_cookie(CookieAction::Delete));
                }
                // The slot next: if the final action cannot run now (no plugin, all
                // slots busy), the session stays as it is and the client may simply
                // send the same code again.
                let action = self.hooks.reserve_final_action().await?;
                if !self.ids.consume(session.id, now).await? {
                    return Err(ServiceError::invalid_cookie().with_cookie(CookieAction::Delete));
                }
                *consumed = true;
                crate::metrics::verification("ok");
                self.audit.emit(
                    "otp.verification.succeeded",
                    Subject::Credential(&credential_id),
                    || serde_json::json!({ "channel": channel, "requestId": context.request_id }),
                );
                let credential = plugins::Credential {
                    id: credential_id,
                    channel,
                    group: None,
                };
                let response = action
                    .complete(&credential, context)
                    .await
                    .map_err(|e| ServiceError::from(e).with_cookie(CookieAction::Delete))?;
                Ok(VerifiedAnswer {
                    response,
                    cookie: CookieAction::Delete,
                })
            }
            protocol::VerifyOutcome::Rejected {
                session: next,
                error,
            } => {
                let change = successor(session, new_id, &next, now);
                if !self.make(change, made, now).await? {
                    return Err(ServiceError::invalid_cookie().with_cookie(CookieAction::Delete));
                }
                self.verification_failed(session, &error, context);
                let cookie = self.seal_session(&next);
                Err(ServiceError::from(error).with_cookie(cookie))
            }
        }
    }

    /// Records a failed verification (and the block it may have started).
    fn verification_failed(
        &self,
        session: &Session,
        error: &ProtocolError,
        context: &RequestContext,
    ) {
        let Some(token) = session.current_token() else {
            return;
        };
        let reason = match error {
            ProtocolError::Incorrect(_) => "incorrect",
            ProtocolError::TooManyAttempts(_) => "too_many_attempts",
            ProtocolError::Expired => "expired",
            ProtocolError::VerificationNotAllowed(_) => "not_allowed",
            _ => "refused",
        };
        crate::metrics::verification(reason);
        let subject = Subject::Credential(&token.credential_id);
        self.audit.emit("otp.verification.failed", subject, || {
            serde_json::json!({
                "channel": token.channel,
                "reason": reason,
                "requestId": context.request_id,
            })
        });
        let blocked = match error {
            ProtocolError::TooManyAttempts(_) => Some("too_many_attempts"),
            ProtocolError::Incorrect(state) if state.otp_blocked_until_ms.is_some() => {
                Some("temporary")
            }
            _ => None,
        };
        if let Some(block) = blocked {
            self.audit.emit(
                "otp.session.blocked",
                Subject::Credential(&token.credential_id),
                || {
                    serde_json::json!({
                        "channel": token.channel,
                        "reason": block,
                        "requestId": context.request_id,
                    })
                },
            );
        }
    }

    async fn send(
        &self,
        transition: &Transition,
        send: protocol::SendCode,
        context: &RequestContext,
    ) -> Result<(), SendFailure> {
        let Some(token) = transition.session.tokens.get(send.token) else {
            return Err(SendFailure::from(HookError::Failed {
                plugin: "host".into(),
                reason: "transition named a token that does not exist".into(),
            }));
        };
        let kind = match send.kind {
            protocol::SendKind::First => plugins::SendKind::First,
            protocol::SendKind::Resend => plugins::SendKind::Resend,
        };
        let delivery = CodeDelivery {
            credential_id: token.credential_id.clone(),
            channel: token.channel.clone(),
            code: token.code.clone(),
            expires_at_ms: token.expires_at_ms,
            kind,
        };
        let outcome = self.hooks.send(&delivery, context).await;
        let (event, reason) = match outcome.as_ref().map_err(|f| &f.error) {
            Ok(_) => ("otp.code.sent", None),
            Err(HookError::Undeliverable(_)) => ("otp.code.send_failed", Some("undeliverable")),
            Err(HookError::Unavailable(_)) => ("otp.code.send_failed", Some("unavailable")),
            Err(HookError::Unbound(_) | HookError::Busy(_)) => {
                ("otp.code.send_failed", Some("no_sender"))
            }
            Err(_) => ("otp.code.send_failed", Some("plugin_failed")),
        };
        crate::metrics::code_sent(&token.channel, kind.as_str(), reason.unwrap_or("ok"));
        self.audit
            .emit(event, Subject::Credential(&token.credential_id), || {
                let mut data = serde_json::json!({
                    "channel": token.channel,
                    "kind": kind.as_str(),
                    "requestId": context.request_id,
                });
                if let Some(reason) = reason {
                    data["reason"] = reason.into();
                }
                if let Ok(sent) = &outcome {
                    data["sender"] = (*sent.sender).into();
                }
                data
            });
        outcome.map(drop)
    }

    /// The answer to a send that failed after a sender trapped or timed out: the code
    /// may have reached its provider, so the session moves on as if it had been sent.
    /// The answer sets the new cookie (whose code is the one that may arrive) and the send
    /// counts like any other: against the session's resends and cooldown, and (the charge
    /// stays) the send budgets. Putting the old state back instead would make a resend
    /// whose sender times out after delivering free of both, and leave the user a code
    /// that cannot verify.
    fn maybe_sent(&self, transition: &Transition, error: HookError) -> ServiceError {
        ServiceError::from(error).with_cookie(self.seal_session(&transition.session))
    }

    /// Puts the ids back as they were before a transition whose send failed for sure
    /// (nothing left, or the provider refused it), so the client's cookie keeps working
    /// ("nothing changes").
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

    /// Makes a request's id change, unless the limiter's store made it with its charge
    /// (`made`, from [`Limits::before_send`] or [`Limits::before_verify`]): whether it
    /// took.
    async fn make(
        &self,
        change: IdChange,
        made: Option<bool>,
        now: u64,
    ) -> Result<bool, StoreError> {
        match made {
            Some(taken) => Ok(taken),
            None => change.apply(&*self.ids, now).await,
        }
    }

    /// Makes a charged request's id change ([`OtpService::make`]). When it does not take
    /// (another request spent the cookie state first: answered with `spent`) or fails, no
    /// code goes out, so the charge's send budgets are given back.
    async fn make_or_refund(
        &self,
        change: IdChange,
        charge: SendCharge,
        spent: ServiceError,
        now: u64,
    ) -> Result<SendCharge, ServiceError> {
        let made = self.make(change, charge.made, now).await;
        if matches!(made, Ok(true)) {
            return Ok(charge);
        }
        self.limits.after_unsent(charge).await;
        Err(match made {
            Err(error) => error.into(),
            Ok(_) => spent,
        })
    }

    /// Whether the cookie state's id is still live: the charge's answer when it asked
    /// (`made`, for a keep), else the id store's.
    async fn still_live(
        &self,
        session: &Session,
        made: Option<bool>,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.make(IdChange::Keep { id: session.id }, made, now)
            .await
    }

    /// The answer to a transition the protocol refused. A refusal touches no id, so
    /// it must first make sure the cookie state is still live (unless the charge asked
    /// already: `made`): a used-up state is an invalid cookie whatever the protocol would
    /// have said about it.
    async fn refusal(
        &self,
        session: &Session,
        refused: ProtocolError,
        made: Option<bool>,
        now: u64,
    ) -> ServiceError {
        match self.still_live(session, made, now).await {
            Ok(true) => refused.into(),
            Ok(false) => ServiceError::invalid_cookie().with_cookie(CookieAction::Delete),
            Err(error) => error.into(),
        }
    }

    /// Opens a cookie that the request must carry, without checking its id: resend and
    /// verify retire the id atomically (or, when refused, check it) afterwards, which
    /// keeps a verify to one store round trip (a resend that would send checks first).
    async fn open_required(&self, cookie: Option<&str>, now: u64) -> Result<Session, ServiceError> {
        let Some(value) = cookie else {
            return Err(ServiceError::invalid_cookie());
        };
        match self.decrypt(value, now).await? {
            Ok(session) => Ok(session),
            Err(Unusable::Missing) => Err(ServiceError::invalid_cookie()),
            Err(Unusable::Invalid) => {
                Err(ServiceError::invalid_cookie().with_cookie(CookieAction::Delete))
            }
        }
    }

    /// Decrypts a cookie and checks that its id is still live. Store errors are the
    /// only `Err`; an unusable cookie is `Ok(Err(_))`.
    async fn open(&self, value: &str, now: u64) -> Result<Result<Session, Unusable>, ServiceError> {
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
    async fn decrypt(
        &self,
        value: &str,
        now: u64,
    ) -> Result<Result<Session, Unusable>, ServiceError> {
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
                // not decode: either a bug or someone holding a key. Stop using that key
                // on every instance, and end the session it claims to be.
                if let Some(id) = id {
                    self.ids.consume(id, now).await?;
                }
                if let Some(kek) = SessionCookie::key_id(value) {
                    tracing::warn!(
                        kek_id = %kek,
                        "a cookie authenticated but did not decode: revoking its key-encryption key"
                    );
                    self.keys.revoke(&kek, now).await?;
                }
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
        let expires_at_ms = session.expires_at_ms();
        CookieAction::Set {
            value: SessionCookie::seal(session, &kek),
            expires_at_ms,
            max_age_secs: expires_at_ms.saturating_sub(self.now_ms()).div_ceil(1000),
        }
    }
}

/// The id change of a state change: `current`'s id retired for `new_id`, live as long
/// as `next` is.
fn successor(current: &Session, new_id: SessionId, next: &Session, now: u64) -> IdChange {
    IdChange::Replace {
        old: current.id,
        new: new_id,
        ttl_ms: ttl_ms(next, now),
    }
}

fn ttl_ms(session: &Session, now: u64) -> u64 {
    session.expires_at_ms().saturating_sub(now).max(1)
}
