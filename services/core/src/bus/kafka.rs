//! The Kafka engine of the Bus: one topic per [`Topic`], records keyed by [`Event::key`], on `rdkafka`.
//!
//! `kafka://broker-1:9092,broker-2:9092` names the bootstrap brokers. A record
//! is one event:
//!
//! ```text
//! topic    omadm.results                      (prefix + topic name)
//! key      IMEI:493005100592800               (Event::key: one device's events share a partition)
//! value    {"id":"result:IMEI:...:7:1","type":"command.result","schema_version":1,...}   (the JSONL line)
//! headers  id=result:IMEI:...:7:1  type=command.result  schema_version=1
//! ```
//!
//! The topics are created when missing (admin client; partitions and
//! replication from [`BusOptions`]), at start and again before the first
//! publish or subscribe if the broker was unreachable then. The producer is
//! idempotent with acks=all ([`producer`]); subscriptions are consumer groups
//! that commit only what the consumer commits ([`subscription`]). docs/kafka.md
//! gives the settings and the reasons for them.

mod producer;
mod subscription;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Mutex;

use super::{Bus, BusError, BusOptions, Event, Subscription, Topic};
use producer::Producer;
use subscription::KafkaSubscription;

/// How long topic creation may take before the bus gives up for now (and tries again later).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The Kafka engine of [`Bus`].
pub struct KafkaBus {
    settings: Arc<KafkaSettings>,
    producer: Producer,
    /// Whether every topic is known to exist: checked again by the next publish or subscribe while false.
    topics_ready: AtomicBool,
    /// One topic creation at a time.
    creating_topics: Mutex<()>,
}

/// What every client of the bus is built from.
struct KafkaSettings {
    brokers: String,
    options: BusOptions,
}

impl KafkaSettings {
    /// The settings every client shares, with the operator's `kafka_settings` applied last.
    fn client_config(&self, own: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", &self.options.client_id);
        for (key, value) in own {
            config.set(*key, *value);
        }
        for (key, value) in &self.options.kafka_settings {
            config.set(key, value);
        }
        config.set_log_level(RDKafkaLogLevel::Warning);
        config
    }

    fn topic_name(&self, topic: Topic) -> String {
        format!("{}{}", self.options.topic_prefix, topic.name())
    }
}

impl KafkaBus {
    /// Connects to `brokers` (`host:port[,host:port...]`) and creates the topics that are missing.
    ///
    /// An unreachable broker is not an error here: the topics are created by
    /// the first publish or subscribe that reaches it.
    pub async fn connect(brokers: &str, options: &BusOptions) -> Result<Self, BusError> {
        let brokers = brokers.trim_end_matches('/');
        if brokers.is_empty() || brokers.split(',').any(|broker| !broker.contains(':')) {
            return Err(BusError::UnsupportedUrl(format!("kafka://{brokers}")));
        }
        let settings = Arc::new(KafkaSettings { brokers: brokers.to_owned(), options: options.clone() });
        let producer = Producer::new(settings.clone())?;
        let bus =
            KafkaBus { settings, producer, topics_ready: AtomicBool::new(false), creating_topics: Mutex::new(()) };
        if let Err(error) = bus.ensure_topics().await {
            tracing::warn!(%error, brokers, "topics not created at start; retried by the first publish or subscribe");
        }
        Ok(bus)
    }

    /// The full name of `topic` on the broker: `omadm.results`.
    pub fn topic_name(&self, topic: Topic) -> String {
        self.settings.topic_name(topic)
    }

    /// Creates the topics that do not exist yet, unless they are known to exist.
    async fn ensure_topics(&self) -> Result<(), BusError> {
        if self.topics_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let _creating = self.creating_topics.lock().await;
        if !self.topics_ready.load(Ordering::Acquire) {
            create_topics(&self.settings).await?;
            self.topics_ready.store(true, Ordering::Release);
        }
        Ok(())
    }
}

#[tracing::instrument(skip_all, fields(brokers = %settings.brokers))]
async fn create_topics(settings: &KafkaSettings) -> Result<(), BusError> {
    let admin: AdminClient<KafkaContext> = settings
        .client_config(&[])
        .create_with_context(KafkaContext)
        .map_err(|error| BusError::Unavailable(format!("cannot create the Kafka admin client: {error}")))?;
    let names: Vec<String> = Topic::ALL.into_iter().map(|topic| settings.topic_name(topic)).collect();
    let (partitions, replicas) = (settings.options.partitions, settings.options.replication_factor);
    let new_topics: Vec<NewTopic<'_>> =
        names.iter().map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replicas))).collect();
    let admin_options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &admin_options)
        .await
        .map_err(|error| BusError::Unavailable(format!("cannot create topics: {error}")))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(BusError::Unavailable(format!("cannot create topic {name}: {code}"))),
        }
    }
    // The admin client's threads are joined on drop: off the async workers.
    tokio::task::spawn_blocking(move || drop(admin));
    Ok(())
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let result = match self.ensure_topics().await {
            Ok(()) => self.producer.publish(events).await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            // A broker that lost its topics (or a new cluster behind the same address) gets them back.
            self.topics_ready.store(false, Ordering::Release);
        }
        super::observe_publish("kafka", started);
        result
    }

    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_topics().await?;
        Ok(Box::new(KafkaSubscription::join(self.settings.clone(), group, topics)?))
    }
}

/// Sends librdkafka's own log lines and errors to tracing.
#[derive(Clone, Copy)]
struct KafkaContext;

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}");
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Mostly a broker that went away: librdkafka reconnects by itself, and
        // what it could not deliver surfaces as delivery failures.
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
    }
}

impl ConsumerContext for KafkaContext {}
