//! The single writer of the embedded store: group commit on a dedicated thread.
//!
//! redb runs one write transaction at a time, and each durable commit costs an
//! fsync. Rather than have every caller wait for the lock and pay its own
//! fsync, writes are sent to one thread that takes every write waiting (up to
//! [`MAX_GROUP`]), applies them in arrival order in one transaction and
//! commits once: under load many sessions share one fsync, and a write is
//! answered only after the commit that made it durable. A group whose apply
//! step fails (a corrupt record, a value over redb's limit) is rolled back and
//! applied again one write per transaction, so only the faulty write fails.
//! A write the store turns down (a stale fence, a full outbox) is checked before
//! it writes anything: it is answered with its refusal and the group goes on.
//!
//! The thread is a blocking thread of its own, never a tokio worker.

use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::write::{self, Applied};
use super::{coordination, ephemeral};
use crate::clock::Millis;
use crate::cluster::{LeaseRequest, NodeInfo};
use crate::model::{CommandId, NewCommand, RepositoryItem};
use crate::store::{SessionLoad, StoreError, WriteBatch};

/// At most this many writes share one transaction.
pub const MAX_GROUP: usize = 256;
/// Writes waiting for the writer before callers wait to submit (backpressure).
const QUEUE_CAPACITY: usize = 4_096;

/// One write of the Store trait.
pub enum WriteJob {
    /// Boxed: a batch is much larger than the other jobs.
    Commit(Box<WriteBatch>),
    Enqueue {
        device_id: String,
        commands: Vec<NewCommand>,
        now: Millis,
    },
    DeleteDevice(String),
    PutContent(RepositoryItem),
    DeleteContent(String),
    AckOutbox(Vec<String>),
    /// A session step's load: the lease decision and the reads in one transaction.
    LoadSession {
        device_id: String,
        awaiting: Vec<CommandId>,
        queue_limit: usize,
        request: LeaseRequest,
    },
    Heartbeat {
        node: NodeInfo,
        ttl: Millis,
        now: Millis,
    },
    Leave(String),
    RecordOnce {
        key: String,
        ttl: Millis,
        now: Millis,
    },
    NextSequence(String),
    Remember {
        key: String,
        value: String,
        ttl: Millis,
        now: Millis,
    },
    ReleaseDue {
        now: Millis,
        limit: usize,
    },
}

/// What a write returns.
#[derive(Debug)]
pub enum WriteOutput {
    Done,
    Ids(Vec<CommandId>),
    Existed(bool),
    Session(SessionLoad),
    Nodes(Vec<NodeInfo>),
    New(bool),
    Count(u64),
    /// The write was turned down and wrote nothing (`Fenced`, `OutboxFull`); its group went on.
    Refused(StoreError),
}

/// What the writer applies writes with.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// `StoreOptions::outbox_limit_per_shard` (the engine has one shard).
    pub outbox_limit: u64,
    /// `StoreOptions::session_history_per_device`.
    pub history_per_device: usize,
}

struct Request {
    job: WriteJob,
    reply: oneshot::Sender<Result<WriteOutput, StoreError>>,
}

/// The handle to the writer thread; dropping it lets the thread finish the
/// writes already submitted and waits for it, so the database file is closed
/// when the store is gone.
pub struct Writer {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(database: Arc<Database>, settings: WriterSettings) -> Result<Self, StoreError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("omadm-store-writer".to_owned())
            .spawn(move || run(&database, settings, receiver))
            .map_err(|error| StoreError::Unavailable(format!("cannot start the store writer: {error}")))?;
        Ok(Writer { sender: Some(sender), thread: Some(thread) })
    }

    /// Hands `job` to the writer and waits until it is durable (or failed).
    pub async fn submit(&self, job: WriteJob) -> Result<WriteOutput, StoreError> {
        let stopped = || StoreError::Unavailable("the store writer has stopped".to_owned());
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        sender.send(Request { job, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the submitted writes are done.
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
    }
}

fn run(database: &Database, settings: WriterSettings, mut receiver: mpsc::Receiver<Request>) {
    while let Some(first) = receiver.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        apply_group(database, settings, group);
    }
}

fn apply_group(database: &Database, settings: WriterSettings, group: Vec<Request>) {
    if group.len() > 1 {
        match apply_together(database, settings, &group) {
            Together::Committed(outputs) => {
                for (request, output) in group.into_iter().zip(outputs) {
                    let _ = request.reply.send(Ok(output));
                }
                return;
            }
            Together::CommitFailed(error) => {
                // The commit may or may not have become durable: applying the
                // writes again could apply them twice, so each caller gets the error.
                for request in group {
                    let _ = request.reply.send(Err(StoreError::Unavailable(error.to_string())));
                }
                return;
            }
            Together::ApplyFailed => {}
        }
    }
    for request in group {
        let result = apply_alone(database, settings, &request.job);
        let _ = request.reply.send(result);
    }
}

enum Together {
    Committed(Vec<WriteOutput>),
    /// Nothing was written; some write of the group fails on its own.
    ApplyFailed,
    CommitFailed(StoreError),
}

fn apply_together(database: &Database, settings: WriterSettings, group: &[Request]) -> Together {
    let transaction = match database.begin_write() {
        Ok(transaction) => transaction,
        Err(error) => return Together::CommitFailed(error.into()),
    };
    let mut outputs = Vec::with_capacity(group.len());
    for request in group {
        match apply(&transaction, settings, &request.job) {
            Ok(output) => outputs.push(output),
            // Dropping the transaction rolls it back.
            Err(_) => return Together::ApplyFailed,
        }
    }
    match transaction.commit() {
        Ok(()) => Together::Committed(outputs),
        Err(error) => Together::CommitFailed(error.into()),
    }
}

fn apply_alone(database: &Database, settings: WriterSettings, job: &WriteJob) -> Result<WriteOutput, StoreError> {
    let transaction = database.begin_write()?;
    let output = apply(&transaction, settings, job)?;
    transaction.commit()?;
    Ok(output)
}

fn apply(transaction: &WriteTransaction, settings: WriterSettings, job: &WriteJob) -> Result<WriteOutput, StoreError> {
    match job {
        WriteJob::Commit(batch) => {
            match write::commit(transaction, batch, settings.outbox_limit, settings.history_per_device)? {
                Applied::Done => Ok(WriteOutput::Done),
                Applied::Refused(refusal) => Ok(WriteOutput::Refused(refusal)),
            }
        }
        WriteJob::Enqueue { device_id, commands, now } => {
            write::enqueue_commands(transaction, device_id, commands, *now).map(WriteOutput::Ids)
        }
        WriteJob::DeleteDevice(device_id) => write::delete_device(transaction, device_id).map(WriteOutput::Existed),
        WriteJob::PutContent(item) => write::put_content(transaction, item).map(|()| WriteOutput::Done),
        WriteJob::DeleteContent(path) => write::delete_content(transaction, path).map(WriteOutput::Existed),
        WriteJob::AckOutbox(event_ids) => write::ack_outbox(transaction, event_ids).map(|()| WriteOutput::Done),
        WriteJob::LoadSession { device_id, awaiting, queue_limit, request } => {
            coordination::load_session(transaction, device_id, awaiting, *queue_limit, request)
                .map(WriteOutput::Session)
        }
        WriteJob::Heartbeat { node, ttl, now } => {
            coordination::heartbeat(transaction, node, *ttl, *now).map(WriteOutput::Nodes)
        }
        WriteJob::Leave(node_id) => coordination::leave(transaction, node_id).map(|()| WriteOutput::Done),
        WriteJob::RecordOnce { key, ttl, now } => {
            ephemeral::record_once(transaction, key, *ttl, *now).map(WriteOutput::New)
        }
        WriteJob::NextSequence(key) => write::next_sequence(transaction, key).map(WriteOutput::Count),
        WriteJob::Remember { key, value, ttl, now } => {
            ephemeral::remember(transaction, key, value, *ttl, *now).map(|()| WriteOutput::Done)
        }
        WriteJob::ReleaseDue { now, limit } => {
            write::release_due_events(transaction, *now, *limit, settings.outbox_limit)
                .map(|released| WriteOutput::Count(released as u64))
        }
    }
}
