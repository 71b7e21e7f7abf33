//! Session actors: one actix actor per open DM session, a shell around `omadm_core::session::driver`.
//!
//! The actor serializes the packages of its session (a Package#3 is handled
//! atomically: no other message or timer runs meanwhile), holds the session
//! between packages (an `OpenSession`, lent to the driver for each package),
//! and expires it after `session_timeout` of silence. Every decision (lease,
//! take-over, retransmission, concurrent sessions, the fenced commit) is the
//! driver's; the actor stops when the driver says the session is finished.
//! The state is also in the store (every step's batch writes it before the
//! Package#2 leaves), so another node, or this one after a restart,
//! rehydrates an actor from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::StatusCode;
use omadm_core::bus::relay::OutboxWaker;
use omadm_core::clock::{self, Millis};
use omadm_core::cluster::LeaseRequest;
use omadm_core::metrics::metrics;
use omadm_core::model::SessionState;
use omadm_core::session::driver::{Answered, DriverError, OpenSession, Package3, SessionHost, StoredSession};
use omadm_core::store::StoreError;

use super::EdgeShared;
use crate::HttpError;
use crate::cluster::Cluster;

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
    pub fn adopt(shared: &Arc<EdgeShared>, session: OpenSession) -> Addr<SessionActor> {
        let mut map = shared.sessions.map();
        if let Some(entry) = map.by_session.get(session.session_id())
            && entry.address.connected()
        {
            return entry.address.clone();
        }
        let session_id = session.session_id().to_owned();
        let device_id = session.device_id().to_owned();
        let address = SessionActor {
            shared: shared.clone(),
            session_id: session_id.clone(),
            session: Some(session),
            expiry: None,
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

/// What the driver needs from this node: its lease request, the outbox bookkeeping, its actors.
pub(crate) struct EdgeHost {
    pub cluster: Arc<Cluster>,
    /// Pokes the outbox relay with the shard of each event a step commits (set by the server).
    pub outbox_waker: Arc<OnceLock<OutboxWaker>>,
    pub sessions: Arc<SessionRegistry>,
}

impl SessionHost for EdgeHost {
    fn lease_request(&self, now: Millis) -> LeaseRequest {
        self.cluster.lease_request(now)
    }

    fn outbox_accepted(&self, shard: u32) {
        self.cluster.outbox_accepted(shard);
        if let Some(waker) = self.outbox_waker.get() {
            waker.wake_shard(shard);
        }
    }

    fn outbox_full(&self, shard: u32, len: u64) {
        self.cluster.outbox_full(shard, len);
    }

    fn session_ended(&self, session_id: &str) {
        if let Some((address, _)) = self.sessions.get(session_id) {
            address.do_send(Forget);
        }
    }
}

/// What the device gets when the driver did not answer: the one map from driver errors to HTTP.
/// A session that moved asks for a retry soon (it lands on the current owner); a backend failure for a retry later.
pub(crate) fn refusal(error: DriverError) -> HttpError {
    let reason = error.to_string();
    match error {
        DriverError::WrongDevice => HttpError::new(StatusCode::FORBIDDEN, reason),
        DriverError::SessionGone | DriverError::Expired | DriverError::UnknownDevice => {
            HttpError::new(StatusCode::GONE, reason)
        }
        DriverError::UnknownSession => HttpError::not_found(reason),
        DriverError::Refused(refusal) => {
            let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            HttpError::new(status, reason)
        }
        DriverError::Unencodable | DriverError::NoReply => HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, reason),
        DriverError::Elsewhere { .. } | DriverError::Fenced => HttpError::retry_soon(reason),
        DriverError::OutboxFull { len } => HttpError::from(StoreError::OutboxFull { len }),
        DriverError::Store { source, .. } => HttpError::from(source),
    }
}

/// A Package#3 for the session, decoded once. The actor takes it out of the parcel; when the actor
/// stopped before taking it, the sender still has it.
#[derive(Message)]
#[rtype(result = "Result<Answered, DriverError>")]
pub(crate) struct Deliver {
    parcel: Arc<Mutex<Option<Package3>>>,
}

fn take_parcel(parcel: &Mutex<Option<Package3>>) -> Option<Package3> {
    // A poisoned parcel only means a thread panicked holding it; what it holds is still whole.
    parcel.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take()
}

/// What became of a Package#3 handed to an actor.
pub(crate) enum Delivered {
    /// The actor took it: the driver's answer.
    Answer(Result<Answered, DriverError>),
    /// The actor stopped before it took the package (its session just ended or expired): here it is back.
    ActorStopped(Package3),
}

/// The device opened a new session: this one ends now (as an expiry), so its
/// unanswered commands go back to the queue for the new session.
#[derive(Message)]
#[rtype(result = "Result<(), DriverError>")]
pub(crate) struct Supersede;

/// The session was ended by another step of its device (under the device's lock): stop without writing.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget;

pub(crate) struct SessionActor {
    shared: Arc<EdgeShared>,
    session_id: String,
    /// The session; lent to the driver (so `None`) only while a package or the expiry runs, which no other message interleaves.
    session: Option<OpenSession>,
    expiry: Option<SpawnHandle>,
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        metrics().sessions_active.inc();
        self.arm_remaining(context);
    }

    fn stopped(&mut self, context: &mut Self::Context) {
        metrics().sessions_active.dec();
        self.shared.sessions.remove(&self.session_id, &context.address());
    }
}

impl SessionActor {
    fn arm_expiry(&mut self, context: &mut Context<Self>, after: Duration) {
        self.cancel_expiry(context);
        self.expiry = Some(context.run_later(after, |actor, context| actor.expire(context)));
    }

    fn cancel_expiry(&mut self, context: &mut Context<Self>) {
        if let Some(handle) = self.expiry.take() {
            context.cancel_future(handle);
        }
    }

    /// Arms the expiry for what is left of the timeout since the session's last package.
    fn arm_remaining(&mut self, context: &mut Context<Self>) {
        let Some(session) = &self.session else { return };
        let remaining = self.shared.driver.expires_in(session, clock::now_millis());
        self.arm_expiry(context, Duration::from_millis(remaining));
    }

    /// Takes the session back from the driver: stops when it is finished, else `then`.
    fn take_back(&mut self, session: OpenSession, context: &mut Context<Self>, then: AfterPackage) {
        let finished = session.is_finished();
        self.session = Some(session);
        match (finished, then) {
            (true, _) => context.stop(),
            (false, AfterPackage::ArmRemaining) => self.arm_remaining(context),
            (false, AfterPackage::RetryExpiry) => self.arm_expiry(context, EXPIRY_RETRY),
        }
    }

    /// Runs the Expiry step and stops; retried later when the store fails.
    fn expire(&mut self, context: &mut Context<Self>) {
        self.expiry = None;
        let Some(mut session) = self.session.take() else { return };
        let driver = self.shared.driver.clone();
        let span =
            tracing::info_span!("session.expiry", device_id = %session.device_id(), session_id = %self.session_id);
        let work = async move {
            let result = driver.expire(&mut session, clock::now_millis()).await;
            (session, result)
        };
        context.wait(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |(session, result), actor, context| {
                match result {
                    Ok(()) => {}
                    Err(error) if error.session_moved() => {
                        tracing::info!("the session is another node's now; its expiry runs there");
                    }
                    Err(error) => tracing::warn!(error = %refusal(error), "session expiry not committed, retrying"),
                }
                actor.take_back(session, context, AfterPackage::RetryExpiry);
            },
        ));
    }
}

/// What an actor whose session is still open does after the driver gave it back.
#[derive(Clone, Copy)]
enum AfterPackage {
    /// Waits for the next package until the timeout.
    ArmRemaining,
    /// The expiry could not be committed: tries it again soon.
    RetryExpiry,
}

impl Handler<Deliver> for SessionActor {
    type Result = AtomicResponse<Self, Result<Answered, DriverError>>;

    fn handle(&mut self, message: Deliver, context: &mut Self::Context) -> Self::Result {
        // No expiry while the package is processed; re-armed after it.
        self.cancel_expiry(context);
        let (Some(mut session), Some(package)) = (self.session.take(), take_parcel(&message.parcel)) else {
            return AtomicResponse::new(Box::pin(fut::ready(Err(DriverError::SessionGone))));
        };
        let driver = self.shared.driver.clone();
        let span =
            tracing::info_span!("session.package3", device_id = %session.device_id(), session_id = %self.session_id);
        let work = async move {
            let result = driver.answer(&mut session, package, clock::now_millis()).await;
            (session, result)
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |(session, result), actor, context| {
                actor.take_back(session, context, AfterPackage::ArmRemaining);
                result
            },
        )))
    }
}

impl Handler<Forget> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Forget, context: &mut Self::Context) {
        self.cancel_expiry(context);
        if let Some(session) = &mut self.session {
            session.finish();
        }
        context.stop();
    }
}

impl Handler<Supersede> for SessionActor {
    type Result = AtomicResponse<Self, Result<(), DriverError>>;

    fn handle(&mut self, _: Supersede, context: &mut Self::Context) -> Self::Result {
        self.cancel_expiry(context);
        let Some(mut session) = self.session.take() else {
            return AtomicResponse::new(Box::pin(fut::ready(Ok(()))));
        };
        let driver = self.shared.driver.clone();
        let span =
            tracing::info_span!("session.superseded", device_id = %session.device_id(), session_id = %self.session_id);
        let work = async move {
            let result = driver.supersede(&mut session, clock::now_millis()).await;
            (session, result)
        };
        AtomicResponse::new(Box::pin(tracing::Instrument::instrument(work, span).into_actor(self).map(
            |(session, result), actor, context| {
                actor.take_back(session, context, AfterPackage::RetryExpiry);
                result
            },
        )))
    }
}

/// Ends the device's previous session if it is still open, before a new one starts (by its actor
/// here when it has one, else from the store).
pub(crate) async fn supersede_previous(
    shared: &Arc<EdgeShared>,
    device_id: &str,
    previous_session_id: &str,
) -> Result<(), DriverError> {
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
    shared.driver.supersede_stored(device_id, previous_session_id, clock::now_millis()).await
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
        Some((_, owner)) if owner != device_id => Err(refusal(DriverError::WrongDevice)),
        Some((address, _)) => Ok(SessionTarget::Actor(address)),
        None => {
            let lookback = shared.options.ended_session_lookback;
            match shared.driver.stored_session(device_id, session_id, lookback).await.map_err(refusal)? {
                StoredSession::Open(state) => {
                    Ok(SessionTarget::Actor(SessionRegistry::adopt(shared, OpenSession::rehydrated(state))))
                }
                StoredSession::Ended(state) => Ok(SessionTarget::Ended(state)),
            }
        }
    }
}

/// Hands a Package#3 to its session's actor and waits for the Package#2.
pub(crate) async fn deliver_package3(address: Addr<SessionActor>, package: Package3) -> Delivered {
    let parcel = Arc::new(Mutex::new(Some(package)));
    match address.send(Deliver { parcel: parcel.clone() }).await {
        Ok(result) => Delivered::Answer(result),
        // The actor stopped between lookup and delivery: the session just ended or expired, and
        // the store has its final state (a retransmission of its last Package#3 is answered from it).
        Err(MailboxError::Closed) | Err(MailboxError::Timeout) => match take_parcel(&parcel) {
            Some(package) => Delivered::ActorStopped(package),
            None => Delivered::Answer(Err(DriverError::SessionGone)),
        },
    }
}
