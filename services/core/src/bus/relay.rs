//! The outbox relay: moves events committed with the Store's writes to the Bus, at least once and in order per shard.
//!
//! A [`crate::store::WriteBatch`] carries the events its writes produce; they
//! become durable in the store's outbox together with the writes, so no event
//! is lost when the process dies between the commit and the publish. The
//! outbox has shards ([`Store::outbox_shards`]: one in the embedded engine and
//! on a single Redis, one per slot on Redis Cluster), and each shard is relayed
//! by one node: the relay publishes only the shards its [`ShardOwnership`]
//! says are this node's (by default all of them; in cluster mode the gateway
//! passes "the rendezvous owner of the shard is me").
//!
//! One task per process repeats: pick shards, and for each read its oldest
//! events (a batch), publish them, acknowledge them in the store, until the
//! shard is empty (shards take turns batch by batch). Which shards:
//! - a sweep, on a short interval, at start, after a failure, for
//!   [`OutboxWaker::wake`] and for [`OutboxRelay::drain`]: `outbox_lengths` of
//!   every owned shard, then the non-empty ones (this also sets
//!   `omadm_outbox_backlog`, the events waiting in this node's shards);
//! - a hint, [`OutboxWaker::wake_shard`] right after a commit: that shard only,
//!   when this node owns it (another node's shard waits for its owner's sweep).
//!
//! Scheduled events ([`crate::store::WriteBatch::scheduled`], such as a notification's next attempt) enter
//! the outbox through the relay too: at most once per `release_interval`, a sweep first asks the store to
//! move the due events of each owned shard into its outbox (`Store::release_due_events`), then publishes.
//! An event is released at most one interval (plus one poll) after its time.
//!
//! It backs off (capped exponential) while the bus or the store fails. An
//! event is published again when the process dies between its publish and its
//! acknowledgement, or when two nodes briefly both believe they own a shard
//! while membership changes: consumers drop repeats by event id.
//!
//! ```text
//! let relay = OutboxRelay::spawn(store.clone(), bus.clone());
//! store.commit(batch_with_events).await?;
//! relay.waker().wake_shard(store.outbox_shard_of(device_id));   // publish now rather than at the next sweep
//! ...
//! relay.drain().await?;                // at shutdown: publish what is pending in this node's shards
//! relay.stop().await;
//! ```

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::Bus;
use crate::metrics::metrics;
use crate::store::Store;

/// Shards whose due scheduled events are released at once.
const RELEASE_CONCURRENCY: usize = 16;

/// Which outbox shards this node relays. Asked at every sweep and hint, so it
/// may follow membership (e.g. `rendezvous_owner(live nodes, shard) == me`).
#[derive(Clone)]
pub struct ShardOwnership(Arc<dyn Fn(u32) -> bool + Send + Sync>);

impl ShardOwnership {
    /// Every shard: a single node, or the embedded engine.
    pub fn all() -> Self {
        ShardOwnership(Arc::new(|_| true))
    }

    /// The shards for which `owns` answers true.
    pub fn new(owns: impl Fn(u32) -> bool + Send + Sync + 'static) -> Self {
        ShardOwnership(Arc::new(owns))
    }

    pub fn owns(&self, shard: u32) -> bool {
        (self.0)(shard)
    }
}

impl Default for ShardOwnership {
    fn default() -> Self {
        Self::all()
    }
}

impl std::fmt::Debug for ShardOwnership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ShardOwnership(..)")
    }
}

/// Two ownerships are equal when they are the same function.
impl PartialEq for ShardOwnership {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ShardOwnership {}

/// How the relay paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Events read from one shard and published per round trip.
    pub batch_size: usize,
    /// How often every owned shard is checked (the sweep) when nobody pokes the relay.
    pub poll_interval: Duration,
    /// The first wait after a failure; doubled per further failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts while failing.
    pub max_backoff: Duration,
    /// The shards this node relays.
    pub ownership: ShardOwnership,
    /// How often due scheduled events are moved into the owned shards' outboxes (at a sweep).
    pub release_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            ownership: ShardOwnership::all(),
            release_interval: Duration::from_secs(1),
        }
    }
}

/// Why a drain did not empty the outbox. The events stay in the outbox and
/// are published by the relay's next attempt (or the next process).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("reading or acknowledging the outbox failed: {0}")]
    Store(String),
    #[error("publishing failed: {0}")]
    Bus(String),
    #[error("the relay has stopped")]
    Stopped,
}

/// What the pokes since the last round asked for.
#[derive(Default)]
struct Hints {
    /// `wake()`: look at every owned shard.
    sweep: bool,
    shards: BTreeSet<u32>,
}

/// What the handle and the task share.
struct Shared {
    wake: Notify,
    stop: AtomicBool,
    hints: Mutex<Hints>,
    /// Callers of `drain` waiting for the outbox to be empty.
    drains: Mutex<Vec<oneshot::Sender<Result<(), RelayError>>>>,
}

impl Shared {
    fn take_drains(&self) -> Vec<oneshot::Sender<Result<(), RelayError>>> {
        std::mem::take(&mut *self.drains.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn has_drains(&self) -> bool {
        !self.drains.lock().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    fn take_hints(&self) -> Hints {
        std::mem::take(&mut *self.hints.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn hint(&self, change: impl FnOnce(&mut Hints)) {
        change(&mut self.hints.lock().unwrap_or_else(PoisonError::into_inner));
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The running relay. Dropping it stops the task after its current batch;
/// [`OutboxRelay::stop`] also waits for that.
pub struct OutboxRelay {
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

/// A cheap, cloneable way to poke the relay from wherever commits happen.
#[derive(Clone)]
pub struct OutboxWaker {
    shared: Arc<Shared>,
}

impl OutboxWaker {
    /// Asks the relay to look at every shard it owns now. Pokes while it is busy coalesce into one.
    pub fn wake(&self) {
        self.shared.hint(|hints| hints.sweep = true);
    }

    /// Asks the relay to publish `shard` now (`Store::outbox_shard_of` of the committed events' key),
    /// if this node owns it; cheaper than [`OutboxWaker::wake`] on a store with many shards.
    pub fn wake_shard(&self, shard: u32) {
        self.shared.hint(|hints| {
            hints.shards.insert(shard);
        });
    }
}

impl OutboxRelay {
    /// Starts the relay with [`RelayConfig::default`]. Must be called within a tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> OutboxRelay {
        Self::spawn_with(store, bus, RelayConfig::default())
    }

    /// Starts the relay. Must be called within a tokio runtime.
    pub fn spawn_with(store: Arc<dyn Store>, bus: Arc<dyn Bus>, config: RelayConfig) -> OutboxRelay {
        let shared = Arc::new(Shared {
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            hints: Mutex::new(Hints::default()),
            drains: Mutex::new(Vec::new()),
        });
        let worker = Relay {
            store,
            bus,
            config,
            shared: Arc::clone(&shared),
            failed_last: AtomicU32::new(u32::MAX),
            released_at: Mutex::new(None),
        };
        let task = tokio::spawn(worker.run().instrument(tracing::info_span!("outbox_relay")));
        OutboxRelay { shared, task: Some(task) }
    }

    /// Asks the relay to look at every owned shard now (e.g. right after a commit that carried events).
    pub fn notify(&self) {
        self.waker().wake();
    }

    /// A handle that pokes this relay, for components that commit events.
    pub fn waker(&self) -> OutboxWaker {
        OutboxWaker { shared: Arc::clone(&self.shared) }
    }

    /// Publishes everything in the shards this node owns, returning once they
    /// are empty, or with the first failure (no backoff: a shutdown should not
    /// wait on a dead bus; the events stay for the next start or the shard's
    /// next owner). Events committed while it runs are published too.
    pub async fn drain(&self) -> Result<(), RelayError> {
        let (reply, answer) = oneshot::channel();
        self.shared.drains.lock().unwrap_or_else(PoisonError::into_inner).push(reply);
        self.shared.wake.notify_one();
        answer.await.unwrap_or(Err(RelayError::Stopped))
    }

    /// Stops the relay after the batch in flight and waits for the task to end.
    pub async fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
        {
            tracing::error!(%error, "the outbox relay task failed");
        }
    }
}

impl Drop for OutboxRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Why the relay's wait ended.
enum Woken {
    /// The interval or the backoff passed: time for a sweep.
    Timer,
    Poked,
}

/// The task's side.
struct Relay {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: RelayConfig,
    shared: Arc<Shared>,
    /// The shard whose publish failed last (`u32::MAX`: none); the next round starts after it.
    failed_last: AtomicU32,
    /// When due scheduled events were last released (None: not yet).
    released_at: Mutex<Option<Instant>>,
}

impl Relay {
    async fn run(self) {
        // `Some` while failing: the wait before the next attempt.
        let mut backoff: Option<Duration> = None;
        // The first round looks at every shard: events left by an earlier process.
        let mut woken = Woken::Timer;
        loop {
            if self.shared.stopping() {
                for drain in self.shared.take_drains() {
                    let _ = drain.send(Err(RelayError::Stopped));
                }
                return;
            }
            let drains = self.shared.take_drains();
            let hints = self.shared.take_hints();
            let result = if matches!(woken, Woken::Timer) || hints.sweep || !drains.is_empty() {
                self.sweep().await
            } else {
                let owned: Vec<u32> =
                    hints.shards.into_iter().filter(|shard| self.config.ownership.owns(*shard)).collect();
                self.publish_shards(owned).await
            };
            for drain in drains {
                let _ = drain.send(result.clone());
            }
            backoff = match result {
                Ok(()) => None,
                Err(error) => {
                    let wait = backoff
                        .map_or(self.config.initial_backoff, |previous| previous.saturating_mul(2))
                        .min(self.config.max_backoff);
                    tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "outbox relay failed; retrying");
                    Some(wait)
                }
            };
            woken = self.wait(backoff).await;
        }
    }

    /// Sleeps until the interval (or the backoff) passes or something needs the relay.
    async fn wait(&self, backoff: Option<Duration>) -> Woken {
        let deadline = Instant::now() + backoff.unwrap_or(self.config.poll_interval);
        loop {
            let poked = tokio::time::timeout_at(deadline, self.shared.wake.notified()).await.is_ok();
            if !poked {
                return Woken::Timer;
            }
            // A commit's poke goes now, unless the relay is backing off from a failure.
            if self.shared.stopping() || self.shared.has_drains() || backoff.is_none() {
                return Woken::Poked;
            }
        }
    }

    /// Publishes every owned shard until a look at their lengths finds them all empty
    /// (or the relay is asked to stop).
    async fn sweep(&self) -> Result<(), RelayError> {
        self.release_due().await?;
        loop {
            let waiting = self.waiting_shards().await?;
            if waiting.is_empty() || self.shared.stopping() {
                return Ok(());
            }
            self.publish_shards(waiting).await?;
        }
    }

    /// Moves due scheduled events into the owned shards' outboxes, when `release_interval` has passed since
    /// the last time. A few shards at a time: on Redis Cluster a node owns thousands of them.
    async fn release_due(&self) -> Result<(), RelayError> {
        let started = Instant::now();
        {
            let mut released_at = self.released_at.lock().unwrap_or_else(PoisonError::into_inner);
            if released_at.is_some_and(|at| started.duration_since(at) < self.config.release_interval) {
                return Ok(());
            }
            *released_at = Some(started);
        }
        let now = crate::clock::now_millis();
        let limit = self.config.batch_size.max(1);
        let owned = (0..self.store.outbox_shards()).filter(|shard| self.config.ownership.owns(*shard));
        let released: Vec<Result<usize, crate::store::StoreError>> = futures_util::stream::iter(owned)
            .map(|shard| self.store.release_due_events(shard, now, limit))
            .buffer_unordered(RELEASE_CONCURRENCY)
            .collect()
            .await;
        let mut total = 0;
        for result in released {
            total += result.map_err(store_error)?;
        }
        if total > 0 {
            metrics().scheduled_released.inc_by(total as u64);
            tracing::debug!(events = total, "scheduled events released into the outbox");
        }
        Ok(())
    }

    /// The owned shards holding events; sets the backlog gauge to their sum.
    async fn waiting_shards(&self) -> Result<Vec<u32>, RelayError> {
        let owned: Vec<u32> =
            (0..self.store.outbox_shards()).filter(|shard| self.config.ownership.owns(*shard)).collect();
        if owned.is_empty() {
            metrics().outbox_backlog.set(0);
            return Ok(Vec::new());
        }
        let lengths = self.store.outbox_lengths(&owned).await.map_err(store_error)?;
        let backlog: u64 = lengths.iter().sum();
        metrics().outbox_backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        Ok(owned.into_iter().zip(lengths).filter(|(_, length)| *length > 0).map(|(shard, _)| shard).collect())
    }

    /// Publishes `shards` until each is empty, one batch per shard in turn so a
    /// busy shard does not hold up the others. The first failure ends the round
    /// (the bus is most likely down for every shard); the next round starts
    /// after the shard that failed, so one shard that keeps failing does not
    /// stop the others.
    async fn publish_shards(&self, mut shards: Vec<u32>) -> Result<(), RelayError> {
        let failed_last = self.failed_last.load(Ordering::Relaxed);
        shards.sort_by_key(|shard| (*shard <= failed_last, *shard));
        let mut pending = shards;
        while !pending.is_empty() {
            let mut still_pending = Vec::with_capacity(pending.len());
            for shard in pending {
                if self.shared.stopping() {
                    return Ok(());
                }
                match self.publish_batch(shard).await {
                    Ok(true) => still_pending.push(shard),
                    Ok(false) => {}
                    Err(error) => {
                        self.failed_last.store(shard, Ordering::Relaxed);
                        return Err(error);
                    }
                }
            }
            pending = still_pending;
        }
        self.failed_last.store(u32::MAX, Ordering::Relaxed);
        Ok(())
    }

    /// Publishes the oldest batch of `shard` and acknowledges it; `true` when the shard may hold more.
    async fn publish_batch(&self, shard: u32) -> Result<bool, RelayError> {
        let batch_size = self.config.batch_size.max(1);
        let events = self.store.outbox(shard, batch_size).await.map_err(store_error)?;
        if events.is_empty() {
            return Ok(false);
        }
        self.bus.publish(&events).await.map_err(|error| RelayError::Bus(error.to_string()))?;
        let event_ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
        self.store.ack_outbox(shard, &event_ids).await.map_err(store_error)?;
        tracing::debug!(shard, events = events.len(), "outbox events published");
        Ok(events.len() == batch_size)
    }
}

fn store_error(error: crate::store::StoreError) -> RelayError {
    RelayError::Store(error.to_string())
}
