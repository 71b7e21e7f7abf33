//! The session driver: runs each step of a DM session over the Store, around the pure machine.
//!
//! Every step goes the same way: take the device's lock, load what the
//! machine reads in one `Store::load_session` (which also grants this node
//! the device's lease), call [`step`](super::step), encode the Package#2 and
//! put it in the state as its replay, commit the batch fenced by that lease,
//! and only then answer. The driver also owns what decides around the step:
//!
//! - **take-over**: when the lease epoch is not the one the session last
//!   stepped under, another node may have moved the session on: the stored
//!   state is read again first;
//! - **retransmission** ([`replay`]): a Package#3 that produced the state,
//!   sent again, gets its Package#2 again without a second step;
//! - **concurrent sessions**: a Package#1 ends the device's previous open
//!   session (its sent commands go back to the queue), also one opened by a
//!   Package#1 that raced it;
//! - **expiry**, and the fenced commit's outcome (`Fenced`, `OutboxFull`).
//!
//! What belongs to the node it runs on (the lease request with its view of
//! the live nodes, waking the outbox relay, the actors of its sessions) comes
//! through [`SessionHost`]. A session between packages is an [`OpenSession`],
//! which its holder lends to the driver for each package. See docs/sessions.md
//! and docs/cluster.md.

mod error;
pub mod replay;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use omadm_proto::multipart::MultipartResponse;
use omadm_proto::package::InitiationPackage;
use tokio::sync::OwnedMutexGuard;

use super::{SessionConfig, SessionContext, SessionEvent, Step};
use crate::clock::Millis;
use crate::cluster::{Fence, LeaseRequest};
use crate::locks::KeyedLocks;
use crate::metrics::{metrics, status_class};
use crate::model::{CommandId, PackageReplay, SentCommand, SessionState};
use crate::store::{SessionLoad, SessionSnapshot, Store, StoreError, WriteBatch};

pub use error::DriverError;
pub use replay::{ReplyRoute, package3_digest};

/// What the driver needs from the node it runs on.
pub trait SessionHost: Send + Sync {
    /// What this node asks the Store for when it loads a device for a step (its id, the lease TTL,
    /// the nodes it believes alive).
    fn lease_request(&self, now: Millis) -> LeaseRequest;
    /// A commit with events for outbox shard `shard` went through: the shard is not full, and its relay may run now.
    fn outbox_accepted(&self, shard: u32);
    /// A commit was refused because outbox shard `shard` holds `len` events.
    fn outbox_full(&self, shard: u32, len: u64);
    /// The driver is ending `session_id` from a step of another session of its device:
    /// whatever serves that session here must stop without writing.
    fn session_ended(&self, session_id: &str);
}

/// How a Package#3 reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From the device itself (or its load balancer): the Package#2 goes straight back.
    Direct,
    /// Forwarded by another node: the Package#2 goes back through it, which may die before relaying it.
    Forwarded,
}

/// A Package#3 for a session, decoded once.
#[derive(Debug)]
pub struct Package3 {
    /// The `OMADM-DevID` it came with.
    pub device_id: String,
    pub response: MultipartResponse,
    /// [`package3_digest`] of the body as received.
    pub package3_sha256: String,
    /// When this node received it.
    pub received_at: Instant,
    pub arrival: Arrival,
}

/// An open session between its packages, as this process knows it: the one place its state lives here.
#[derive(Debug, Clone)]
pub struct OpenSession {
    state: SessionState,
    /// The lease epoch under which `state` is known to be the stored one; `None` after a rehydration.
    lease_epoch: Option<u64>,
    /// How the state's last Package#2 left.
    last_reply: ReplyRoute,
    /// When the driver produced the state's last Package#2 here.
    replied_at: Option<Instant>,
    /// Ended, expired or moved to another node: a further package gets only a replay, else 410.
    finished: bool,
}

impl OpenSession {
    /// A session read back from the store (after a restart, or another node's session).
    pub fn rehydrated(state: SessionState) -> OpenSession {
        OpenSession { state, lease_epoch: None, last_reply: ReplyRoute::Elsewhere, replied_at: None, finished: false }
    }

    fn opened(state: SessionState, lease_epoch: Option<u64>) -> OpenSession {
        OpenSession { state, lease_epoch, last_reply: ReplyRoute::Direct, replied_at: None, finished: false }
    }

    pub fn state(&self) -> &SessionState {
        &self.state
    }

    pub fn session_id(&self) -> &str {
        &self.state.id
    }

    pub fn device_id(&self) -> &str {
        &self.state.device_id
    }

    /// Ended, expired or moved to another node: whatever serves it should stop.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Another step of the device ended the session: nothing more is written for it from here.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Takes what a step (or a replay) produced.
    fn took(&mut self, stepped: Stepped, arrival: Arrival) -> Answered {
        if stepped.lease_epoch.is_some() {
            self.lease_epoch = stepped.lease_epoch;
        }
        // Whether stepped or re-sent, the Package#2 of the state left from here (unless
        // through a forwarding node, which may not pass it on).
        self.last_reply = match arrival {
            Arrival::Direct => ReplyRoute::Direct,
            Arrival::Forwarded => ReplyRoute::Elsewhere,
        };
        self.replied_at = Some(Instant::now());
        match stepped.next_state {
            Some(next) if !stepped.ended && !next.ended && next.id == self.state.id => self.state = next,
            Some(last) if last.id == self.state.id => {
                // Kept for a retransmission of the last Package#3 that reaches it before it is dropped.
                self.state = last;
                self.finished = true;
            }
            _ => self.finished = true,
        }
        Answered { package2: stepped.reply, ended: stepped.ended }
    }
}

/// The Package#2 that answers a Package#3, encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub package2: Vec<u8>,
    pub ended: bool,
}

/// The answer to a Package#1: its Package#2, and the session it opened when more packages follow.
#[derive(Debug)]
pub struct Opened {
    pub package2: Vec<u8>,
    pub session: Option<OpenSession>,
}

/// A session as the store has it, looked up by id.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredSession {
    Open(SessionState),
    /// Ended: only a retransmission of its last Package#3 gets an answer (its Package#2).
    Ended(SessionState),
}

/// Why an open session ends without a Package#2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Silent past the timeout.
    Expired,
    /// A new Package#1 of its device.
    Superseded,
}

impl Ending {
    fn event(self, state: SessionState) -> SessionEvent {
        match self {
            Ending::Expired => SessionEvent::Expiry { state },
            Ending::Superseded => {
                let before_package3 = if state.packages <= 1 { "true" } else { "false" };
                metrics().sessions_superseded.with_label_values(&[before_package3]).inc();
                SessionEvent::Superseded { state }
            }
        }
    }
}

/// A committed (or replayed) step.
struct Stepped {
    reply: Vec<u8>,
    ended: bool,
    /// The session's state as the batch wrote it (or as stored, for a replay).
    next_state: Option<SessionState>,
    /// The lease the step ran under, when it touched the store.
    lease_epoch: Option<u64>,
}

/// The device's lock and what was loaded under it.
struct Held {
    _device_guard: OwnedMutexGuard<()>,
    lease_request: LeaseRequest,
    snapshot: SessionSnapshot,
}

/// Runs session steps over a Store. Cheap to clone.
#[derive(Clone)]
pub struct SessionDriver {
    store: Arc<dyn Store>,
    config: Arc<SessionConfig>,
    host: Arc<dyn SessionHost>,
    /// One package (or bootstrap, or expiry) of a device at a time in this process: loads, step and commit never interleave.
    device_locks: Arc<KeyedLocks>,
}

impl SessionDriver {
    pub fn new(
        store: Arc<dyn Store>,
        config: SessionConfig,
        host: Arc<dyn SessionHost>,
        device_locks: Arc<KeyedLocks>,
    ) -> SessionDriver {
        SessionDriver { store, config: Arc::new(config), host, device_locks }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// How long from `now` until `session` expires, counted from its last package.
    pub fn expires_in(&self, session: &OpenSession, now: Millis) -> Millis {
        let silent_for = now.saturating_sub(session.state.last_activity);
        self.config.session_timeout.saturating_sub(silent_for)
    }

    /// A Package#1 opens session `session_id`. `superseded` is the device's previous session when
    /// the caller has just ended it; any other open session of the device (opened by a Package#1
    /// that raced this one) ends now, under the device's lock.
    pub async fn open(
        &self,
        device_id: &str,
        session_id: String,
        package: InitiationPackage,
        superseded: Option<&str>,
        now: Millis,
    ) -> Result<Opened, DriverError> {
        let mut held = self.lock_and_load(device_id, &[], now).await?;
        if let Some(previous) = held.snapshot.device.last_session_id.clone()
            && previous != session_id
            && superseded != Some(previous.as_str())
            && self.end_concurrent_session(device_id, &previous, &held.lease_request, now).await?
        {
            held.snapshot = self.load(device_id, &[], &held.lease_request).await?;
        }
        let event = SessionEvent::Initiation { session_id: session_id.clone(), package };
        let stepped = self.commit_step(held.snapshot, held.lease_request.ttl, event, now, None).await?;
        metrics().sessions_started.with_label_values::<&str>(&[]).inc();
        let session = match stepped.next_state.filter(|state| !stepped.ended && state.id == session_id) {
            Some(state) => Some(OpenSession::opened(state, stepped.lease_epoch)),
            None if !stepped.ended => {
                tracing::error!("the session machine kept the session open but wrote no state for it");
                None
            }
            None => None,
        };
        tracing::info!(ended = stepped.ended, "session started");
        Ok(Opened { package2: stepped.reply, session })
    }

    /// A Package#3 for `session`: its Package#2, stepped or replayed. `session` learns what happened
    /// (its next state, or that it is finished).
    pub async fn answer(
        &self,
        session: &mut OpenSession,
        package: Package3,
        now: Millis,
    ) -> Result<Answered, DriverError> {
        let arrival = package.arrival;
        match self.answer_step(session, package, now).await {
            Ok(stepped) => Ok(session.took(stepped, arrival)),
            Err(error) => {
                if error.session_moved() || error.session_over() {
                    session.finished = true;
                }
                Err(error)
            }
        }
    }

    /// A Package#3 for a session the store has as ended: its last Package#2 when it is the
    /// retransmission of the Package#3 that answered, else `SessionGone`.
    pub async fn answer_ended(
        &self,
        state: SessionState,
        package: Package3,
        now: Millis,
    ) -> Result<Answered, DriverError> {
        self.answer(&mut OpenSession::rehydrated(state), package, now).await
    }

    /// The Expiry step of `session`: its unanswered commands go back to the queue. `Ok` also when
    /// there is nothing left to expire (the device or the session is gone); then `session` is finished.
    /// Errors are the ones worth another try later, or `session_moved` (then `session` is finished too).
    pub async fn expire(&self, session: &mut OpenSession, now: Millis) -> Result<(), DriverError> {
        self.end_open(session, Ending::Expired, now).await
    }

    /// Like [`SessionDriver::expire`], for a session a new Package#1 of its device ends: when no
    /// Package#3 of it arrived, its commands go back to the queue with their attempt undone.
    pub async fn supersede(&self, session: &mut OpenSession, now: Millis) -> Result<(), DriverError> {
        self.end_open(session, Ending::Superseded, now).await
    }

    async fn end_open(&self, session: &mut OpenSession, ending: Ending, now: Millis) -> Result<(), DriverError> {
        if session.finished {
            return Ok(());
        }
        let result = self.expire_state(session.state.clone(), session.lease_epoch, ending, now).await;
        match &result {
            Ok(()) => session.finished = true,
            Err(error) if error.session_moved() => session.finished = true,
            Err(_) => {}
        }
        result
    }

    /// Ends the device's previous session, as the store has it, if it is still open, before a new one
    /// starts: a device that starts over (its Package#3 was lost) gets the commands that session was
    /// waiting on in the new one, not after a timeout. For a session no [`OpenSession`] holds here.
    pub async fn supersede_stored(
        &self,
        device_id: &str,
        previous_session_id: &str,
        now: Millis,
    ) -> Result<(), DriverError> {
        let stored =
            self.store.get_session(device_id, previous_session_id).await.map_err(store_error("get_session"))?;
        match stored {
            Some(state) if !state.ended && state.device_id == device_id => {
                tracing::info!(previous_session_id, "ending the device's previous open session");
                self.expire_state(state, None, Ending::Superseded, now).await
            }
            _ => Ok(()),
        }
    }

    /// The session `session_id` of `device_id` as stored: `WrongDevice` for another device's,
    /// `SessionGone` for one ended among the device's last `lookback` sessions but no longer
    /// stored, `UnknownSession` otherwise.
    pub async fn stored_session(
        &self,
        device_id: &str,
        session_id: &str,
        lookback: usize,
    ) -> Result<StoredSession, DriverError> {
        let store = &self.store;
        match store.get_session(device_id, session_id).await.map_err(store_error("get_session"))? {
            Some(state) if state.device_id != device_id => Err(DriverError::WrongDevice),
            Some(state) if state.ended => Ok(StoredSession::Ended(state)),
            Some(state) => Ok(StoredSession::Open(state)),
            None => {
                let history = store.list_sessions(device_id, lookback).await.map_err(store_error("list_sessions"))?;
                if history.iter().any(|summary| summary.id == session_id) {
                    Err(DriverError::SessionGone)
                } else {
                    Err(DriverError::UnknownSession)
                }
            }
        }
    }

    async fn answer_step(&self, session: &OpenSession, package: Package3, now: Millis) -> Result<Stepped, DriverError> {
        let known = &session.state;
        if package.device_id != known.device_id {
            return Err(DriverError::WrongDevice);
        }
        let closed = session.finished || known.ended;
        if !closed && now.saturating_sub(known.last_activity) > self.config.session_timeout {
            // The timer has not fired yet (or the session was just rehydrated): it expired all the same.
            self.expire_state(known.clone(), session.lease_epoch, Ending::Expired, now).await?;
            return Err(DriverError::Expired);
        }
        let statuses: Vec<(&'static str, u16)> = known
            .awaiting
            .iter()
            .zip(&package.response.package.statuses)
            .map(|(sent, status)| (sent.command.name(), status.code.as_u16()))
            .collect();
        let Package3 { device_id, response, package3_sha256, received_at, .. } = package;
        let mut route = match closed {
            true => ReplyRoute::Elsewhere,
            false => replay::route_seen_by(session.last_reply, session.replied_at, received_at),
        };
        let mut state = known.clone();
        let mut epoch = session.lease_epoch;
        let mut taken_over: Option<Held> = None;
        let mut awaiting_moved = false;
        // At most twice: with the state as known here, then (after a take-over) as stored.
        let mut held = loop {
            let statuses_sent = response.package.statuses.len();
            if let Some(replay) = replay::retransmitted(&state, statuses_sent, &package3_sha256, route) {
                return Ok(replayed(replay, &state, epoch));
            }
            if closed || state.ended {
                return Err(DriverError::SessionGone);
            }
            if let Some(held) = taken_over.take() {
                break held;
            }
            let held = self.lock_and_load(&device_id, &awaited_ids_of(&state.awaiting), now).await?;
            if epoch == Some(held.snapshot.lease.epoch) {
                break held;
            }
            let stored = self.reread_after_takeover(&device_id, &state.id).await?;
            awaiting_moved = awaited_ids_of(&stored.awaiting) != awaited_ids_of(&state.awaiting);
            // A state another node moved on has a Package#2 this process never sent.
            if stored != state {
                route = ReplyRoute::Elsewhere;
            }
            state = stored;
            epoch = Some(held.snapshot.lease.epoch);
            taken_over = Some(held);
        };
        if awaiting_moved {
            held.snapshot = self.load(&device_id, &awaited_ids_of(&state.awaiting), &held.lease_request).await?;
        }
        let event = SessionEvent::Response { state, response };
        let stepped =
            self.commit_step(held.snapshot, held.lease_request.ttl, event, now, Some(package3_sha256)).await?;
        for (command, code) in statuses {
            metrics().command_results.with_label_values(&[command, status_class(code)]).inc();
        }
        Ok(stepped)
    }

    /// The Expiry step of `state`; `Ok` also when there is nothing left to expire.
    async fn expire_state(
        &self,
        state: SessionState,
        known_epoch: Option<u64>,
        ending: Ending,
        now: Millis,
    ) -> Result<(), DriverError> {
        match self.expiry_step(state, known_epoch, ending, now).await {
            Ok(()) => Ok(()),
            Err(error) if error.unavailable() => Err(error),
            // The device is gone (nothing to put back) or the machine refused: nothing left to expire.
            Err(error) => {
                tracing::info!(%error, "session expiry refused; nothing left to expire");
                Ok(())
            }
        }
    }

    async fn expiry_step(
        &self,
        state: SessionState,
        known_epoch: Option<u64>,
        ending: Ending,
        now: Millis,
    ) -> Result<(), DriverError> {
        let device_id = state.device_id.clone();
        let mut state = state;
        let mut held = self.lock_and_load(&device_id, &awaited_ids_of(&state.awaiting), now).await?;
        if known_epoch != Some(held.snapshot.lease.epoch) {
            let stored = self.reread_after_takeover(&device_id, &state.id).await?;
            let awaiting_moved = awaited_ids_of(&stored.awaiting) != awaited_ids_of(&state.awaiting);
            state = stored;
            if state.ended {
                return Err(DriverError::SessionGone);
            }
            if awaiting_moved {
                held.snapshot = self.load(&device_id, &awaited_ids_of(&state.awaiting), &held.lease_request).await?;
            }
        }
        let event = ending.event(state);
        self.commit_step(held.snapshot, held.lease_request.ttl, event, now, None).await?;
        Ok(())
    }

    /// The lease was not this session's since its last step: the stored state may have moved on.
    async fn reread_after_takeover(&self, device_id: &str, session_id: &str) -> Result<SessionState, DriverError> {
        metrics().lease_takeovers.with_label_values::<&str>(&[]).inc();
        let stored = self.store.get_session(device_id, session_id).await.map_err(store_error("get_session"))?;
        stored.filter(|stored| stored.device_id == device_id).ok_or(DriverError::SessionGone)
    }

    /// Another Package#1 of the device opened `previous` while this one waited for the device's lock
    /// (a device that retried its Package#1, the first still in flight): it ends now, under the same lock,
    /// so its sent commands go back to the queue for the new session. `true` when it was open.
    async fn end_concurrent_session(
        &self,
        device_id: &str,
        previous: &str,
        lease_request: &LeaseRequest,
        now: Millis,
    ) -> Result<bool, DriverError> {
        let stored = self.store.get_session(device_id, previous).await.map_err(store_error("get_session"))?;
        let Some(state) = stored.filter(|state| !state.ended && state.device_id == device_id) else {
            return Ok(false);
        };
        tracing::info!(previous_session_id = previous, "ending the device's concurrent open session");
        self.host.session_ended(previous);
        let snapshot = self.load(device_id, &awaited_ids_of(&state.awaiting), lease_request).await?;
        self.commit_step(snapshot, lease_request.ttl, Ending::Superseded.event(state), now, None).await?;
        Ok(true)
    }

    /// Takes the device's lock, then loads it for a step and takes (or renews) its lease.
    async fn lock_and_load(&self, device_id: &str, awaiting: &[CommandId], now: Millis) -> Result<Held, DriverError> {
        let device_guard = self.device_locks.lock(device_id).await;
        let lease_request = self.host.lease_request(now);
        let snapshot = self.load(device_id, awaiting, &lease_request).await?;
        Ok(Held { _device_guard: device_guard, lease_request, snapshot })
    }

    async fn load(
        &self,
        device_id: &str,
        awaiting: &[CommandId],
        lease: &LeaseRequest,
    ) -> Result<SessionSnapshot, DriverError> {
        let queue_limit = self.config.max_commands_per_package;
        let loaded = self
            .store
            .load_session(device_id, awaiting, queue_limit, lease)
            .await
            .map_err(store_error("load_session"))?;
        match loaded {
            SessionLoad::Loaded(snapshot) => Ok(*snapshot),
            SessionLoad::UnknownDevice => Err(DriverError::UnknownDevice),
            SessionLoad::LeaseHeld { node_id, .. } if node_id == lease.node_id => {
                tracing::error!("the store says this node holds the lease it asked for; retry");
                Err(DriverError::Fenced)
            }
            SessionLoad::LeaseHeld { node_id, .. } => Err(DriverError::Elsewhere { node_id }),
        }
    }

    /// Steps the session machine on a loaded snapshot, encodes the reply, puts it in the state as the
    /// replay of `package3_sha256`, and commits the batch under the lease's fence.
    async fn commit_step(
        &self,
        snapshot: SessionSnapshot,
        lease_ttl: Millis,
        event: SessionEvent,
        now: Millis,
        package3_sha256: Option<String>,
    ) -> Result<Stepped, DriverError> {
        let session_id = match &event {
            SessionEvent::Initiation { session_id, .. } => session_id.clone(),
            SessionEvent::Response { state, .. }
            | SessionEvent::Expiry { state }
            | SessionEvent::Superseded { state } => state.id.clone(),
        };
        let is_expiry = matches!(event, SessionEvent::Expiry { .. } | SessionEvent::Superseded { .. });
        let SessionSnapshot { lease, device, mirror, queued, awaiting, next_alert_id } = snapshot;
        let context = SessionContext { device, mirror, queued, awaiting, next_alert_id, now };
        let step = super::step(&self.config, context, event).map_err(DriverError::Refused)?;
        let Step { reply, mut batch, ended } = step;
        let reply = match reply {
            Some(package) => package.to_json_bytes().map_err(|error| {
                tracing::error!(%error, "cannot encode our own Package#2");
                DriverError::Unencodable
            })?,
            None if is_expiry => Vec::new(),
            None => {
                tracing::error!("the session machine gave no Package#2 for a package");
                return Err(DriverError::NoReply);
            }
        };
        // The answer to a Package#3 goes with the state, for its retransmission; an expiry keeps none.
        let replay = package3_sha256.filter(|_| !is_expiry).and_then(|digest| {
            String::from_utf8(reply.clone()).ok().map(|package2| PackageReplay { package3_sha256: digest, package2 })
        });
        set_replay(&mut batch, &session_id, replay);
        let next_state = batch.sessions.iter().find(|state| state.id == session_id).cloned();
        let alert_statuses: Vec<u16> = batch.alerts.iter().map(|alert| alert.status).collect();
        let shards: BTreeSet<u32> = batch.events.iter().map(|event| self.store.outbox_shard_of(&event.key)).collect();
        batch.fence = Some(Fence::of(&lease, lease_ttl, ended));
        match self.store.commit(batch).await {
            Ok(()) => {
                for shard in &shards {
                    self.host.outbox_accepted(*shard);
                }
            }
            Err(StoreError::Fenced { .. }) => {
                metrics().fenced_steps.with_label_values::<&str>(&[]).inc();
                tracing::warn!(epoch = lease.epoch, "the device's lease moved while the step ran; nothing written");
                return Err(DriverError::Fenced);
            }
            Err(StoreError::OutboxFull { len }) => {
                for shard in &shards {
                    self.host.outbox_full(*shard, len);
                }
                metrics().store_errors.with_label_values(&["commit"]).inc();
                return Err(DriverError::OutboxFull { len });
            }
            Err(error) => return Err(store_error("commit")(error)),
        }
        for status in alert_statuses {
            metrics().alerts.with_label_values(&[&status.to_string()]).inc();
        }
        if ended {
            metrics().sessions_ended.with_label_values(&[if is_expiry { "expired" } else { "ended" }]).inc();
        }
        Ok(Stepped { reply, ended, next_state, lease_epoch: Some(lease.epoch) })
    }
}

/// Every state of `session_id` the batch writes gets `replay` (none for an Initiation or an Expiry).
fn set_replay(batch: &mut WriteBatch, session_id: &str, replay: Option<PackageReplay>) {
    for state in batch.sessions.iter_mut().filter(|state| state.id == session_id) {
        state.replay = replay.clone();
    }
}

/// The Package#2 already sent for a retransmitted Package#3: nothing is stepped or written.
fn replayed(replay: &PackageReplay, state: &SessionState, lease_epoch: Option<u64>) -> Stepped {
    metrics().replayed_packages.with_label_values::<&str>(&[]).inc();
    tracing::info!("retransmitted Package#3: answering with the Package#2 already sent");
    Stepped {
        reply: replay.package2.clone().into_bytes(),
        ended: state.ended,
        next_state: Some(state.clone()),
        lease_epoch,
    }
}

fn awaited_ids_of(awaiting: &[SentCommand]) -> Vec<CommandId> {
    awaiting.iter().filter_map(|sent| sent.command_id).collect()
}

/// Counts a store failure under `operation` in `omadm_store_errors_total`.
fn store_error(operation: &'static str) -> impl Fn(StoreError) -> DriverError {
    move |source| {
        metrics().store_errors.with_label_values(&[operation]).inc();
        DriverError::Store { operation, source }
    }
}
