//! The outbox relay: moves events committed with the Store's writes to the Bus, at least once and in order.
//!
//! A [`crate::store::WriteBatch`] carries the events its writes produce; they
//! become durable in the store's outbox together with the writes, so no event
//! is lost when the process dies between the commit and the publish. The relay
//! is one task per process that repeats: read the oldest events of the outbox
//! (a batch), publish them, acknowledge them in the store. It wakes when poked
//! ([`OutboxRelay::notify`], e.g. after a commit that carried events) and on a
//! short interval, and backs off (capped exponential) while the bus or the
//! store fails. An event is published again when the process dies between its
//! publish and its acknowledgement: consumers drop repeats by event id.
//!
//! ```text
//! let relay = OutboxRelay::spawn(store.clone(), bus.clone());
//! store.commit(batch_with_events).await?;
//! relay.notify();                      // publish now rather than at the next tick
//! ...
//! relay.drain().await?;                // at shutdown: publish what is pending
//! relay.stop().await;
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Bus;
use crate::metrics::metrics;
use crate::store::Store;

/// How the relay paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Events read from the outbox and published per round trip.
    pub batch_size: usize,
    /// How often the outbox is checked when nobody pokes the relay.
    pub poll_interval: Duration,
    /// The first wait after a failure; doubled per further failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts while failing.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
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

/// What the handle and the task share.
struct Shared {
    wake: Notify,
    stop: AtomicBool,
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
    /// Asks the relay to look at the outbox now. Pokes while it is busy coalesce into one.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }
}

impl OutboxRelay {
    /// Starts the relay with [`RelayConfig::default`]. Must be called within a tokio runtime.
    pub fn spawn(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> OutboxRelay {
        Self::spawn_with(store, bus, RelayConfig::default())
    }

    /// Starts the relay. Must be called within a tokio runtime.
    pub fn spawn_with(store: Arc<dyn Store>, bus: Arc<dyn Bus>, config: RelayConfig) -> OutboxRelay {
        let shared =
            Arc::new(Shared { wake: Notify::new(), stop: AtomicBool::new(false), drains: Mutex::new(Vec::new()) });
        let worker = Relay { store, bus, config, shared: Arc::clone(&shared) };
        let task = tokio::spawn(worker.run());
        OutboxRelay { shared, task: Some(task) }
    }

    /// Asks the relay to look at the outbox now (e.g. right after a commit that carried events).
    pub fn notify(&self) {
        self.shared.wake.notify_one();
    }

    /// A handle that pokes this relay, for components that commit events.
    pub fn waker(&self) -> OutboxWaker {
        OutboxWaker { shared: Arc::clone(&self.shared) }
    }

    /// Publishes everything in the outbox, returning once it is empty, or with
    /// the first failure (no backoff: a shutdown should not wait on a dead
    /// bus; the events stay for the next start). Events committed while it
    /// runs are published too.
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

/// The task's side.
struct Relay {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    config: RelayConfig,
    shared: Arc<Shared>,
}

impl Relay {
    async fn run(self) {
        // `Some` while failing: the wait before the next attempt.
        let mut backoff: Option<Duration> = None;
        loop {
            if self.shared.stopping() {
                for drain in self.shared.take_drains() {
                    let _ = drain.send(Err(RelayError::Stopped));
                }
                return;
            }
            let drains = self.shared.take_drains();
            let result = self.publish_pending().await;
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
            self.wait(backoff).await;
        }
    }

    /// Sleeps until the interval (or the backoff) passes or something needs the relay.
    async fn wait(&self, backoff: Option<Duration>) {
        let deadline = Instant::now() + backoff.unwrap_or(self.config.poll_interval);
        loop {
            let poked = tokio::time::timeout_at(deadline, self.shared.wake.notified()).await.is_ok();
            if !poked || self.shared.stopping() || self.shared.has_drains() {
                return;
            }
            // A commit's poke goes now, unless the relay is backing off from a failure.
            if backoff.is_none() {
                return;
            }
        }
    }

    /// Moves batches until the outbox is empty (or the relay is asked to stop).
    async fn publish_pending(&self) -> Result<(), RelayError> {
        let batch_size = self.config.batch_size.max(1);
        loop {
            let events =
                self.store.outbox(0, batch_size).await.map_err(|error| RelayError::Store(error.to_string()))?;
            if events.is_empty() {
                metrics().outbox_backlog.set(0);
                return Ok(());
            }
            let published = self.bus.publish(&events).await;
            if let Err(error) = published {
                self.update_backlog().await;
                return Err(RelayError::Bus(error.to_string()));
            }
            let event_ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
            self.store.ack_outbox(0, &event_ids).await.map_err(|error| RelayError::Store(error.to_string()))?;
            tracing::debug!(events = events.len(), "outbox events published");
            self.update_backlog().await;
            if self.shared.stopping() {
                return Ok(());
            }
        }
    }

    async fn update_backlog(&self) {
        if let Ok(backlog) = self.store.outbox_len().await {
            metrics().outbox_backlog.set(i64::try_from(backlog).unwrap_or(i64::MAX));
        }
    }
}
