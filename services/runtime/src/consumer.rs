//! The consumer loop of a role: joins a consumer group on some topics, hands each batch to the role's handler,
//! and commits the batch only after the handler succeeded.
//!
//! ```text
//! next_batch(100, 500 ms) -> [d1 d2 d3] -> handler.handle([d1 d2 d3]) -> Ok  -> commit([d1 d2 d3])
//!                                                                      -> Err -> wait, handle the same batch again
//! ```
//!
//! A batch whose handler keeps failing is retried (with a pause between tries) until it succeeds or the loop is
//! stopped; stopped, it stays uncommitted, so the group's next member gets it again: handlers must tolerate
//! seeing an event twice (events carry stable ids for that, docs/events.md). Bus errors (broker down) pause the
//! loop the same way; a commit that fails is tried again before the next batch is fetched.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omadm_core::bus::{Bus, BusError, Delivery, Subscription, Topic};
use tokio::sync::watch;

/// What a role does with its events.
#[async_trait]
pub trait BatchHandler: Send + 'static {
    /// Handles `deliveries` (in partition order); the loop commits them only when this returns `Ok`.
    async fn handle(&mut self, deliveries: &[Delivery]) -> Result<(), HandlerError>;
}

/// A handler's failure: the batch stays uncommitted and is handed over again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

/// How the loop polls and waits.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// Deliveries per batch, at most.
    pub batch_size: usize,
    /// How long one poll waits for a first delivery; also how long a stop may take to be noticed.
    pub poll_wait: Duration,
    /// Pause after a failed handler, bus read or commit, before trying again.
    pub retry_pause: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions { batch_size: 100, poll_wait: Duration::from_millis(500), retry_pause: Duration::from_secs(1) }
    }
}

/// A running consumer loop; [`ConsumerLoop::stop`] ends it after the batch in hand.
pub struct ConsumerLoop {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ConsumerLoop {
    /// Joins `group` on `topics` (an error here means the role cannot start), then consumes in a task of its own.
    pub async fn start(
        bus: &Arc<dyn Bus>,
        group: &str,
        topics: &[Topic],
        handler: impl BatchHandler,
        options: ConsumerOptions,
    ) -> Result<ConsumerLoop, BusError> {
        let subscription = bus.subscribe(group, topics).await?;
        let (stop, stopped) = watch::channel(false);
        let group = group.to_owned();
        let task = tokio::spawn(async move {
            consume(subscription, handler, options, stopped).await;
            tracing::info!(group = %group, "consumer stopped");
        });
        Ok(ConsumerLoop { stop, task })
    }

    /// Stops the loop: the batch in hand is finished (and committed if its handler succeeds), no new one is read.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the consumer task failed");
        }
    }
}

async fn consume(
    mut subscription: Box<dyn Subscription>,
    mut handler: impl BatchHandler,
    options: ConsumerOptions,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        let batch = match subscription.next_batch(options.batch_size, options.poll_wait).await {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(%error, "cannot read from the bus; trying again");
                pause(&mut stopped, options.retry_pause).await;
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        loop {
            match handler.handle(&batch).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, deliveries = batch.len(), "handler failed; the batch is handled again");
                    if pause(&mut stopped, options.retry_pause).await == Pause::Stopped {
                        return;
                    }
                }
            }
        }
        // Handled: the commit is retried even while stopping, so a handled batch is not handed out again.
        let mut attempts = 0;
        while let Err(error) = subscription.commit(&batch).await {
            attempts += 1;
            tracing::warn!(%error, attempts, "cannot commit a handled batch; trying again");
            if attempts >= 3 && *stopped.borrow() {
                return;
            }
            tokio::time::sleep(options.retry_pause).await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Pause {
    Elapsed,
    Stopped,
}

/// Waits `duration`, or less if the loop is stopped meanwhile.
async fn pause(stopped: &mut watch::Receiver<bool>, duration: Duration) -> Pause {
    if *stopped.borrow() {
        return Pause::Stopped;
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => Pause::Elapsed,
        _ = stopped.changed() => Pause::Stopped,
    }
}
