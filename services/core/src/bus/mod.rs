//! The Bus: events for analytics and the other roles, one topic per concern, behind one trait.
//!
//! `file:///var/lib/omadm/events` (or a plain path) appends one JSON line per
//! event to a file per topic ([`JsonlBus`]); `kafka://host:9092[,host:9092...]`
//! produces to Kafka ([`KafkaBus`]: idempotent, acks=all, keyed by
//! [`Event::key`], docs/kafka.md). Every event carries an id that is stable
//! across retries, so consumers drop repeats of at-least-once delivery.
//!
//! Roles that consume (campaigns, notifier, tests) [`Bus::subscribe`] as a
//! consumer group and [`Subscription::commit`] after processing: what was not
//! committed is delivered again to the group's next subscription. Both engines
//! pass one conformance suite (`bus::conformance`, feature `conformance`).

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod jsonl;
mod kafka;
pub mod relay;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

pub use jsonl::{JsonlBus, JsonlRetention};
pub use kafka::KafkaBus;

/// The current version of every event schema (docs/events.md).
pub const SCHEMA_VERSION: u32 = 1;

/// The topics of the house plan, without the configurable prefix (`omadm.` by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    Campaigns,
    Notifications,
    Alerts,
    Results,
    Sessions,
}

impl Topic {
    pub const ALL: [Topic; 5] =
        [Topic::Campaigns, Topic::Notifications, Topic::Alerts, Topic::Results, Topic::Sessions];

    /// The name after the prefix: `alerts` for `omadm.alerts`.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Campaigns => "campaigns",
            Topic::Notifications => "notifications",
            Topic::Alerts => "alerts",
            Topic::Results => "results",
            Topic::Sessions => "sessions",
        }
    }
}

/// One event, as written to a JSONL line or a Kafka record value.
///
/// ```text
/// {"id":"result:IMEI:1:7","type":"command.result","schema_version":1,"timestamp":1700000000000,
///  "topic":"results","key":"IMEI:1","payload":{...}}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across retries: a consumer that saw this id may drop the event.
    pub id: String,
    /// e.g. `command.result`, `alert.received`, `session.started`, `session.ended`, `notification.requested`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    /// Milliseconds since the UNIX epoch when the event happened.
    pub timestamp: Millis,
    pub topic: Topic,
    /// The partitioning key: the device id (campaign id on `campaigns`).
    pub key: String,
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus I/O failed: {0}")]
    Io(String),
    #[error("bus is unavailable: {0}")]
    Unavailable(String),
    #[error("unsupported bus URL {0:?}")]
    UnsupportedUrl(String),
    /// A record on the bus is not an event of ours (it is skipped and committed past).
    #[error("undecodable record on {topic}: {reason}")]
    Corrupt { topic: String, reason: String },
}

/// One event handed to a consumer, with where it sits on its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub event: Event,
    /// The partition within the topic (0 for engines without partitions).
    pub partition: i32,
    /// Position within the partition; committing a delivery commits everything before it too.
    pub offset: i64,
}

/// A consumer group's view of some topics. Deliveries of one partition come in order.
#[async_trait]
pub trait Subscription: Send {
    /// The next deliveries, at most `max`; waits up to `wait` for the first one and
    /// returns an empty batch when none came.
    async fn next_batch(&mut self, max: usize, wait: std::time::Duration) -> Result<Vec<Delivery>, BusError>;
    /// Marks `deliveries` (and everything before each of them in its partition) as processed by the group.
    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), BusError>;
}

/// Where events go. `publish` returns once every event is durable on the bus
/// (written and flushed, or acknowledged by the broker).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, events: &[Event]) -> Result<(), BusError>;
    /// Joins consumer group `group` on `topics`. A new group starts at the oldest
    /// retained event; a known group resumes after its last commit.
    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn Subscription>, BusError>;
}

/// How a bus is opened, beyond its URL. The JSONL engine reads only the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusOptions {
    /// Put before every topic name: `omadm.` makes `omadm.results`.
    pub topic_prefix: String,
    /// Partitions of each topic the Kafka engine creates (existing topics are left as they are).
    pub partitions: i32,
    /// Replicas of each partition the Kafka engine creates: 3 on a production cluster.
    pub replication_factor: i32,
    /// The Kafka `client.id`, shown in broker logs and quotas: e.g. the node id.
    pub client_id: String,
    /// librdkafka settings applied after ours, e.g. `security.protocol=SASL_SSL`.
    pub kafka_settings: Vec<(String, String)>,
    /// When the JSONL engine rotates a topic's file and how many segments it keeps.
    pub jsonl_retention: JsonlRetention,
}

impl Default for BusOptions {
    fn default() -> Self {
        BusOptions {
            topic_prefix: "omadm.".to_owned(),
            partitions: 6,
            replication_factor: 1,
            client_id: "omadm".to_owned(),
            kafka_settings: Vec::new(),
            jsonl_retention: JsonlRetention::default(),
        }
    }
}

/// Opens the bus named by `url`: `file:///path` or a bare path for JSONL files.
pub async fn open(url: &str, topic_prefix: &str) -> Result<std::sync::Arc<dyn Bus>, BusError> {
    open_with(url, &BusOptions { topic_prefix: topic_prefix.to_owned(), ..BusOptions::default() }).await
}

/// Opens the bus named by `url`: `file:///path` or a bare path for JSONL files,
/// `kafka://host:port[,host:port...]` for Kafka.
pub async fn open_with(url: &str, options: &BusOptions) -> Result<std::sync::Arc<dyn Bus>, BusError> {
    if let Some(brokers) = url.strip_prefix("kafka://") {
        return Ok(std::sync::Arc::new(KafkaBus::connect(brokers, options).await?));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.contains("://") {
        return Err(BusError::UnsupportedUrl(url.to_owned()));
    }
    let directory = std::path::Path::new(path);
    Ok(std::sync::Arc::new(
        JsonlBus::open_with_retention(directory, &options.topic_prefix, options.jsonl_retention).await?,
    ))
}

/// Reads one record (a JSONL line or a Kafka value) found on `topic` back into an event.
///
/// A record that is not an event, or an event of another topic, is
/// [`BusError::Corrupt`]: consumers skip it rather than stop on it.
fn decode_record(topic: Topic, bytes: &[u8]) -> Result<Event, BusError> {
    let corrupt = |reason: String| BusError::Corrupt { topic: topic.name().to_owned(), reason };
    let event: Event = serde_json::from_slice(bytes).map_err(|error| corrupt(error.to_string()))?;
    if event.topic != topic {
        return Err(corrupt(format!("event {} names topic {}", event.id, event.topic.name())));
    }
    Ok(event)
}

/// Records how long one `publish` call of `engine` took.
fn observe_publish(engine: &'static str, started: std::time::Instant) {
    let seconds = started.elapsed().as_secs_f64();
    crate::metrics::metrics().bus_publish_duration.with_label_values(&[engine]).observe(seconds);
}

impl Topic {
    /// The topic whose full name is `full_name` under `prefix` (`omadm.results` -> Results).
    fn from_full_name(prefix: &str, full_name: &str) -> Option<Topic> {
        let name = full_name.strip_prefix(prefix)?;
        Topic::ALL.into_iter().find(|topic| topic.name() == name)
    }
}
