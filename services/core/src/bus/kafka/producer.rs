//! The idempotent producer of the Kafka bus: a whole batch in flight at once, failures sent again with a capped backoff.
//!
//! `publish` queues every record of the batch with librdkafka before awaiting
//! any acknowledgement, so one batch costs a few broker round trips (librdkafka
//! packs queued records into produce requests), not one per event. It returns
//! once the broker acknowledged every record (acks=all). librdkafka already
//! retries what the broker refuses for a while (`message.timeout.ms`); records
//! that still fail are sent again, up to [`ATTEMPTS`] times, unless the broker
//! rejected them for good (too large, not authorised), which no retry mends.
//!
//! With idempotence the broker drops the duplicates librdkafka's own retries
//! would make and keeps each partition in send order. A record sent again by
//! this module after a failure may duplicate one the broker did store: the
//! event id lets consumers drop it (at-least-once).

use std::collections::VecDeque;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::{KafkaContext, KafkaSettings};
use crate::bus::{BusError, Event};
use crate::metrics::metrics;

/// Sends of one record per `publish` call, the first included.
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt, doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The producer settings, before the operator's. docs/kafka.md gives the reasons and the measurements.
const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    // The broker drops the duplicates of librdkafka's retries and keeps each partition in send order.
    ("enable.idempotence", "true"),
    // Acknowledged means written to every in-sync replica: the outbox may then forget the event.
    ("acks", "all"),
    ("max.in.flight.requests.per.connection", "5"),
    // The Java client's partitioner: a device lands on the same partition whichever client produced its events.
    ("partitioner", "murmur2_random"),
    // How long librdkafka tries one record before failing it to us; bounds one attempt of `publish`.
    ("message.timeout.ms", "20000"),
    // `publish` hands librdkafka whole batches at once: waiting for more records would only add latency.
    ("linger.ms", "0"),
];

/// The producer of a [`super::KafkaBus`].
pub(super) struct Producer {
    settings: Arc<KafkaSettings>,
    /// Replaced after a fatal error (an idempotence invariant broken), after which librdkafka refuses to produce.
    current: RwLock<Arc<FutureProducer<KafkaContext>>>,
}

/// One event, encoded once and sent as often as needed.
struct Record {
    topic: String,
    /// The topic's short name, a bounded metric label.
    topic_label: &'static str,
    key: String,
    value: Vec<u8>,
    id: String,
    event_type: String,
    schema_version: String,
    timestamp: Option<i64>,
}

impl Record {
    fn encode(settings: &KafkaSettings, event: &Event) -> Result<Record, BusError> {
        let value = serde_json::to_vec(event)
            .map_err(|error| BusError::Io(format!("cannot encode event {}: {error}", event.id)))?;
        Ok(Record {
            topic: settings.topic_name(event.topic),
            topic_label: event.topic.name(),
            key: event.key.clone(),
            value,
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            schema_version: event.schema_version.to_string(),
            timestamp: i64::try_from(event.timestamp).ok(),
        })
    }

    fn to_send(&self) -> FutureRecord<'_, str, [u8]> {
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header { key: "id", value: Some(self.id.as_str()) })
            .insert(Header { key: "type", value: Some(self.event_type.as_str()) })
            .insert(Header { key: "schema_version", value: Some(self.schema_version.as_str()) });
        let record =
            FutureRecord::to(&self.topic).key(self.key.as_str()).payload(self.value.as_slice()).headers(headers);
        match self.timestamp {
            Some(timestamp) => record.timestamp(timestamp),
            None => record,
        }
    }
}

/// Why a record was not acknowledged, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureClass {
    TimedOut,
    QueueFull,
    /// The broker or the connection failed; sending again may succeed.
    Broker,
    /// The broker refused the record itself: sending it again cannot succeed.
    Rejected,
    /// The producer cannot go on (idempotence state lost); a new one is made.
    Fatal,
}

impl FailureClass {
    fn of(error: &KafkaError) -> FailureClass {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => FailureClass::TimedOut,
            Some(RDKafkaErrorCode::QueueFull) => FailureClass::QueueFull,
            Some(RDKafkaErrorCode::Fatal) => FailureClass::Fatal,
            Some(
                RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidTopic
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidRequiredAcks
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed,
            ) => FailureClass::Rejected,
            _ => FailureClass::Broker,
        }
    }

    fn label(self) -> &'static str {
        match self {
            FailureClass::TimedOut => "timed_out",
            FailureClass::QueueFull => "queue_full",
            FailureClass::Broker => "broker",
            FailureClass::Rejected => "rejected",
            FailureClass::Fatal => "fatal",
        }
    }
}

/// A record of the batch that was not acknowledged.
struct Failure {
    index: usize,
    class: FailureClass,
    error: KafkaError,
}

impl Producer {
    pub(super) fn new(settings: Arc<KafkaSettings>) -> Result<Self, BusError> {
        let producer = create(&settings)?;
        Ok(Producer { settings, current: RwLock::new(Arc::new(producer)) })
    }

    fn current(&self) -> Arc<FutureProducer<KafkaContext>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Swaps in a new producer (a new producer id), unless another publish already replaced `failed`.
    fn replace(&self, failed: Arc<FutureProducer<KafkaContext>>) {
        let replaced = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            if !Arc::ptr_eq(&current, &failed) {
                return;
            }
            match create(&self.settings) {
                Ok(producer) => std::mem::replace(&mut *current, Arc::new(producer)),
                Err(error) => {
                    tracing::error!(%error, "cannot replace the failed Kafka producer");
                    return;
                }
            }
        };
        tracing::info!("the Kafka producer was replaced by a new one");
        // Destroying a producer joins its threads: off the async workers.
        tokio::task::spawn_blocking(move || drop((replaced, failed)));
    }

    /// Sends every event and returns once all are acknowledged, or with the first failure that outlived the retries.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub(super) async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        let records =
            events.iter().map(|event| Record::encode(&self.settings, event)).collect::<Result<Vec<_>, _>>()?;
        let mut pending: Vec<usize> = (0..records.len()).collect();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let producer = self.current();
            let failures = send_all(&producer, &records, &pending).await;
            count_acknowledged(&records, &pending, &failures);
            let Some(first) = failures.first() else { return Ok(()) };
            for failure in &failures {
                let topic = records.get(failure.index).map_or("unknown", |record| record.topic_label);
                metrics().bus_delivery_failures.with_label_values(&[topic, failure.class.label()]).inc();
            }
            let rejected = failures.iter().find(|failure| failure.class == FailureClass::Rejected);
            let given_up = rejected.or((attempt == ATTEMPTS).then_some(first));
            if given_up.is_some_and(|failure| failure.class != FailureClass::Rejected)
                || failures.iter().any(|failure| failure.class == FailureClass::Fatal)
            {
                // A producer that cannot deliver for this long may hold a producer id the broker lost
                // (a broker restarted without its state): the next attempt starts with a new one.
                self.replace(producer);
            }
            if let Some(rejected) = given_up {
                count_outcome(&records, &failures, "failed");
                let (event_id, topic) =
                    records.get(rejected.index).map_or(("?", "?"), |record| (record.id.as_str(), record.topic_label));
                for failure in &failures {
                    let topic = records.get(failure.index).map_or("unknown", |record| record.topic_label);
                    metrics().bus_errors.with_label_values(&[topic]).inc();
                }
                tracing::warn!(error = %rejected.error, event_id, topic, failed = failures.len(), attempt, "publishing to Kafka failed");
                let message = format!("event {event_id} on {topic} not acknowledged: {}", rejected.error);
                return Err(match rejected.class {
                    FailureClass::Rejected => BusError::Io(message),
                    _ => BusError::Unavailable(message),
                });
            }
            count_outcome(&records, &failures, "retried");
            tracing::info!(error = %first.error, failed = failures.len(), attempt, "Kafka records not acknowledged; sending them again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            pending = failures.iter().map(|failure| failure.index).collect();
        }
        Ok(())
    }
}

fn create(settings: &KafkaSettings) -> Result<FutureProducer<KafkaContext>, BusError> {
    settings
        .client_config(PRODUCER_SETTINGS)
        .create_with_context(KafkaContext)
        .map_err(|error| BusError::Unavailable(format!("cannot create the Kafka producer: {error}")))
}

/// Queues every pending record, then awaits every acknowledgement; returns the failures in batch order.
async fn send_all(producer: &FutureProducer<KafkaContext>, records: &[Record], pending: &[usize]) -> Vec<Failure> {
    let mut in_flight: VecDeque<(usize, DeliveryFuture)> = VecDeque::with_capacity(pending.len());
    let mut failures = Vec::new();
    for (index, record) in pending.iter().filter_map(|index| Some((*index, records.get(*index)?))) {
        loop {
            match producer.send_result(record.to_send()) {
                Ok(delivery) => {
                    in_flight.push_back((index, delivery));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // librdkafka's queue is full (other publishers too): let the oldest send finish first.
                    match in_flight.pop_front() {
                        Some((oldest, delivery)) => failures.extend(settle(oldest, delivery.await)),
                        None => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                Err((error, _)) => {
                    failures.push(Failure { index, class: FailureClass::of(&error), error });
                    break;
                }
            }
        }
    }
    for (index, delivery) in in_flight {
        failures.extend(settle(index, delivery.await));
    }
    failures.sort_by_key(|failure| failure.index);
    failures
}

/// A delivery's outcome; `Err(_)` when librdkafka dropped the record without an answer.
fn settle<Canceled>(index: usize, delivered: Result<OwnedDeliveryResult, Canceled>) -> Option<Failure> {
    match delivered {
        Ok(Ok(_)) => None,
        Ok(Err((error, _))) => Some(Failure { index, class: FailureClass::of(&error), error }),
        Err(_) => Some(Failure { index, class: FailureClass::Broker, error: KafkaError::Canceled }),
    }
}

fn count_acknowledged(records: &[Record], pending: &[usize], failures: &[Failure]) {
    let mut failed = failures.iter().map(|failure| failure.index).peekable();
    for index in pending {
        if failed.peek() == Some(index) {
            failed.next();
            continue;
        }
        if let Some(record) = records.get(*index) {
            metrics().bus_records_sent.with_label_values(&[record.topic_label, "acknowledged"]).inc();
            metrics().events_published.with_label_values(&[record.topic_label]).inc();
        }
    }
}

fn count_outcome(records: &[Record], failures: &[Failure], outcome: &str) {
    for failure in failures {
        if let Some(record) = records.get(failure.index) {
            metrics().bus_records_sent.with_label_values(&[record.topic_label, outcome]).inc();
        }
    }
}
