//! Durability: whatever the store acknowledged survives the process being killed with SIGKILL mid-write.
//!
//! The test re-runs its own binary as a child (`writer_child`, selected by an
//! environment variable), which commits in a tight loop and prints one line
//! per acknowledged write. The parent kills it after a number of
//! acknowledgements, at an arbitrary point of a transaction, reopens the store
//! (redb repairs the file) and looks for every acknowledged write.

// Test helpers outside #[test] functions report failures by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use omadm_core::bus::Topic;
use omadm_core::model::CommandState;
use omadm_core::store::conformance::{alert, device, event, get_command, open_session};
use omadm_core::store::{EmbeddedStore, Store, WriteBatch};

/// Where the child writes; its presence makes `writer_child` the writer.
const CHILD_DIRECTORY: &str = "OMADM_DURABILITY_CHILD_DIRECTORY";
/// Acknowledgements the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 60;

/// The child process, not a test of its own: without the environment variable it has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill_9_between_commits_loses_nothing_acknowledged as its child process"]
async fn writer_child() {
    let Ok(directory) = std::env::var(CHILD_DIRECTORY) else {
        return;
    };
    let store = EmbeddedStore::open(std::path::Path::new(&directory)).await.unwrap();
    for round in 1u64.. {
        let device_id = format!("durable-{round}");
        let batch = WriteBatch {
            devices: vec![device(&device_id)],
            sessions: vec![open_session(&format!("session-{round}"), "durable", round)],
            alerts: vec![alert("durable", round)],
            events: vec![event(&format!("event-{round}"), Topic::Results, "durable")],
            ..WriteBatch::default()
        };
        store.commit(batch).await.unwrap();
        println!("ACK batch {round}");
        let ids =
            store.enqueue_commands("durable", vec![get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man")], round).await;
        println!("ACK command {}", ids.unwrap()[0]);
    }
}

/// What the child reported as acknowledged.
#[derive(Default)]
struct Acknowledged {
    batches: Vec<u64>,
    commands: Vec<u64>,
}

impl Acknowledged {
    fn record(&mut self, line: &str) {
        if let Some(round) = line.strip_prefix("ACK batch ") {
            self.batches.push(round.parse().unwrap());
        } else if let Some(id) = line.strip_prefix("ACK command ") {
            self.commands.push(id.parse().unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_commits_loses_nothing_acknowledged() {
    let directory = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["writer_child", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIRECTORY, directory.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = Acknowledged::default();
    for line in lines.by_ref() {
        acks.record(&line.unwrap());
        if acks.batches.len() + acks.commands.len() >= ACKS_BEFORE_KILL {
            break;
        }
    }
    // Child::kill sends SIGKILL on unix: no destructor, no flush, mid-transaction most likely.
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines already in the pipe were acknowledged before the kill too.
    for line in lines {
        acks.record(&line.unwrap());
    }
    let Acknowledged { batches: acknowledged_batches, commands: acknowledged_commands } = acks;
    assert!(acknowledged_batches.len() >= ACKS_BEFORE_KILL / 2, "the child ran: {acknowledged_batches:?}");

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    let outbox_ids: Vec<String> = store.outbox(100_000).await.unwrap().into_iter().map(|event| event.id).collect();
    let alert_ids: Vec<u64> =
        store.list_alerts("durable", 100_000).await.unwrap().iter().map(|alert| alert.id).collect();
    for round in &acknowledged_batches {
        assert!(store.get_device(&format!("durable-{round}")).await.unwrap().is_some(), "device of batch {round}");
        assert!(store.get_session(&format!("session-{round}")).await.unwrap().is_some(), "session of batch {round}");
        assert!(alert_ids.contains(round), "alert of batch {round}");
        assert!(outbox_ids.contains(&format!("event-{round}")), "event of batch {round}");
    }
    for id in &acknowledged_commands {
        let command = store.get_command("durable", *id).await.unwrap();
        assert_eq!(command.map(|command| command.state), Some(CommandState::Queued), "command {id}");
    }
    // The indexes survived with the records: the queue and its count agree.
    let queued = store.queued_commands("durable", 100_000).await.unwrap();
    assert!(queued.len() >= acknowledged_commands.len());
    assert_eq!(store.pending_count("durable").await.unwrap(), queued.len() as u64);
    // And the store goes on: numbering continues after everything that was written.
    let next = store.enqueue_commands("durable", vec![get_command("urn:x//A")], 0).await.unwrap();
    assert_eq!(next, vec![queued.len() as u64 + 1]);
}
