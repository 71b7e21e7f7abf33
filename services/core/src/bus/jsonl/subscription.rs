//! A consumer group on JSONL files: a read position per topic file, and the group's commits in files beside them.
//!
//! A delivery's offset is its line number in the topic (from 0, counted across
//! the topic's segments; the partition is always 0). Committing line `n`
//! stores the position after it in
//! `{directory}/consumers/{group}/{prefix}{topic}.offset`, replaced atomically
//! (temporary file, fsync, rename):
//!
//! ```text
//! {"line":12,"byte":3456}                 the next line to deliver and the byte it starts at
//! {"line":130012,"byte":3456,"segment":130000}   ... in the segment whose first line is 130000
//!                                                (see `segment`; left out for the first segment)
//! ```
//!
//! A subscription reads whole lines after that position (a line still being
//! appended waits for its newline), goes on to the next segment at the end of
//! a rotated one, and waits for appends by polling the files (woken at once by
//! publishes of the same process). A line that is not an event of its topic is
//! counted and skipped, and committed past as soon as that commits nothing
//! undelivered or uncommitted, as on Kafka. A position in a segment that
//! retention deleted goes on at the oldest segment kept, and the lines never
//! read are counted. An active file cut shorter than the committed position
//! (a `copytruncate` by hand) is read again from its start. A group is meant to
//! have one member at a time here: two subscriptions of one group each read
//! everything after the commit.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::segment::{ActiveStart, SegmentFiles};
use crate::bus::{BusError, Delivery, Subscription, Topic, decode_record};
use crate::metrics::metrics;

/// How often a waiting subscription looks for lines appended by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One consumer of a group on the JSONL bus.
pub(in crate::bus) struct JsonlSubscription {
    group: String,
    readers: Arc<Mutex<Readers>>,
    /// Notified by every publish of this process.
    appended: Arc<Notify>,
}

struct Readers {
    topics: Vec<TopicReader>,
    /// The topic read first by the next batch: turns round so that a busy topic does not starve the others.
    first: usize,
}

/// How many segments one read may move through (a bound against a directory that changes under it).
const MAX_SEGMENT_MOVES: usize = 64;

/// A place in a topic: a line number, the segment it is in and the byte that line starts at there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    line: i64,
    byte: u64,
    /// The first line of the segment `byte` is in; left out while it is the first segment (0), so
    /// offset files of topics never rotated read as before.
    #[serde(default, skip_serializing_if = "is_first_segment")]
    segment: i64,
}

fn is_first_segment(segment: &i64) -> bool {
    *segment == 0
}

impl Position {
    /// The first line of the segment that starts at `first_line`.
    fn segment_start(first_line: i64) -> Self {
        Position { line: first_line, byte: 0, segment: first_line }
    }
}

/// A line read but not committed yet.
#[derive(Debug, Clone, Copy)]
struct ReadLine {
    line: i64,
    segment: i64,
    /// The byte after its newline.
    end: u64,
    corrupt: bool,
}

/// The file of the segment a reader is in.
enum SegmentFile {
    /// A rotated segment: complete, never written again.
    Rotated(File),
    /// The active segment (`None` while it does not exist).
    Active(Option<File>),
    /// Not in the directory any more (retention), or never there: where the topic's segments start now.
    Gone(ActiveStart),
}

struct TopicReader {
    topic: Topic,
    segments: SegmentFiles,
    /// The active segment's file, for messages.
    path: PathBuf,
    offset_path: PathBuf,
    /// The first line of the active segment when it was last checked (checked again after a rotation).
    verified_active: Option<i64>,
    /// The next line to read.
    read: Position,
    /// The next line a new subscription of the group would read.
    committed: Position,
    outstanding: VecDeque<ReadLine>,
    /// Where the last line read starts and its checksum: if those bytes changed, the file was rotated
    /// and written again (even up to the same length), and is read again from its start.
    last_line: Option<(u64, u32)>,
}

/// Checksums of lines already read, to notice a file rewritten under the reader.
const LINE_CHECKSUM: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

impl JsonlSubscription {
    /// Joins `group` on `topics`, whose files are `topic_paths`; creates the group's directory.
    pub(in crate::bus) async fn join(
        directory: &Path,
        group: &str,
        topic_segments: Vec<(Topic, SegmentFiles)>,
        appended: Arc<Notify>,
    ) -> Result<Self, BusError> {
        if group.is_empty() {
            return Err(BusError::Io("a consumer group needs a name".to_owned()));
        }
        let group_directory = directory.join("consumers").join(group_directory_name(group));
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&group_directory)
                .map_err(|error| BusError::Io(format!("cannot create {}: {error}", group_directory.display())))?;
            topic_segments
                .into_iter()
                .map(|(topic, segments)| TopicReader::open(topic, segments, &group_directory))
                .collect::<Result<Vec<_>, _>>()
        })
        .await;
        let topics = opened.unwrap_or_else(|join_error| Err(task_failed(&join_error)))?;
        Ok(JsonlSubscription {
            group: group.to_owned(),
            readers: Arc::new(Mutex::new(Readers { topics, first: 0 })),
            appended,
        })
    }

    /// Runs `work` on the readers, on tokio's blocking pool (file I/O).
    async fn with_readers<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Readers) -> Result<T, BusError> + Send + 'static,
    ) -> Result<T, BusError> {
        let readers = Arc::clone(&self.readers);
        let done = tokio::task::spawn_blocking(move || {
            // A reader that panicked mid-read left positions that are still sound: at worst lines come again.
            let mut readers = readers.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut readers)
        })
        .await;
        done.unwrap_or_else(|join_error| Err(task_failed(&join_error)))
    }
}

fn task_failed(join_error: &tokio::task::JoinError) -> BusError {
    BusError::Unavailable(format!("bus task did not complete: {join_error}"))
}

/// The group's directory name: letters, digits, `-`, `_` and inner dots as they are, other bytes as `%XX`.
fn group_directory_name(group: &str) -> String {
    group
        .bytes()
        .enumerate()
        .map(|(index, byte)| {
            let kept = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' || (byte == b'.' && index > 0);
            if kept { char::from(byte).to_string() } else { format!("%{byte:02X}") }
        })
        .collect()
}

impl Readers {
    fn read(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut batch = Vec::new();
        let count = self.topics.len();
        for turn in 0..count {
            if batch.len() >= max {
                break;
            }
            if let Some(reader) = self.topics.get_mut((self.first + turn) % count) {
                reader.read_into(max, &mut batch)?;
            }
        }
        self.first = if count == 0 { 0 } else { (self.first + 1) % count };
        Ok(batch)
    }

    /// Commits, per topic, every line up to the highest one given.
    fn commit(&mut self, highest: &HashMap<Topic, i64>) -> Result<(), BusError> {
        for reader in &mut self.topics {
            if let Some(line) = highest.get(&reader.topic) {
                reader.commit_through(*line)?;
            }
        }
        Ok(())
    }
}

impl TopicReader {
    fn open(topic: Topic, segments: SegmentFiles, group_directory: &Path) -> Result<Self, BusError> {
        let offset_path = group_directory.join(format!("{}.offset", segments.stem()));
        let committed = match std::fs::read(&offset_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(path = %offset_path.display(), %error, "unreadable offset file; the group reads the topic from its start");
                Position::default()
            }),
            Err(error) if error.kind() == ErrorKind::NotFound => Position::default(),
            Err(error) => return Err(BusError::Io(format!("cannot read {}: {error}", offset_path.display()))),
        };
        let path = segments.active();
        let mut reader = TopicReader {
            topic,
            segments,
            path,
            offset_path,
            verified_active: None,
            read: committed,
            committed,
            outstanding: VecDeque::new(),
            last_line: None,
        };
        if !reader.starts_a_line(committed)? {
            tracing::warn!(path = %reader.path.display(), "the committed position is not in the file any more; the group reads it from its start");
            reader.restart()?;
        }
        Ok(reader)
    }

    fn io_error(&self, error: std::io::Error) -> BusError {
        BusError::Io(format!("cannot read the segments of {}: {error}", self.path.display()))
    }

    /// The file of the segment that starts at `segment`.
    fn open_segment(&mut self, segment: i64) -> Result<SegmentFile, BusError> {
        let rotated = self.segments.rotated(segment);
        for _ in 0..MAX_SEGMENT_MOVES {
            // The rotated name is tried first: the active file may be renamed to it at any moment.
            match File::open(&rotated) {
                Ok(file) => return Ok(SegmentFile::Rotated(file)),
                Err(error) if error.kind() == ErrorKind::NotFound => {}
                Err(error) => return Err(self.io_error(error)),
            }
            let active = match File::open(&self.path) {
                Ok(file) => Some(file),
                Err(error) if error.kind() == ErrorKind::NotFound => None,
                Err(error) => return Err(self.io_error(error)),
            };
            // Still no rotated file after opening the active one: what was opened is that segment's file.
            if rotated.exists() {
                continue;
            }
            if self.verified_active != Some(segment) {
                let start = self.segments.active_first_line().map_err(|error| self.io_error(error))?;
                if start.first_line != segment {
                    return Ok(SegmentFile::Gone(start));
                }
                self.verified_active = Some(segment);
            }
            return Ok(SegmentFile::Active(active));
        }
        Err(BusError::Io(format!("the segments of {} keep changing while read", self.path.display())))
    }

    /// Whether `position.byte` is where a line of its segment starts (or its end).
    fn starts_a_line(&mut self, position: Position) -> Result<bool, BusError> {
        if position.byte == 0 {
            return Ok(true);
        }
        let mut file = match self.open_segment(position.segment)? {
            SegmentFile::Rotated(file) | SegmentFile::Active(Some(file)) => file,
            // A deleted segment is skipped by the first read, with its count of unread lines.
            SegmentFile::Gone(_) => return Ok(true),
            SegmentFile::Active(None) => return Ok(false),
        };
        let mut before = [0_u8; 1];
        let read = file.seek(SeekFrom::Start(position.byte - 1)).and_then(|_| file.read(&mut before));
        match read {
            Ok(1) => Ok(before == [b'\n']),
            Ok(_) => Ok(false),
            Err(error) => Err(self.io_error(error)),
        }
    }

    /// Forgets every position in the current segment: the group reads it from its first line.
    fn restart(&mut self) -> Result<(), BusError> {
        self.outstanding.clear();
        self.read = Position::segment_start(self.read.segment);
        self.last_line = None;
        self.store_committed(self.read)
    }

    /// Appends to `batch` the events of the whole lines after the read position, up to `max` in all,
    /// moving on through rotated segments.
    fn read_into(&mut self, max: usize, batch: &mut Vec<Delivery>) -> Result<(), BusError> {
        for _ in 0..MAX_SEGMENT_MOVES {
            if batch.len() >= max {
                return Ok(());
            }
            match self.open_segment(self.read.segment)? {
                SegmentFile::Rotated(file) => {
                    let length = file.metadata().map_err(|error| self.io_error(error))?.len();
                    if !self.read_lines(&file, length, max, batch)? {
                        return Ok(());
                    }
                    // A rotated segment ends with its last whole line: the next one starts at the line after it.
                    self.read = Position::segment_start(self.read.line);
                    self.last_line = None;
                }
                SegmentFile::Active(None) => return Ok(()),
                SegmentFile::Active(Some(file)) => {
                    let length = file.metadata().map_err(|error| self.io_error(error))?.len();
                    if length < self.read.byte
                        || !self.last_line_unchanged(&file).map_err(|error| self.io_error(error))?
                    {
                        tracing::warn!(path = %self.path.display(), "the topic file was cut or rewritten; reading it from its start");
                        self.restart()?;
                    }
                    self.read_lines(&file, length, max, batch)?;
                    return Ok(());
                }
                SegmentFile::Gone(start) => self.skip_to_a_kept_segment(start)?,
            }
        }
        Ok(())
    }

    /// The read position's segment is gone: go on at the first segment kept after it (retention deleted
    /// what was between, and those lines are counted as skipped), or at the oldest one kept when the
    /// position is past every file (segments removed by hand).
    fn skip_to_a_kept_segment(&mut self, start: ActiveStart) -> Result<(), BusError> {
        let mut kept = self.segments.rotated_first_lines().map_err(|error| self.io_error(error))?;
        kept.push(start.first_line);
        let next = kept.iter().copied().find(|first_line| *first_line >= self.read.line);
        let target = match next {
            Some(first_line) => {
                let skipped = first_line - self.read.line;
                if skipped > 0 {
                    metrics()
                        .bus_consumer_skipped_records
                        .with_label_values(&[self.topic.name()])
                        .inc_by(skipped as u64);
                    tracing::warn!(path = %self.path.display(), skipped, "lines deleted by retention before this group read them");
                }
                first_line
            }
            None => {
                let oldest = kept.first().copied().unwrap_or(start.first_line);
                tracing::warn!(path = %self.path.display(), line = self.read.line, "the group's position is past the topic's files; reading from the oldest segment");
                oldest
            }
        };
        self.read = Position::segment_start(target);
        self.last_line = None;
        if self.outstanding.is_empty() {
            self.store_committed(self.read)?;
        }
        Ok(())
    }

    /// Reads the whole lines of `file` (of `length` bytes) after the read position into `batch`, up to
    /// `max` in all; `true` when it read up to the last whole line.
    fn read_lines(
        &mut self,
        file: &File,
        length: u64,
        max: usize,
        batch: &mut Vec<Delivery>,
    ) -> Result<bool, BusError> {
        if length <= self.read.byte {
            return Ok(true);
        }
        if batch.len() >= max {
            return Ok(false);
        }
        let mut limited = file.take(length - self.read.byte);
        let mut reader = file;
        reader.seek(SeekFrom::Start(self.read.byte)).map_err(|error| self.io_error(error))?;
        let mut lines = BufReader::new(&mut limited);
        let mut line = Vec::new();
        let mut skipped_at_once = None;
        let mut reached_end = false;
        while batch.len() < max {
            line.clear();
            let size = lines.read_until(b'\n', &mut line).map_err(|error| self.io_error(error))?;
            // A line without its newline is being appended right now: read it whole next time.
            let Some(content) = line.strip_suffix(b"\n") else {
                reached_end = true;
                break;
            };
            let number = self.read.line;
            let segment = self.read.segment;
            let end = self.read.byte + size as u64;
            self.last_line = Some((self.read.byte, LINE_CHECKSUM.checksum(&line)));
            match decode_record(self.topic, content) {
                Ok(event) => {
                    metrics().bus_events_consumed.with_label_values(&[self.topic.name()]).inc();
                    self.outstanding.push_back(ReadLine { line: number, segment, end, corrupt: false });
                    batch.push(Delivery { event, partition: 0, offset: number });
                }
                Err(error) => {
                    metrics().bus_corrupt_records.with_label_values(&[self.topic.name()]).inc();
                    tracing::warn!(path = %self.path.display(), line = number, %error, "skipping a line that is not an event");
                    if self.outstanding.is_empty() {
                        skipped_at_once = Some(Position { line: number + 1, byte: end, segment });
                    } else {
                        self.outstanding.push_back(ReadLine { line: number, segment, end, corrupt: true });
                    }
                }
            }
            self.read = Position { line: number + 1, byte: end, segment };
        }
        if let Some(position) = skipped_at_once {
            self.store_committed(position)?;
        }
        Ok(reached_end || self.read.byte >= length)
    }

    /// Whether the last line read is still in the file as it was read.
    fn last_line_unchanged(&self, file: &File) -> std::io::Result<bool> {
        let Some((start, checksum)) = self.last_line else { return Ok(true) };
        let mut bytes = Vec::new();
        let mut reader = file;
        reader.seek(SeekFrom::Start(start))?;
        reader.take(self.read.byte.saturating_sub(start)).read_to_end(&mut bytes)?;
        Ok(LINE_CHECKSUM.checksum(&bytes) == checksum)
    }

    /// Commits every line up to `line` (and the corrupt ones right after it).
    fn commit_through(&mut self, line: i64) -> Result<(), BusError> {
        let committed_lines = self.outstanding.iter().take_while(|read| read.line <= line).count();
        let corrupt_after = self.outstanding.iter().skip(committed_lines).take_while(|read| read.corrupt).count();
        // Nothing read and uncommitted up to `line`: already committed, or not delivered by this subscription.
        let Some(last) =
            committed_lines.checked_sub(1).and_then(|_| self.outstanding.get(committed_lines + corrupt_after - 1))
        else {
            return Ok(());
        };
        let position = Position { line: last.line + 1, byte: last.end, segment: last.segment };
        self.store_committed(position)?;
        self.outstanding.drain(..committed_lines + corrupt_after);
        Ok(())
    }

    /// Replaces the group's offset file atomically, then remembers `position` as committed.
    fn store_committed(&mut self, position: Position) -> Result<(), BusError> {
        let io_error =
            |error: std::io::Error| BusError::Io(format!("cannot write {}: {error}", self.offset_path.display()));
        let temporary = self.offset_path.with_extension("offset.tmp");
        let bytes = serde_json::to_vec(&position).map_err(|error| BusError::Io(error.to_string()))?;
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io_error)?;
        file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(io_error)?;
        std::fs::rename(&temporary, &self.offset_path).map_err(io_error)?;
        // The rename itself is durable once the directory is synced.
        if let Some(directory) = self.offset_path.parent() {
            File::open(directory).and_then(|directory| directory.sync_all()).map_err(io_error)?;
        }
        self.committed = position;
        Ok(())
    }
}

#[async_trait]
impl Subscription for JsonlSubscription {
    #[tracing::instrument(skip_all, fields(group = %self.group))]
    async fn next_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listening before reading: an append between the read and the wait still wakes us.
            let appended = self.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let batch = self.with_readers(move |readers| readers.read(max)).await.inspect_err(|_| {
                metrics().bus_consumer_errors.with_label_values(&["jsonl", "fetch"]).inc();
            })?;
            let now = tokio::time::Instant::now();
            if !batch.is_empty() || max == 0 || now >= deadline {
                return Ok(batch);
            }
            let pause = (deadline - now).min(POLL_INTERVAL);
            // Woken by a publish of this process, or after the pause to see appends by others.
            let _ = tokio::time::timeout(pause, &mut appended).await;
        }
    }

    #[tracing::instrument(skip_all, fields(group = %self.group, deliveries = deliveries.len()))]
    async fn commit(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut highest: HashMap<Topic, i64> = HashMap::new();
        for delivery in deliveries {
            let line = highest.entry(delivery.event.topic).or_insert(delivery.offset);
            *line = (*line).max(delivery.offset);
        }
        if highest.is_empty() {
            return Ok(());
        }
        self.with_readers(move |readers| readers.commit(&highest)).await.inspect_err(|_| {
            metrics().bus_consumer_errors.with_label_values(&["jsonl", "commit"]).inc();
        })
    }
}
