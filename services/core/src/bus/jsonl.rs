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
//! file heals without a restart.
//!
//! Files do not grow without bound: once the active file of a topic reaches
//! [`JsonlRetention::segment_bytes`] it is renamed to a rotated segment named
//! by its first line ([`segment`]) and a new one is started; only the newest
//! [`JsonlRetention::retained_segments`] rotated segments are kept. Line
//! numbers (the deliveries' offsets) go on across segments.
//!
//! Consumer groups read the same files and keep their commits beside them
//! ([`subscription`]).

mod segment;
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
use segment::SegmentFiles;
use subscription::JsonlSubscription;

/// When the JSONL engine rotates a topic's file, and how much of its history it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonlRetention {
    /// The active file of a topic is rotated once an append takes it to this size.
    pub segment_bytes: u64,
    /// Rotated segments kept per topic, the newest; older ones are deleted. A consumer group that had
    /// not read a deleted segment goes on at the oldest one kept (counted, as Kafka's retention does).
    pub retained_segments: usize,
}

impl Default for JsonlRetention {
    /// 64 MiB segments, 8 kept: at most about 576 MiB per topic.
    fn default() -> Self {
        JsonlRetention { segment_bytes: 64 * 1024 * 1024, retained_segments: 8 }
    }
}

/// The JSONL engine of [`Bus`].
pub struct JsonlBus {
    directory: PathBuf,
    topics: Arc<HashMap<Topic, TopicFile>>,
    /// Wakes this process's subscriptions after each publish.
    appended: Arc<Notify>,
}

/// One topic's files, guarded so that one publisher writes (and rotates) at a time.
struct TopicFile {
    topic: Topic,
    segments: SegmentFiles,
    /// The active segment, `segments.active()`.
    path: PathBuf,
    retention: JsonlRetention,
    /// `None` after a failed write: reopened (appending) by the next publish.
    open: Mutex<Option<ActiveSegment>>,
}

/// The open active segment of a topic.
struct ActiveSegment {
    file: File,
    /// The topic-wide number of its first line: the name it gets when rotated.
    first_line: i64,
}

impl JsonlBus {
    /// Creates `directory` and the file of every topic in it (existing files are appended to),
    /// with the default [`JsonlRetention`].
    pub async fn open(directory: &Path, topic_prefix: &str) -> Result<Self, BusError> {
        Self::open_with_retention(directory, topic_prefix, JsonlRetention::default()).await
    }

    /// [`JsonlBus::open`] with the rotation and retention given.
    pub async fn open_with_retention(
        directory: &Path,
        topic_prefix: &str,
        retention: JsonlRetention,
    ) -> Result<Self, BusError> {
        if retention.segment_bytes == 0 {
            return Err(BusError::Io("the JSONL segment size must be at least one byte".to_owned()));
        }
        let directory = directory.to_owned();
        let topic_prefix = topic_prefix.to_owned();
        let opened =
            tokio::task::spawn_blocking(move || Self::open_blocking(directory, &topic_prefix, retention)).await;
        opened
            .unwrap_or_else(|join_error| Err(BusError::Unavailable(format!("bus task did not complete: {join_error}"))))
    }

    fn open_blocking(directory: PathBuf, topic_prefix: &str, retention: JsonlRetention) -> Result<Self, BusError> {
        std::fs::create_dir_all(&directory)
            .map_err(|error| BusError::Io(format!("cannot create {}: {error}", directory.display())))?;
        let mut topics = HashMap::new();
        for topic in Topic::ALL {
            let segments = SegmentFiles::new(&directory, format!("{topic_prefix}{}", topic.name()));
            let path = segments.active();
            let topic_file = TopicFile { topic, segments, path, retention, open: Mutex::new(None) };
            let active = topic_file.open_active()?;
            *topic_file.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(active);
            topics.insert(topic, topic_file);
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
    /// Opens the active segment for appending; where it starts follows from the rotated segments.
    fn open_active(&self) -> Result<ActiveSegment, BusError> {
        let file = open_for_append(&self.path)?;
        let start = self
            .segments
            .active_first_line()
            .map_err(|error| BusError::Io(format!("cannot list the segments of {}: {error}", self.path.display())))?;
        Ok(ActiveSegment { file, first_line: start.first_line })
    }

    /// Appends whole lines and fsyncs them; on failure the file keeps only whole lines.
    /// Rotates the active segment once it has reached the segment size.
    fn append(&self, lines: &[u8]) -> Result<(), BusError> {
        // A publisher that panicked mid-write left `None` or whole lines behind: the data is still sound.
        let mut guard = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let active = match guard.as_mut() {
            Some(active) => active,
            None => guard.insert(self.open_active()?),
        };
        let file = &mut active.file;
        // Read per append, not remembered: the file may have been truncated (copytruncate) meanwhile.
        let length_before = file.metadata().map(|metadata| metadata.len());
        let written = file.write_all(lines).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Cut a partial line off so the next event starts on a line of its own; best effort.
            if let Ok(length_before) = length_before {
                let _ = file.set_len(length_before);
            }
            *guard = None;
            return Err(BusError::Io(format!("cannot append to {}: {error}", self.path.display())));
        }
        let length_after = length_before.map(|length| length + lines.len() as u64).unwrap_or(0);
        if length_after >= self.retention.segment_bytes {
            // The lines are durable already: a rotation that fails is retried by the next append.
            let first_line = active.first_line;
            match self.rotate(first_line) {
                Ok(next) => *guard = Some(next),
                Err(RotationError::NotRotated(error)) => {
                    metrics().bus_errors.with_label_values(&[self.topic.name()]).inc();
                    tracing::warn!(path = %self.path.display(), %error, "cannot rotate the topic file; retried at the next append");
                }
                Err(RotationError::NoActiveFile(error)) => {
                    metrics().bus_errors.with_label_values(&[self.topic.name()]).inc();
                    tracing::warn!(path = %self.path.display(), %error, "rotated, but cannot open the next file; reopened at the next append");
                    *guard = None;
                }
            }
        }
        Ok(())
    }

    /// Renames the active segment (first line `first_line`) to its rotated name, starts the next one and
    /// deletes the rotated segments past retention.
    fn rotate(&self, first_line: i64) -> Result<ActiveSegment, RotationError> {
        let rotated = self.segments.rotated(first_line);
        if rotated.exists() {
            // Never replace a segment: its lines would be lost. Only a hand-made file can be there.
            return Err(RotationError::NotRotated(format!("{} exists already", rotated.display())));
        }
        let lines = segment::count_lines(&self.path).map_err(|error| RotationError::NotRotated(error.to_string()))?;
        std::fs::rename(&self.path, &rotated).map_err(|error| RotationError::NotRotated(error.to_string()))?;
        let directory = self.path.parent().unwrap_or(Path::new("."));
        if let Err(error) = segment::sync_directory(directory) {
            tracing::warn!(%error, "cannot sync the events directory after a rotation");
        }
        metrics().bus_segments_rotated.with_label_values(&[self.topic.name()]).inc();
        tracing::info!(segment = %rotated.display(), lines, "rotated a topic file");
        let file = open_for_append(&self.path).map_err(|error| RotationError::NoActiveFile(error.to_string()))?;
        self.delete_past_retention(directory);
        Ok(ActiveSegment { file, first_line: first_line + lines })
    }

    /// Deletes the oldest rotated segments beyond `retained_segments`; failures are logged and retried next time.
    fn delete_past_retention(&self, directory: &Path) {
        let first_lines = match self.segments.rotated_first_lines() {
            Ok(first_lines) => first_lines,
            Err(error) => {
                tracing::warn!(%error, "cannot list rotated segments for retention");
                return;
            }
        };
        let excess = first_lines.len().saturating_sub(self.retention.retained_segments);
        for first_line in first_lines.into_iter().take(excess) {
            let path = self.segments.rotated(first_line);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    metrics().bus_segments_deleted.with_label_values(&[self.topic.name()]).inc();
                    tracing::info!(segment = %path.display(), "deleted a segment past retention");
                }
                Err(error) => {
                    tracing::warn!(segment = %path.display(), %error, "cannot delete a segment past retention")
                }
            }
        }
        if excess > 0
            && let Err(error) = segment::sync_directory(directory)
        {
            tracing::warn!(%error, "cannot sync the events directory after retention");
        }
    }
}

/// Why a rotation did not complete.
#[derive(Debug)]
enum RotationError {
    /// Nothing changed: the active segment is still the one appended to.
    NotRotated(String),
    /// The active segment was rotated, but the next one could not be opened.
    NoActiveFile(String),
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
        let mut topic_segments: Vec<(Topic, SegmentFiles)> = Vec::with_capacity(topics.len());
        for topic in topics {
            let topic_file = self
                .topics
                .get(topic)
                .ok_or_else(|| BusError::Unavailable(format!("no file for topic {}", topic.name())))?;
            if !topic_segments.iter().any(|(known, _)| known == topic) {
                topic_segments.push((*topic, topic_file.segments.clone()));
            }
        }
        let subscription =
            JsonlSubscription::join(&self.directory, group, topic_segments, Arc::clone(&self.appended)).await?;
        Ok(Box::new(subscription))
    }
}
