//! Session actors: one actix actor per open DM session, driving the pure session machine.
//!
//! The actor serializes the packages of its session (a Package#3 is handled
//! atomically: no other message or timer runs meanwhile), keeps the session
//! state between packages, and expires the session after
//! `session_timeout` of silence. The state is also in the store (every
//! step's batch writes it before the Package#2 leaves), so after a restart
//! [`SessionRegistry::adopt`] rehydrates an actor from it.
//!
//! Every step goes through [`run_step`]: take the device's lock, load what
//! the machine reads, call `omadm_core::session::step`, encode the reply,
//! commit the batch, and only then answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use omadm_core::clock::{self, Millis};
use omadm_core::metrics::{metrics, status_class};
use omadm_core::model::{MirrorRecord, SentCommand, SessionState};
use omadm_core::session::{self, SessionContext, SessionError, SessionEvent, Step};
use omadm_core::store::StoreError;
use omadm_proto::multipart::MultipartResponse;

use super::EdgeShared;
use crate::HttpError;

/// How soon an expiry that could not be committed (store down) is tried again.
const EXPIRY_RETRY: Duration = Duration::from_secs(5);

/// The open sessions of this process, by session id.
#[derive(Default)]
pub(crate) struct SessionRegistry {
    actors: Mutex<HashMap<String, RegisteredSession>>,
}

struct RegisteredSession {
    address: Addr<SessionActor>,
    device_id: String,
}

impl SessionRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, RegisteredSession>> {
        // A poisoned map only means a thread panicked mid-update; the map itself is still usable.
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// The actor of `session_id` and its device, when one runs in this process.
    fn get(&self, session_id: &str) -> Option<(Addr<SessionActor>, String)> {
        self.map().get(session_id).map(|entry| (entry.address.clone(), entry.device_id.clone()))
    }

    /// Starts an actor for an open session (after Package#1, or rehydrated
    /// from the store), unless one already runs for it; returns the one that runs.
    pub fn adopt(shared: &Arc<EdgeShared>, state: SessionState) -> Addr<SessionActor> {
        let mut map = shared.sessions.map();
        if let Some(entry) = map.get(&state.id)
            && entry.address.connected()
        {
            return entry.address.clone();
        }
        let session_id = state.id.clone();
        let device_id = state.device_id.clone();
        let address = SessionActor { shared: shared.clone(), state, expiry: None, finished: false }.start();
        map.insert(session_id, RegisteredSession { address: address.clone(), device_id });
        address
    }

    /// Forgets `session_id` if `address` is still the actor registered for it.
    fn remove(&self, session_id: &str, address: &Addr<SessionActor>) {
        let mut map = self.map();
        if map.get(session_id).is_some_and(|entry| entry.address == *address) {
            map.remove(session_id);
        }
    }
}

/// A Package#3 for the session, already decoded.
#[derive(Message)]
#[rtype(result = "Result<PackageReply, HttpError>")]
pub(crate) struct Package3 {
    pub device_id: String,
    pub response: MultipartResponse,
}

/// The device opened a new session: this one ends now (as an expiry), so its
/// unanswered commands go back to the queue for the new session.
#[derive(Message)]
#[rtype(result = "Result<(), HttpError>")]
pub(crate) struct Supersede;

/// The Package#2 to send, encoded.
#[derive(Debug)]
pub(crate) struct PackageReply {
    pub body: Vec<u8>,
    pub ended: bool,
}

pub(crate) struct SessionActor {
    shared: Arc<EdgeShared>,
    state: SessionState,
    expiry: Option<SpawnHandle>,
    /// Ended or expired: every further package gets 410 until the actor is gone.
    finished: bool,
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        metrics().sessions_active.inc();
        let silent_for = clock::now_millis().saturating_sub(self.state.last_activity);
        let remaining = self.timeout().saturating_sub(silent_for);
        self.arm_expiry(context, Duration::from_millis(remaining));
    }

    fn stopped(&mut self, context: &mut Self::Context) {
        metrics().sessions_active.dec();
        self.shared.sessions.remove(&self.state.id, &context.address());
    }
}

impl SessionActor {
    fn timeout(&self) -> Millis {
        self.shared.state.config.session.session_timeout
    }

    fn arm_expiry(&mut self, context: &mut Context<Self>, after: Duration) {
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        self.expiry = Some(context.run_later(after, |actor, context| actor.expire(context)));
    }

    /// Runs the Expiry step and stops; retried later when the store fails.
    fn expire(&mut self, context: &mut Context<Self>) {
        self.expiry = None;
        let shared = self.shared.clone();
        let state = self.state.clone();
        let span = tracing::info_span!("session.expiry", device_id = %state.device_id, session_id = %state.id);
        let work = async move { expire_session(&shared, state).await };
        context.wait(tracing::Instrument::instrument(work, span).into_actor(self).map(|result, actor, context| {
            match result {
                Ok(()) => {
                    actor.finished = true;
                    context.stop();
                }
                Err(error) => {
                    tracing::warn!(%error, "session expiry not committed, retrying");
                    actor.arm_expiry(context, EXPIRY_RETRY);
                }
            }
        }));
    }
}

impl Handler<Package3> for SessionActor {
    type Result = AtomicResponse<Self, Result<PackageReply, HttpError>>;

    fn handle(&mut self, message: Package3, context: &mut Self::Context) -> Self::Result {
        // No expiry while the package is processed; re-armed after it.
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        let shared = self.shared.clone();
        let state = self.state.clone();
        let finished = self.finished;
        let span = tracing::info_span!("session.package3", device_id = %state.device_id, session_id = %state.id);
        let work = async move {
            if finished || state.ended {
                return Err(session_gone());
            }
            if message.device_id != state.device_id {
                return Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device"));
            }
            let now = clock::now_millis();
            if now.saturating_sub(state.last_activity) > shared.state.config.session.session_timeout {
                // The timer has not fired yet (or the actor was just rehydrated): the session expired all the same.
                expire_session(&shared, state).await.map_err(HttpError::from)?;
                return Err(HttpError::new(StatusCode::GONE, "the session expired"));
            }
            let statuses: Vec<(&'static str, u16)> = state
                .awaiting
                .iter()
                .zip(&message.response.package.statuses)
                .map(|(sent, status)| (sent.command.name(), status.code.as_u16()))
                .collect();
            let event = SessionEvent::Response { state: state.clone(), response: message.response };
            let outcome = run_step(&shared, &state.device_id, &state.awaiting, event, now).await;
            if outcome.is_ok() {
                for (command, code) in statuses {
                    metrics().command_results.with_label_values(&[command, status_class(code)]).inc();
                }
            }
            outcome.map(|stepped| (stepped, state.id))
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |outcome, actor, context| match outcome {
                Ok((stepped, session_id)) => {
                    let reply = PackageReply { body: stepped.reply, ended: stepped.ended };
                    match stepped.next_state.filter(|_| !stepped.ended) {
                        Some(next) if next.id == session_id => {
                            actor.state = next;
                            let timeout = Duration::from_millis(actor.timeout());
                            actor.arm_expiry(context, timeout);
                        }
                        _ => {
                            actor.finished = true;
                            context.stop();
                        }
                    }
                    Ok(reply)
                }
                Err(error) => {
                    if error.status == StatusCode::GONE {
                        actor.finished = true;
                        context.stop();
                    } else if !actor.finished {
                        let silent_for = clock::now_millis().saturating_sub(actor.state.last_activity);
                        let remaining = actor.timeout().saturating_sub(silent_for);
                        actor.arm_expiry(context, Duration::from_millis(remaining));
                    }
                    Err(error)
                }
            },
        )))
    }
}

impl Handler<Supersede> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), HttpError>>;

    fn handle(&mut self, _: Supersede, context: &mut Self::Context) -> Self::Result {
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        let shared = self.shared.clone();
        let state = self.state.clone();
        let finished = self.finished;
        let span = tracing::info_span!("session.superseded", device_id = %state.device_id, session_id = %state.id);
        let work = async move {
            if finished {
                return Ok(());
            }
            expire_session(&shared, state).await.map_err(HttpError::from)
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |outcome, actor, context| {
                match &outcome {
                    Ok(()) => {
                        actor.finished = true;
                        context.stop();
                    }
                    Err(_) => actor.arm_expiry(context, EXPIRY_RETRY),
                }
                outcome
            },
        )))
    }
}

/// Ends the device's previous session if it is still open, before a new one
/// starts: a device that starts over (its Package#3 was lost) gets the
/// commands that session was waiting on in the new one, not after a timeout.
pub(crate) async fn supersede_previous(
    shared: &Arc<EdgeShared>,
    device_id: &str,
    previous_session_id: &str,
) -> Result<(), HttpError> {
    if let Some((address, owner)) = shared.sessions.get(previous_session_id) {
        if owner != device_id {
            return Ok(());
        }
        return match address.send(Supersede).await {
            Ok(result) => result,
            // It stopped meanwhile: ended or expired by itself.
            Err(_) => Ok(()),
        };
    }
    let stored =
        shared.state.store.get_session(device_id, previous_session_id).await.map_err(store_failure("get_session"))?;
    match stored {
        Some(state) if !state.ended && state.device_id == device_id => {
            tracing::info!(previous_session_id, "ending the device's previous open session");
            expire_session(shared, state).await.map_err(HttpError::from)
        }
        _ => Ok(()),
    }
}

/// What the session of an unknown or ended id answers.
pub(crate) fn session_gone() -> HttpError {
    HttpError::new(StatusCode::GONE, "the session has ended: start a new one with a Package#1")
}

/// A committed step.
pub(crate) struct Stepped {
    /// The encoded Package#2.
    pub reply: Vec<u8>,
    pub ended: bool,
    /// The session's state as the batch wrote it, if it did.
    pub next_state: Option<SessionState>,
}

/// One step of a session under the device's lock: load, step, encode, commit.
/// A `SessionError` becomes its HTTP status and nothing is written.
pub(crate) async fn run_step(
    shared: &EdgeShared,
    device_id: &str,
    awaiting: &[SentCommand],
    event: SessionEvent,
    now: Millis,
) -> Result<Stepped, HttpError> {
    let session_id = match &event {
        SessionEvent::Initiation { session_id, .. } => session_id.clone(),
        SessionEvent::Response { state, .. } | SessionEvent::Expiry { state } => state.id.clone(),
    };
    let is_expiry = matches!(event, SessionEvent::Expiry { .. });
    let _device_guard = shared.device_locks.lock(device_id).await;
    let Some(context) = load_context(shared, device_id, awaiting, now).await.map_err(store_failure("load_session"))?
    else {
        return Err(HttpError::new(StatusCode::GONE, "the device is no longer registered"));
    };
    let step = session::step(&shared.state.config.session, context, event).map_err(session_refusal)?;
    let Step { reply, batch, ended } = step;
    let reply = match reply {
        Some(package) => package.to_json_bytes().map_err(|error| {
            tracing::error!(%error, "cannot encode our own Package#2");
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server could not encode its Package#2")
        })?,
        None if is_expiry => Vec::new(),
        None => {
            tracing::error!("the session machine gave no Package#2 for a package");
            return Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server has no Package#2 to send"));
        }
    };
    let next_state = batch.sessions.iter().find(|state| state.id == session_id).cloned();
    let alert_statuses: Vec<u16> = batch.alerts.iter().map(|alert| alert.status).collect();
    shared.state.store.commit(batch).await.map_err(store_failure("commit"))?;
    for status in alert_statuses {
        metrics().alerts.with_label_values(&[&status.to_string()]).inc();
    }
    if ended {
        metrics().sessions_ended.with_label_values(&[if is_expiry { "expired" } else { "ended" }]).inc();
    }
    Ok(Stepped { reply, ended, next_state })
}

/// The Expiry step of `state`: unanswered commands go back to the queue.
async fn expire_session(shared: &EdgeShared, state: SessionState) -> Result<(), StoreError> {
    let device_id = state.device_id.clone();
    let awaiting = state.awaiting.clone();
    match run_step(shared, &device_id, &awaiting, SessionEvent::Expiry { state }, clock::now_millis()).await {
        Ok(_) => Ok(()),
        // The device is gone (nothing to put back) or the machine refused: nothing left to expire.
        Err(error) if error.status != StatusCode::SERVICE_UNAVAILABLE => {
            tracing::warn!(%error, "session expiry refused; dropping the session actor");
            Ok(())
        }
        Err(error) => Err(StoreError::Unavailable(error.reason)),
    }
}

/// What the session machine reads besides the event; `None` when the device is gone.
async fn load_context(
    shared: &EdgeShared,
    device_id: &str,
    awaiting: &[SentCommand],
    now: Millis,
) -> Result<Option<SessionContext>, StoreError> {
    let store = &shared.state.store;
    let Some(device) = store.get_device(device_id).await? else { return Ok(None) };
    let mirror = store.get_mirror(device_id).await?.unwrap_or_else(MirrorRecord::default);
    let queued = store.queued_commands(device_id, shared.state.config.session.max_commands_per_package).await?;
    let mut awaiting_records = Vec::with_capacity(awaiting.len());
    for command_id in awaiting.iter().filter_map(|sent| sent.command_id) {
        if let Some(record) = store.get_command(device_id, command_id).await? {
            awaiting_records.push(record);
        }
    }
    let next_alert_id = store.next_alert_id(device_id).await?;
    Ok(Some(SessionContext { device, mirror, queued, awaiting: awaiting_records, next_alert_id, now }))
}

fn store_failure(operation: &'static str) -> impl Fn(StoreError) -> HttpError {
    move |error| {
        metrics().store_errors.with_label_values(&[operation]).inc();
        HttpError::from(error)
    }
}

fn session_refusal(error: SessionError) -> HttpError {
    let status = StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    HttpError::new(status, error.to_string())
}

/// The actor of the session, rehydrated from the store when this process has
/// none (after a restart): 404 for an unknown id, 410 for an ended session,
/// 403 for another device's session.
pub(crate) async fn find_session(
    shared: &Arc<EdgeShared>,
    session_id: &str,
    device_id: &str,
) -> Result<Addr<SessionActor>, HttpError> {
    match shared.sessions.get(session_id) {
        Some((_, owner)) if owner != device_id => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device"))
        }
        Some((address, _)) => Ok(address),
        None => rehydrate(shared, session_id, device_id).await,
    }
}

/// Hands a Package#3 to its session's actor and waits for the Package#2.
pub(crate) async fn deliver_package3(
    address: Addr<SessionActor>,
    message: Package3,
) -> Result<PackageReply, HttpError> {
    match address.send(message).await {
        Ok(result) => result,
        // The actor stopped between lookup and delivery: the session just ended or expired.
        Err(MailboxError::Closed) | Err(MailboxError::Timeout) => Err(session_gone()),
    }
}

async fn rehydrate(
    shared: &Arc<EdgeShared>,
    session_id: &str,
    device_id: &str,
) -> Result<Addr<SessionActor>, HttpError> {
    let store = &shared.state.store;
    match store.get_session(device_id, session_id).await.map_err(store_failure("get_session"))? {
        Some(state) if state.device_id != device_id => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device"))
        }
        Some(state) if state.ended => Err(session_gone()),
        Some(state) => Ok(SessionRegistry::adopt(shared, state)),
        None => {
            let lookback = shared.options.ended_session_lookback;
            let history = store.list_sessions(device_id, lookback).await.map_err(store_failure("list_sessions"))?;
            if history.iter().any(|summary| summary.id == session_id) {
                Err(session_gone())
            } else {
                Err(HttpError::not_found("no such session"))
            }
        }
    }
}
