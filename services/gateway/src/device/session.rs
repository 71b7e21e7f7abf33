//! Session actors: one actix actor per open DM session, driving the pure session machine.
//!
//! The actor serializes the packages of its session (a Package#3 is handled
//! atomically: no other message or timer runs meanwhile), keeps the session
//! state between packages, and expires the session after
//! `session_timeout` of silence. The state is also in the store (every
//! step's batch writes it before the Package#2 leaves), so another node, or
//! this one after a restart, rehydrates an actor from it.
//!
//! Every step goes through [`run_step`]: take the device's lock, load what
//! the machine reads in one `Store::load_session` (which also grants this
//! node the device's lease), call `omadm_core::session::step`, encode the
//! reply, commit the batch fenced by that lease, and only then answer.
//! When the lease epoch is not the one the actor last stepped under, another
//! node may have moved the session on: the state is read again first. A
//! commit refused as `Fenced` (the lease moved meanwhile) wrote nothing: the
//! actor stops and the device gets 503 with `Retry-After`.
//!
//! The state keeps the digest of the last Package#3 and the Package#2 it
//! produced: a retransmission (its Package#2 was lost, possibly with the
//! node that sent it) gets that Package#2 again without a second step. A
//! Package#3 carries no sequence number, and a device may answer two
//! consecutive Package#2s with the same bytes (`[[200], [200]]`), so a digest
//! match alone is not proof (see [`replay_for`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use omadm_core::clock::{self, Millis};
use omadm_core::cluster::Fence;
use omadm_core::metrics::{metrics, status_class};
use omadm_core::model::{CommandId, PackageReplay, SentCommand, SessionState};
use omadm_core::session::{self, SessionContext, SessionError, SessionEvent, Step};
use omadm_core::store::{SessionLoad, SessionSnapshot, StoreError};
use omadm_proto::multipart::MultipartResponse;
use sha2::{Digest as _, Sha256};

use super::EdgeShared;
use crate::HttpError;

/// How soon an expiry that could not be committed (store down) is tried again.
const EXPIRY_RETRY: Duration = Duration::from_secs(5);

/// The open sessions of this process, by session id (and which device each belongs to).
#[derive(Default)]
pub(crate) struct SessionRegistry {
    actors: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    by_session: HashMap<String, RegisteredSession>,
    /// The session id of each device with an actor here.
    by_device: HashMap<String, String>,
}

struct RegisteredSession {
    address: Addr<SessionActor>,
    device_id: String,
}

impl SessionRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, Registered> {
        // A poisoned map only means a thread panicked mid-update; the map itself is still usable.
        self.actors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn len(&self) -> usize {
        self.map().by_session.len()
    }

    /// The actor of `session_id` and its device, when one runs in this process.
    pub fn get(&self, session_id: &str) -> Option<(Addr<SessionActor>, String)> {
        self.map().by_session.get(session_id).map(|entry| (entry.address.clone(), entry.device_id.clone()))
    }

    /// Whether a session of `device_id` has a live actor in this process.
    pub fn has_device(&self, device_id: &str) -> bool {
        let map = self.map();
        map.by_device
            .get(device_id)
            .and_then(|session_id| map.by_session.get(session_id))
            .is_some_and(|entry| entry.address.connected())
    }

    /// Starts an actor for an open session (after Package#1, or rehydrated
    /// from the store), unless one already runs for it; returns the one that runs.
    /// `lease_epoch` is the lease the state was written under, when known.
    pub fn adopt(shared: &Arc<EdgeShared>, state: SessionState, lease_epoch: Option<u64>) -> Addr<SessionActor> {
        let mut map = shared.sessions.map();
        if let Some(entry) = map.by_session.get(&state.id)
            && entry.address.connected()
        {
            return entry.address.clone();
        }
        let session_id = state.id.clone();
        let device_id = state.device_id.clone();
        let answered_here = lease_epoch.is_some();
        let address = SessionActor {
            shared: shared.clone(),
            state,
            lease_epoch,
            answered_here,
            replied_at: None,
            expiry: None,
            finished: false,
        }
        .start();
        map.by_device.insert(device_id.clone(), session_id.clone());
        map.by_session.insert(session_id, RegisteredSession { address: address.clone(), device_id });
        address
    }

    /// Forgets `session_id` if `address` is still the actor registered for it.
    fn remove(&self, session_id: &str, address: &Addr<SessionActor>) {
        let mut map = self.map();
        let Some(entry) = map.by_session.get(session_id).filter(|entry| entry.address == *address) else { return };
        let device_id = entry.device_id.clone();
        map.by_session.remove(session_id);
        if map.by_device.get(&device_id).is_some_and(|current| current == session_id) {
            map.by_device.remove(&device_id);
        }
    }
}

/// Why a step was not answered with a Package#2.
#[derive(Debug)]
pub(crate) enum StepError {
    /// Answered as is (a refusal of the package, the store down...).
    Http(HttpError),
    /// A live node other than this one holds the device's lease: the step belongs there.
    Elsewhere { node_id: String },
    /// The lease moved to another node while the step ran; nothing was written.
    Fenced,
    /// The session's actor stopped before it took the package: look the session up again.
    ActorStopped,
}

impl From<HttpError> for StepError {
    fn from(error: HttpError) -> Self {
        StepError::Http(error)
    }
}

impl StepError {
    /// What the device gets when the step cannot be handed on: 503, and its retry lands on the current owner.
    pub fn into_http(self) -> HttpError {
        match self {
            StepError::Http(error) => error,
            StepError::Elsewhere { node_id } => {
                HttpError::retry_soon(format!("the device's session is held by node {node_id}; retry"))
            }
            StepError::Fenced => HttpError::retry_soon("the device's session moved to another node; retry"),
            StepError::ActorStopped => session_gone(),
        }
    }

    /// The session is another node's now: this node's actor for it must stop.
    fn session_moved(&self) -> bool {
        matches!(self, StepError::Elsewhere { .. } | StepError::Fenced)
    }

    fn status(&self) -> StatusCode {
        match self {
            StepError::Http(error) => error.status,
            StepError::Elsewhere { .. } | StepError::Fenced => StatusCode::SERVICE_UNAVAILABLE,
            StepError::ActorStopped => StatusCode::GONE,
        }
    }
}

/// A Package#3 for the session, already decoded.
#[derive(Message)]
#[rtype(result = "Result<PackageReply, StepError>")]
pub(crate) struct Package3 {
    pub device_id: String,
    pub response: MultipartResponse,
    /// [`package3_digest`] of the body as received.
    pub package3_sha256: String,
    /// When this node received the request. A Package#3 received before the actor produced its
    /// last Package#2 cannot be the answer to it: it is a retransmission that overtook its original.
    pub received_at: std::time::Instant,
    /// Another node forwarded the request: its Package#2 goes back through that node, which may die
    /// before relaying it, so a later Package#3 with the same bytes may be its retransmission.
    pub forwarded: bool,
}

/// The device opened a new session: this one ends now (as an expiry), so its
/// unanswered commands go back to the queue for the new session.
#[derive(Message)]
#[rtype(result = "Result<(), StepError>")]
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
    /// The lease epoch under which `state` is known to be the stored one; `None` after a rehydration.
    lease_epoch: Option<u64>,
    /// This actor sent (or re-sent) the state's last Package#2: a Package#3 with the same bytes as the
    /// last one and as many statuses as that Package#2 has commands is taken as its answer, not a retransmission.
    answered_here: bool,
    /// When the actor produced its last Package#2.
    replied_at: Option<std::time::Instant>,
    expiry: Option<SpawnHandle>,
    /// Ended, expired or moved to another node: every further package gets 410 until the actor is gone.
    finished: bool,
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        metrics().sessions_active.inc();
        self.arm_remaining(context);
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

    /// Arms the expiry for what is left of the timeout since the session's last package.
    fn arm_remaining(&mut self, context: &mut Context<Self>) {
        let silent_for = clock::now_millis().saturating_sub(self.state.last_activity);
        let remaining = self.timeout().saturating_sub(silent_for);
        self.arm_expiry(context, Duration::from_millis(remaining));
    }

    fn finish(&mut self, context: &mut Context<Self>) {
        self.finished = true;
        context.stop();
    }

    /// Runs the Expiry step and stops; retried later when the store fails.
    fn expire(&mut self, context: &mut Context<Self>) {
        self.expiry = None;
        let shared = self.shared.clone();
        let state = self.state.clone();
        let known_epoch = self.lease_epoch;
        let span = tracing::info_span!("session.expiry", device_id = %state.device_id, session_id = %state.id);
        let work = async move { expire_session(&shared, state, known_epoch).await };
        context.wait(tracing::Instrument::instrument(work, span).into_actor(self).map(|result, actor, context| {
            match result {
                Ok(()) => actor.finish(context),
                Err(error) if error.session_moved() => {
                    tracing::info!("the session is another node's now; its expiry runs there");
                    actor.finish(context);
                }
                Err(error) => {
                    tracing::warn!(error = %error.into_http(), "session expiry not committed, retrying");
                    actor.arm_expiry(context, EXPIRY_RETRY);
                }
            }
        }));
    }
}

impl Handler<Package3> for SessionActor {
    type Result = AtomicResponse<Self, Result<PackageReply, StepError>>;

    fn handle(&mut self, message: Package3, context: &mut Self::Context) -> Self::Result {
        // No expiry while the package is processed; re-armed after it.
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        let shared = self.shared.clone();
        let state = self.state.clone();
        let finished = self.finished;
        let known_epoch = self.lease_epoch;
        // A Package#3 that arrived before the last Package#2 was produced was sent before the device saw it.
        let overtook_reply = self.replied_at.is_some_and(|replied_at| message.received_at < replied_at);
        let answered_here = self.answered_here && !overtook_reply;
        let relayed_elsewhere = message.forwarded;
        let span = tracing::info_span!("session.package3", device_id = %state.device_id, session_id = %state.id);
        let work = async move {
            if message.device_id != state.device_id {
                return Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device").into());
            }
            if finished || state.ended {
                return match replay_for(&state, &message.response, &message.package3_sha256, true, known_epoch) {
                    Some(stepped) => Ok(stepped),
                    None => Err(session_gone().into()),
                };
            }
            let now = clock::now_millis();
            if now.saturating_sub(state.last_activity) > shared.state.config.session.session_timeout {
                // The timer has not fired yet (or the actor was just rehydrated): the session expired all the same.
                expire_session(&shared, state, known_epoch).await?;
                return Err(HttpError::new(StatusCode::GONE, "the session expired").into());
            }
            let statuses: Vec<(&'static str, u16)> = state
                .awaiting
                .iter()
                .zip(&message.response.package.statuses)
                .map(|(sent, status)| (sent.command.name(), status.code.as_u16()))
                .collect();
            let device_id = state.device_id.clone();
            let input = StepInput {
                event: SessionEvent::Response { state, response: message.response },
                now,
                known_epoch,
                package3_sha256: Some(message.package3_sha256),
                answered_here,
                superseded: None,
            };
            let stepped = run_step(&shared, &device_id, input).await?;
            if !stepped.replayed {
                for (command, code) in statuses {
                    metrics().command_results.with_label_values(&[command, status_class(code)]).inc();
                }
            }
            Ok(stepped)
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            move |outcome: Result<Stepped, StepError>, actor, context| match outcome {
                Ok(stepped) => {
                    if stepped.lease_epoch.is_some() {
                        actor.lease_epoch = stepped.lease_epoch;
                    }
                    // Whether stepped or re-sent, the Package#2 of the state left from here (unless
                    // through a forwarding node, which may not have passed it on).
                    actor.answered_here = !relayed_elsewhere;
                    actor.replied_at = Some(std::time::Instant::now());
                    let reply = PackageReply { body: stepped.reply, ended: stepped.ended };
                    match stepped.next_state {
                        Some(next) if !stepped.ended && !next.ended && next.id == actor.state.id => {
                            actor.state = next;
                            actor.arm_remaining(context);
                        }
                        Some(last) if last.id == actor.state.id => {
                            // Kept for a retransmission of the last Package#3 that reaches the actor before it stops.
                            actor.state = last;
                            actor.finish(context);
                        }
                        _ => actor.finish(context),
                    }
                    Ok(reply)
                }
                Err(error) => {
                    if error.session_moved() || error.status() == StatusCode::GONE {
                        actor.finish(context);
                    } else if !actor.finished {
                        actor.arm_remaining(context);
                    }
                    Err(error)
                }
            },
        )))
    }
}

/// The session was ended by another step of its device (under the device's lock): stop without writing.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget;

impl Handler<Forget> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Forget, context: &mut Self::Context) {
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        self.finish(context);
    }
}

impl Handler<Supersede> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), StepError>>;

    fn handle(&mut self, _: Supersede, context: &mut Self::Context) -> Self::Result {
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
        let shared = self.shared.clone();
        let state = self.state.clone();
        let finished = self.finished;
        let known_epoch = self.lease_epoch;
        let span = tracing::info_span!("session.superseded", device_id = %state.device_id, session_id = %state.id);
        let work = async move {
            if finished {
                return Ok(());
            }
            expire_session(&shared, state, known_epoch).await
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |outcome: Result<(), StepError>, actor, context| {
                match &outcome {
                    Ok(()) => actor.finish(context),
                    Err(error) if error.session_moved() => actor.finish(context),
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
) -> Result<(), StepError> {
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
            expire_session(shared, state, None).await
        }
        _ => Ok(()),
    }
}

/// What the session of an unknown or ended id answers.
pub(crate) fn session_gone() -> HttpError {
    HttpError::new(StatusCode::GONE, "the session has ended: start a new one with a Package#1")
}

/// The digest a Package#3 body is recognised by when the device sends it again.
pub(crate) fn package3_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// One step to run.
pub(crate) struct StepInput {
    pub event: SessionEvent,
    pub now: Millis,
    /// The lease epoch under which the event's session state is known current;
    /// otherwise the state is read again once this node holds the lease.
    pub known_epoch: Option<u64>,
    /// For a Package#3: [`package3_digest`] of its body.
    pub package3_sha256: Option<String>,
    /// The caller's actor sent the last Package#2 of the event's state (see [`replay_for`]).
    pub answered_here: bool,
    /// For an Initiation: the previous session of the device that the caller already ended.
    pub superseded: Option<String>,
}

/// A committed (or replayed) step.
pub(crate) struct Stepped {
    /// The encoded Package#2.
    pub reply: Vec<u8>,
    pub ended: bool,
    /// The session's state as the batch wrote it (or as stored, for a replay).
    pub next_state: Option<SessionState>,
    /// The lease the step ran under, when it touched the store.
    pub lease_epoch: Option<u64>,
    /// A retransmitted Package#3 answered with the Package#2 already sent: nothing was stepped or written.
    pub replayed: bool,
}

/// One step of a session under the device's lock and lease: load, step, encode, commit.
/// A `SessionError` becomes its HTTP status and nothing is written.
pub(crate) async fn run_step(shared: &EdgeShared, device_id: &str, input: StepInput) -> Result<Stepped, StepError> {
    let StepInput { mut event, now, known_epoch, package3_sha256, answered_here, superseded } = input;
    if let Some(stepped) = replayed_event(&event, package3_sha256.as_deref(), !answered_here, known_epoch) {
        return Ok(stepped);
    }
    let _device_guard = shared.device_locks.lock(device_id).await;
    let lease_request = shared.cluster.lease_request(now);
    let mut snapshot = load(shared, device_id, &awaited_ids(&event), &lease_request).await?;
    if let Some(state) = event_state(&event)
        && known_epoch != Some(snapshot.lease.epoch)
    {
        // The lease was not this actor's since its last step: the stored state may have moved on.
        metrics().lease_takeovers.with_label_values::<&str>(&[]).inc();
        let stored =
            shared.state.store.get_session(device_id, &state.id).await.map_err(store_failure("get_session"))?;
        let Some(stored) = stored.filter(|stored| stored.device_id == device_id) else {
            return Err(session_gone().into());
        };
        let awaiting_moved = awaited_ids_of(&stored.awaiting) != awaited_ids_of(&state.awaiting);
        // A state another node moved on has a Package#2 this actor never sent.
        let sent_elsewhere = !answered_here || stored != *state;
        set_event_state(&mut event, stored);
        let epoch = Some(snapshot.lease.epoch);
        if let Some(stepped) = replayed_event(&event, package3_sha256.as_deref(), sent_elsewhere, epoch) {
            return Ok(stepped);
        }
        if event_state(&event).is_some_and(|state| state.ended) {
            return Err(session_gone().into());
        }
        if awaiting_moved {
            snapshot = load(shared, device_id, &awaited_ids(&event), &lease_request).await?;
        }
    }
    if let SessionEvent::Initiation { session_id: new_session_id, .. } = &event
        && let Some(previous) = snapshot.device.last_session_id.clone()
        && previous != *new_session_id
        && superseded.as_deref() != Some(previous.as_str())
        && end_concurrent_session(shared, device_id, &previous, &lease_request, now).await?
    {
        snapshot = load(shared, device_id, &[], &lease_request).await?;
    }
    apply_step(shared, snapshot, event, now, package3_sha256).await
}

/// Another Package#1 of the device opened `previous` while this one waited for the device's lock
/// (a device that retried its Package#1, the first still in flight): it ends now, under the same lock,
/// so its sent commands go back to the queue for the new session. `true` when it was open.
async fn end_concurrent_session(
    shared: &EdgeShared,
    device_id: &str,
    previous: &str,
    lease_request: &omadm_core::cluster::LeaseRequest,
    now: Millis,
) -> Result<bool, StepError> {
    let stored = shared.state.store.get_session(device_id, previous).await.map_err(store_failure("get_session"))?;
    let Some(state) = stored.filter(|state| !state.ended && state.device_id == device_id) else {
        return Ok(false);
    };
    tracing::info!(previous_session_id = previous, "ending the device's concurrent open session");
    if let Some((address, _)) = shared.sessions.get(previous) {
        address.do_send(Forget);
    }
    let expiry = SessionEvent::Expiry { state };
    let snapshot = load(shared, device_id, &awaited_ids(&expiry), lease_request).await?;
    apply_step(shared, snapshot, expiry, now, None).await?;
    Ok(true)
}

/// Steps the session machine on a loaded snapshot, encodes the reply and commits the batch under the lease's fence.
async fn apply_step(
    shared: &EdgeShared,
    snapshot: SessionSnapshot,
    event: SessionEvent,
    now: Millis,
    package3_sha256: Option<String>,
) -> Result<Stepped, StepError> {
    let session_id = match &event {
        SessionEvent::Initiation { session_id, .. } => session_id.clone(),
        SessionEvent::Response { state, .. } | SessionEvent::Expiry { state } => state.id.clone(),
    };
    let is_expiry = matches!(event, SessionEvent::Expiry { .. });
    let SessionSnapshot { lease, device, mirror, queued, awaiting, next_alert_id } = snapshot;
    let context = SessionContext { device, mirror, queued, awaiting, next_alert_id, now };
    let step = session::step(&shared.state.config.session, context, event).map_err(session_refusal)?;
    let Step { reply, mut batch, ended } = step;
    let reply = match reply {
        Some(package) => package.to_json_bytes().map_err(|error| {
            tracing::error!(%error, "cannot encode our own Package#2");
            HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server could not encode its Package#2")
        })?,
        None if is_expiry => Vec::new(),
        None => {
            tracing::error!("the session machine gave no Package#2 for a package");
            return Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "the server has no Package#2 to send").into());
        }
    };
    // The answer to this Package#3 goes with the state, for its retransmission; an expiry keeps none.
    let replay = package3_sha256.filter(|_| !is_expiry).and_then(|digest| {
        String::from_utf8(reply.clone()).ok().map(|package2| PackageReplay { package3_sha256: digest, package2 })
    });
    for state in batch.sessions.iter_mut().filter(|state| state.id == session_id) {
        state.replay = replay.clone();
    }
    let next_state = batch.sessions.iter().find(|state| state.id == session_id).cloned();
    let alert_statuses: Vec<u16> = batch.alerts.iter().map(|alert| alert.status).collect();
    let store = &shared.state.store;
    let shards: BTreeSet<u32> = batch.events.iter().map(|event| store.outbox_shard_of(&event.key)).collect();
    batch.fence = Some(Fence::of(&lease, shared.cluster.lease_ttl_millis(), ended));
    match store.commit(batch).await {
        Ok(()) => {
            for shard in &shards {
                shared.cluster.outbox_accepted(*shard);
                if let Some(waker) = shared.outbox_waker.get() {
                    waker.wake_shard(*shard);
                }
            }
        }
        Err(StoreError::Fenced { .. }) => {
            metrics().fenced_steps.with_label_values::<&str>(&[]).inc();
            tracing::warn!(epoch = lease.epoch, "the device's lease moved while the step ran; nothing written");
            return Err(StepError::Fenced);
        }
        Err(StoreError::OutboxFull { len }) => {
            for shard in &shards {
                shared.cluster.outbox_full(*shard, len);
            }
            return Err(store_failure("commit")(StoreError::OutboxFull { len }).into());
        }
        Err(error) => return Err(store_failure("commit")(error).into()),
    }
    for status in alert_statuses {
        metrics().alerts.with_label_values(&[&status.to_string()]).inc();
    }
    if ended {
        metrics().sessions_ended.with_label_values(&[if is_expiry { "expired" } else { "ended" }]).inc();
    }
    Ok(Stepped { reply, ended, next_state, lease_epoch: Some(lease.epoch), replayed: false })
}

/// Loads the device for a step and takes (or renews) its lease.
async fn load(
    shared: &EdgeShared,
    device_id: &str,
    awaiting: &[CommandId],
    lease: &omadm_core::cluster::LeaseRequest,
) -> Result<SessionSnapshot, StepError> {
    let queue_limit = shared.state.config.session.max_commands_per_package;
    let loaded = shared
        .state
        .store
        .load_session(device_id, awaiting, queue_limit, lease)
        .await
        .map_err(store_failure("load_session"))?;
    match loaded {
        SessionLoad::Loaded(snapshot) => Ok(*snapshot),
        SessionLoad::UnknownDevice => {
            Err(HttpError::new(StatusCode::GONE, "the device is no longer registered").into())
        }
        SessionLoad::LeaseHeld { node_id, .. } if node_id == lease.node_id => {
            tracing::error!("the store says this node holds the lease it asked for; retry");
            Err(StepError::Fenced)
        }
        SessionLoad::LeaseHeld { node_id, .. } => Err(StepError::Elsewhere { node_id }),
    }
}

fn event_state(event: &SessionEvent) -> Option<&SessionState> {
    match event {
        SessionEvent::Initiation { .. } => None,
        SessionEvent::Response { state, .. } | SessionEvent::Expiry { state } => Some(state),
    }
}

fn set_event_state(event: &mut SessionEvent, stored: SessionState) {
    match event {
        SessionEvent::Initiation { .. } => {}
        SessionEvent::Response { state, .. } | SessionEvent::Expiry { state } => *state = stored,
    }
}

fn awaited_ids(event: &SessionEvent) -> Vec<CommandId> {
    event_state(event).map(|state| awaited_ids_of(&state.awaiting)).unwrap_or_default()
}

fn awaited_ids_of(awaiting: &[SentCommand]) -> Vec<CommandId> {
    awaiting.iter().filter_map(|sent| sent.command_id).collect()
}

/// The Package#2 already sent for this very Package#3, when the event's state has it (see [`replay_for`]).
fn replayed_event(
    event: &SessionEvent,
    package3_sha256: Option<&str>,
    sent_elsewhere: bool,
    lease_epoch: Option<u64>,
) -> Option<Stepped> {
    match (event, package3_sha256) {
        (SessionEvent::Response { state, response }, Some(digest)) => {
            replay_for(state, response, digest, sent_elsewhere, lease_epoch)
        }
        _ => None,
    }
}

/// Whether a Package#3 whose body has `package3_sha256` is a retransmission of the one that
/// produced `state`, and then that Package#2 again.
///
/// The digest must match. When the Package#3 has as many statuses as `state` awaits, it could
/// also be the device's answer to that Package#2 that happens to have the same bytes: it is taken
/// for a retransmission only when `sent_elsewhere` (the Package#2 left from another node or process,
/// which may have died before it reached the device), and once: the actor that re-sends the
/// Package#2 takes the next such Package#3 as the answer. The cost of a wrong guess there is one
/// Package#2 run twice by the device (at least once, as after any failover), where the other guess
/// would record statuses against the wrong commands. An ended state awaits nothing: any match is a
/// retransmission of its last Package#3.
fn replay_for(
    state: &SessionState,
    response: &MultipartResponse,
    package3_sha256: &str,
    sent_elsewhere: bool,
    lease_epoch: Option<u64>,
) -> Option<Stepped> {
    let replay = state.replay.as_ref().filter(|replay| replay.package3_sha256 == package3_sha256)?;
    let could_answer_state = response.package.statuses.len() == state.awaiting.len();
    if could_answer_state && !sent_elsewhere {
        return None;
    }
    metrics().replayed_packages.with_label_values::<&str>(&[]).inc();
    tracing::info!("retransmitted Package#3: answering with the Package#2 already sent");
    Some(Stepped {
        reply: replay.package2.clone().into_bytes(),
        ended: state.ended,
        next_state: Some(state.clone()),
        lease_epoch,
        replayed: true,
    })
}

/// The Expiry step of `state`: unanswered commands go back to the queue.
/// `Ok` also when there is nothing left to expire (the device or the session is gone).
async fn expire_session(shared: &EdgeShared, state: SessionState, known_epoch: Option<u64>) -> Result<(), StepError> {
    let device_id = state.device_id.clone();
    let input = StepInput {
        event: SessionEvent::Expiry { state },
        now: clock::now_millis(),
        known_epoch,
        package3_sha256: None,
        answered_here: true,
        superseded: None,
    };
    match run_step(shared, &device_id, input).await {
        Ok(_) => Ok(()),
        // The device is gone (nothing to put back) or the machine refused: nothing left to expire.
        Err(StepError::Http(error)) if error.status != StatusCode::SERVICE_UNAVAILABLE => {
            tracing::info!(%error, "session expiry refused; dropping the session actor");
            Ok(())
        }
        Err(error) => Err(error),
    }
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

/// Where a Package#3 goes.
pub(crate) enum SessionTarget {
    /// The session's actor in this process (rehydrated from the store when there was none).
    Actor(Addr<SessionActor>),
    /// The session has ended; only a retransmission of its last Package#3 gets an answer (its Package#2).
    Ended(SessionState),
}

/// The actor of the session, rehydrated from the store when this process has
/// none (after a restart, or another node's session): 404 for an unknown id,
/// 410 for an ended session not in the store, 403 for another device's session.
pub(crate) async fn find_session(
    shared: &Arc<EdgeShared>,
    session_id: &str,
    device_id: &str,
) -> Result<SessionTarget, HttpError> {
    match shared.sessions.get(session_id) {
        Some((_, owner)) if owner != device_id => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device"))
        }
        Some((address, _)) => Ok(SessionTarget::Actor(address)),
        None => rehydrate(shared, session_id, device_id).await,
    }
}

/// Hands a Package#3 to its session's actor and waits for the Package#2.
pub(crate) async fn deliver_package3(
    address: Addr<SessionActor>,
    message: Package3,
) -> Result<PackageReply, StepError> {
    match address.send(message).await {
        Ok(result) => result,
        // The actor stopped between lookup and delivery: the session just ended or expired, and
        // the store has its final state (a retransmission of its last Package#3 is answered from it).
        Err(MailboxError::Closed) | Err(MailboxError::Timeout) => Err(StepError::ActorStopped),
    }
}

async fn rehydrate(shared: &Arc<EdgeShared>, session_id: &str, device_id: &str) -> Result<SessionTarget, HttpError> {
    let store = &shared.state.store;
    match store.get_session(device_id, session_id).await.map_err(store_failure("get_session"))? {
        Some(state) if state.device_id != device_id => {
            Err(HttpError::new(StatusCode::FORBIDDEN, "the session belongs to another device"))
        }
        Some(state) if state.ended => Ok(SessionTarget::Ended(state)),
        Some(state) => Ok(SessionTarget::Actor(SessionRegistry::adopt(shared, state, None))),
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

/// For an ended session: its last Package#2 when `package3_sha256` is the Package#3 it answered, else 410.
pub(crate) fn replay_ended(
    state: &SessionState,
    response: &MultipartResponse,
    package3_sha256: &str,
) -> Result<PackageReply, HttpError> {
    match replay_for(state, response, package3_sha256, true, None) {
        Some(stepped) => Ok(PackageReply { body: stepped.reply, ended: true }),
        None => Err(session_gone()),
    }
}
