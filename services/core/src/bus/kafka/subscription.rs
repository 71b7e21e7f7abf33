//! A consumer group on Kafka: a `StreamConsumer` that commits what the consumer committed, and nothing else.
//!
//! Offsets are never committed automatically: [`Subscription::commit`] commits,
//! per partition, the position after the highest delivery it is given, so a
//! consumer that dies before committing gets the same events again (as does the
//! member that takes over its partitions). A group that has never committed
//! starts at the oldest retained record.
//!
//! A record that is not an event of its topic is counted
//! (`omadm_bus_corrupt_records_total`), logged and skipped. It is committed
//! past as soon as that commits nothing the consumer has not processed: at
//! once when no delivery before it awaits a commit, otherwise together with the
//! delivery just before it. A bad record therefore never stops a group, and
//! never makes it skip an event.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{KafkaContext, KafkaSettings};
use crate::bus::{BusError, Delivery, Subscription, Topic, decode_record};
use crate::metrics::metrics;

/// The consumer settings, before the operator's. docs/kafka.md gives the reasons.
const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    // A member that vanished without leaving (killed) gives its partitions up after this long.
    ("session.timeout.ms", "10000"),
    // The longest a fetch waits on the broker for new records: bounds how late `next_batch` sees them.
    ("fetch.wait.max.ms", "100"),
];

/// The pause after a failed fetch before fetching again within the same `next_batch`.
const FETCH_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One member of a consumer group.
pub(super) struct KafkaSubscription {
    /// `None` only while being dropped.
    consumer: Option<Arc<StreamConsumer<KafkaContext>>>,
    settings: Arc<KafkaSettings>,
    group: String,
    cursors: HashMap<(Topic, i32), Cursor>,
}

/// What this member knows of one partition, to commit past corrupt records safely.
#[derive(Debug, Default)]
struct Cursor {
    /// The offset of the last record read (event or corrupt).
    last_seen: Option<i64>,
    /// The highest offset this member committed past.
    committed_through: Option<i64>,
    /// Corrupt records by the offset of the record read just before each: committing that one commits past them.
    skips: BTreeMap<i64, i64>,
}

impl Cursor {
    /// Whether every record read so far is committed, so a corrupt one read now can be committed past at once.
    fn nothing_outstanding(&self) -> bool {
        self.last_seen.is_none() || self.committed_through == self.last_seen
    }
}

impl KafkaSubscription {
    pub(super) fn join(settings: Arc<KafkaSettings>, group: &str, topics: &[Topic]) -> Result<Self, BusError> {
        if group.is_empty() {
            return Err(BusError::Io("a consumer group needs a name".to_owned()));
        }
        let mut own_settings = CONSUMER_SETTINGS.to_vec();
        own_settings.push(("group.id", group));
        let consumer: StreamConsumer<KafkaContext> = settings
            .client_config(&own_settings)
            .create_with_context(KafkaContext)
            .map_err(|error| BusError::Unavailable(format!("cannot create the Kafka consumer: {error}")))?;
        let names: Vec<String> = topics.iter().map(|topic| settings.topic_name(*topic)).collect();
        if !names.is_empty() {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .map_err(|error| BusError::Unavailable(format!("cannot subscribe to {names:?}: {error}")))?;
        }
        tracing::debug!(group, topics = ?names, "joined a Kafka consumer group");
        Ok(KafkaSubscription {
            consumer: Some(Arc::new(consumer)),
            settings,
            group: group.to_owned(),
            cursors: HashMap::new(),
        })
    }

    fn consumer(&self) -> Result<Arc<StreamConsumer<KafkaContext>>, BusError> {
        self.consumer.clone().ok_or_else(|| BusError::Unavailable("the subscription is closed".to_owned()))
    }

    /// Commits, per partition, the position after `through`; remembered once the broker accepted it.
    async fn commit_through(&mut self, positions: Vec<(Topic, i32, i64)>) -> Result<(), BusError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::with_capacity(positions.len());
        for (topic, partition, through) in &positions {
            list.add_partition_offset(&self.settings.topic_name(*topic), *partition, Offset::Offset(through + 1))
                .map_err(|error| BusError::Unavailable(format!("cannot commit offset {through}: {error}")))?;
        }
        let consumer = self.consumer()?;
        // A synchronous commit waits for the broker's answer: off the async workers.
        let committed = tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync)).await;
        let failure = match committed {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(join_error) => Some(format!("commit task did not complete: {join_error}")),
        };
        if let Some(failure) = failure {
            metrics().bus_consumer_errors.with_label_values(&["kafka", "commit"]).inc();
            tracing::warn!(group = %self.group, error = %failure, "committing Kafka offsets failed");
            return Err(BusError::Unavailable(format!("cannot commit offsets of group {}: {failure}", self.group)));
        }
        for (topic, partition, through) in positions {
            let cursor = self.cursors.entry((topic, partition)).or_default();
            cursor.committed_through = cursor.committed_through.max(Some(through));
        }
        Ok(())
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    #[tracing::instrument(skip_all, fields(group = %self.group))]
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let consumer = self.consumer()?;
        let deadline = tokio::time::Instant::now() + wait;
        let mut batch = Vec::new();
        let mut corrupt_to_commit = Vec::new();
        while batch.len() < max {
            // The first delivery is waited for; then only what librdkafka already holds joins the batch.
            let until = if batch.is_empty() { deadline } else { tokio::time::Instant::now() };
            let Ok(received) = tokio::time::timeout_at(until, consumer.recv()).await else { break };
            let message = match received {
                Ok(message) => message,
                Err(KafkaError::MessageConsumptionFatal(code)) => {
                    metrics().bus_consumer_errors.with_label_values(&["kafka", "fetch"]).inc();
                    return Err(BusError::Unavailable(format!("the Kafka consumer failed for good: {code}")));
                }
                Err(error) => {
                    // Mostly a broker away: librdkafka reconnects, the group waits as a Kafka consumer does.
                    metrics().bus_consumer_errors.with_label_values(&["kafka", "fetch"]).inc();
                    tracing::debug!(%error, "Kafka fetch failed");
                    if tokio::time::Instant::now() + FETCH_ERROR_PAUSE >= deadline {
                        break;
                    }
                    tokio::time::sleep(FETCH_ERROR_PAUSE).await;
                    continue;
                }
            };
            let Some(topic) = Topic::from_full_name(&self.settings.options.topic_prefix, message.topic()) else {
                continue;
            };
            let (partition, offset) = (message.partition(), message.offset());
            let cursor = self.cursors.entry((topic, partition)).or_default();
            if cursor.last_seen.is_some_and(|seen| offset <= seen) {
                // The partition was handed back to us after a rebalance and is read again from its commit.
                *cursor = Cursor::default();
            }
            match decode_record(topic, message.payload().unwrap_or_default()) {
                Ok(event) => {
                    metrics().bus_events_consumed.with_label_values(&[topic.name()]).inc();
                    batch.push(Delivery { event, partition, offset });
                }
                Err(error) => {
                    metrics().bus_corrupt_records.with_label_values(&[topic.name()]).inc();
                    tracing::warn!(topic = topic.name(), partition, offset, %error, "skipping a record that is not an event");
                    match cursor.last_seen {
                        Some(previous) if !cursor.nothing_outstanding() => {
                            cursor.skips.insert(previous, offset);
                        }
                        _ => corrupt_to_commit.push((topic, partition, offset)),
                    }
                }
            }
            cursor.last_seen = Some(offset);
        }
        // A failed commit is counted and logged there; the group's next reader then skips those records again.
        let _ = self.commit_through(corrupt_to_commit).await;
        Ok(batch)
    }

    #[tracing::instrument(skip_all, fields(group = %self.group, deliveries = deliveries.len()))]
    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut highest: HashMap<(Topic, i32), i64> = HashMap::new();
        for delivery in deliveries {
            let offset = highest.entry((delivery.event.topic, delivery.partition)).or_insert(delivery.offset);
            *offset = (*offset).max(delivery.offset);
        }
        let mut positions = Vec::with_capacity(highest.len());
        for ((topic, partition), offset) in highest {
            let cursor = self.cursors.entry((topic, partition)).or_default();
            let mut through = offset;
            while let Some(corrupt) = cursor.skips.remove(&through) {
                through = corrupt;
            }
            cursor.skips.retain(|previous, _| *previous > through);
            // Committing an older position would move the group back: what it already committed stays committed.
            if cursor.committed_through.is_none_or(|committed| committed < through) {
                positions.push((topic, partition, through));
            }
        }
        self.commit_through(positions).await
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        // Leaving the group waits for the broker's answer: off the async workers when there are some.
        if let Some(consumer) = self.consumer.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(consumer))),
                Err(_) => drop(consumer),
            }
        }
    }
}
