//! The embedded bus: one JSON line per event, one append-only file per topic.
//!
//! `{directory}/{prefix}{topic}.jsonl`, e.g. `omadm.results.jsonl`, holds the
//! events of that topic in publish order, each line the [`Event`] serde form
//! that the Kafka engine writes as record values:
//!
//! ```text
//! {"id":"result:IMEI:1:7","type":"command.result","schema_version":1,"timestamp":1700000000000,"topic":"results","key":"IMEI:1","payload":{...}}
//! ```
//!
//! `publish` returns once the lines are written and fsync'd. One lock per
//! topic keeps concurrent publishers' lines whole; the file I/O runs on
//! tokio's blocking pool. A failed write is cut back to the last whole line
//! and the file is reopened at the next publish, so a full disk or a replaced
//! file heals without a restart. Files grow without bound: rotate them with
//! `copytruncate` (appends go on at the new end).
//!
//! Consumer groups read the same files and keep their commits beside them
//! ([`subscription`]).

mod subscription;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Bus, BusError, Event, Subscription, Topic};
use crate::metrics::metrics;
use subscription::JsonlSubscription;

/// The JSONL engine of [`Bus`].
pub struct JsonlBus {
    directory: PathBuf,
    topics: Arc<HashMap<Topic, TopicFile>>,
    /// Wakes this process's subscriptions after each publish.
    appended: Arc<Notify>,
}

/// One topic's file, guarded so that one publisher writes at a time.
struct TopicFile {
    path: PathBuf,
    /// `None` after a failed write: reopened (appending) by the next publish.
    open: Mutex<Option<File>>,
}

impl JsonlBus {
    /// Creates `directory` and the file of every topic in it (existing files are appended to).
    pub async fn open(directory: &Path, topic_prefix: &str) -> Result<Self, BusError> {
        let directory = directory.to_owned();
        let topic_prefix = topic_prefix.to_owned();
        let opened = tokio::task::spawn_blocking(move || Self::open_blocking(directory, &topic_prefix)).await;
        opened
            .unwrap_or_else(|join_error| Err(BusError::Unavailable(format!("bus task did not complete: {join_error}"))))
    }

    fn open_blocking(directory: PathBuf, topic_prefix: &str) -> Result<Self, BusError> {
        std::fs::create_dir_all(&directory)
            .map_err(|error| BusError::Io(format!("cannot create {}: {error}", directory.display())))?;
        let mut topics = HashMap::new();
        for topic in Topic::ALL {
            let path = directory.join(format!("{topic_prefix}{}.jsonl", topic.name()));
            let file = open_for_append(&path)?;
            topics.insert(topic, TopicFile { path, open: Mutex::new(Some(file)) });
        }
        Ok(JsonlBus { directory, topics: Arc::new(topics), appended: Arc::new(Notify::new()) })
    }

    /// The directory holding the topic files.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The file events of `topic` are appended to.
    pub fn topic_path(&self, topic: Topic) -> Option<&Path> {
        self.topics.get(&topic).map(|topic_file| topic_file.path.as_path())
    }
}

fn open_for_append(path: &Path) -> Result<File, BusError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|error| BusError::Io(format!("cannot open {}: {error}", path.display())))
}

impl TopicFile {
    /// Appends whole lines and fsyncs them; on failure the file keeps only whole lines.
    fn append(&self, lines: &[u8]) -> Result<(), BusError> {
        // A publisher that panicked mid-write left `None` or whole lines behind: the data is still sound.
        let mut guard = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = match guard.as_mut() {
            Some(file) => file,
            None => guard.insert(open_for_append(&self.path)?),
        };
        // Read per append, not remembered: the file may have been truncated (copytruncate rotation) meanwhile.
        let length_before = file.metadata().map(|metadata| metadata.len());
        let written = file.write_all(lines).and_then(|()| file.sync_data());
        match written {
            Ok(()) => Ok(()),
            Err(error) => {
                // Cut a partial line off so the next event starts on a line of its own; best effort.
                if let Ok(length_before) = length_before {
                    let _ = file.set_len(length_before);
                }
                *guard = None;
                Err(BusError::Io(format!("cannot append to {}: {error}", self.path.display())))
            }
        }
    }
}

#[async_trait]
impl Bus for JsonlBus {
    async fn publish(&self, events: &[Event]) -> Result<(), BusError> {
        if events.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // Encoded here (cheap, no I/O), grouped by topic in publish order.
        let mut lines_by_topic: HashMap<Topic, (Vec<u8>, u64)> = HashMap::new();
        for event in events {
            let (lines, count) = lines_by_topic.entry(event.topic).or_default();
            serde_json::to_writer(&mut *lines, event)
                .map_err(|error| BusError::Io(format!("cannot encode event {}: {error}", event.id)))?;
            lines.push(b'\n');
            *count += 1;
        }
        let topics = Arc::clone(&self.topics);
        let written = tokio::task::spawn_blocking(move || {
            for (topic, (lines, count)) in lines_by_topic {
                let result = match topics.get(&topic) {
                    Some(topic_file) => topic_file.append(&lines),
                    None => Err(BusError::Unavailable(format!("no file for topic {}", topic.name()))),
                };
                if let Err(error) = result {
                    metrics().bus_errors.with_label_values(&[topic.name()]).inc();
                    return Err(error);
                }
                metrics().events_published.with_label_values(&[topic.name()]).inc_by(count);
            }
            Ok(())
        })
        .await;
        let result = written.unwrap_or_else(|join_error| {
            Err(BusError::Unavailable(format!("bus task did not complete: {join_error}")))
        });
        match &result {
            Ok(()) => self.appended.notify_waiters(),
            Err(error) => tracing::warn!(%error, "publishing events failed"),
        }
        super::observe_publish("jsonl", started);
        result
    }

    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn Subscription>, BusError> {
        let mut topic_paths: Vec<(Topic, PathBuf)> = Vec::with_capacity(topics.len());
        for topic in topics {
            let path = self
                .topic_path(*topic)
                .ok_or_else(|| BusError::Unavailable(format!("no file for topic {}", topic.name())))?;
            if !topic_paths.iter().any(|(known, _)| known == topic) {
                topic_paths.push((*topic, path.to_owned()));
            }
        }
        let subscription =
            JsonlSubscription::join(&self.directory, group, topic_paths, Arc::clone(&self.appended)).await?;
        Ok(Box::new(subscription))
    }
}
