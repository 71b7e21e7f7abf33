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
use omadm_core::cluster::{Fence, LeaseRequest};
use omadm_core::model::CommandState;
use omadm_core::store::conformance::{alert, device, event, get_command, open_session};
use omadm_core::store::{EmbeddedStore, SessionLoad, Store, StoreError, WriteBatch};

/// Where the child writes; its presence makes `writer_child` the writer.
const CHILD_DIRECTORY: &str = "OMADM_DURABILITY_CHILD_DIRECTORY";
/// Acknowledgements the parent waits for before the kill.
const ACKS_BEFORE_KILL: usize = 200;
/// Concurrent writers in the child.
const WRITERS: u64 = 4;
/// The device whose lease the child moves between two nodes.
const LEASED_DEVICE: &str = "durable-leased";

/// The child process, not a test of its own: without the environment variable it has nothing to do.
/// Several writers at once, so the kill also lands in group commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by kill_9_between_commits_loses_nothing_acknowledged as its child process"]
async fn writer_child() {
    let Ok(directory) = std::env::var(CHILD_DIRECTORY) else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(std::path::Path::new(&directory)).await.unwrap());
    let mut writers = Vec::new();
    // Two nodes taking the lease of one device from each other: every grant is a new epoch.
    store.commit(WriteBatch { devices: vec![device(LEASED_DEVICE)], ..WriteBatch::default() }).await.unwrap();
    let lease_store = store.clone();
    writers.push(tokio::spawn(async move {
        for round in 0u64.. {
            let node = if round % 2 == 0 { "node-even" } else { "node-odd" };
            let request = LeaseRequest {
                node_id: node.to_owned(),
                ttl: 60_000,
                live_nodes: vec![node.to_owned()],
                now: omadm_core::clock::now_millis(),
            };
            match lease_store.load_session(LEASED_DEVICE, &[], 1, &request).await.unwrap() {
                SessionLoad::Loaded(snapshot) => println!("ACK epoch {node} {}", snapshot.lease.epoch),
                other => panic!("{other:?}"),
            }
        }
    }));
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let queue = format!("durable-{writer}");
            for round in 1u64.. {
                let batch = WriteBatch {
                    devices: vec![device(&format!("durable-{writer}-{round}"))],
                    sessions: vec![open_session(&format!("session-{writer}-{round}"), &queue, round)],
                    alerts: vec![alert(&queue, round)],
                    events: vec![event(&format!("event-{writer}-{round}"), Topic::Results, &queue)],
                    ..WriteBatch::default()
                };
                store.commit(batch).await.unwrap();
                println!("ACK batch {writer} {round}");
                let command = get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man");
                let ids = store.enqueue_commands(&queue, vec![command], round).await.unwrap();
                println!("ACK command {writer} {}", ids[0]);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

/// What the child reported as acknowledged.
#[derive(Default)]
struct Acknowledged {
    /// (writer, round)
    batches: Vec<(u64, u64)>,
    /// (writer, command id)
    commands: Vec<(u64, u64)>,
    /// (node, epoch) of the lease grants.
    epochs: Vec<(String, u64)>,
}

impl Acknowledged {
    fn record(&mut self, line: &str) {
        let pair = |rest: &str| {
            let (writer, number) = rest.split_once(' ').unwrap();
            (writer.parse().unwrap(), number.parse().unwrap())
        };
        if let Some(rest) = line.strip_prefix("ACK batch ") {
            self.batches.push(pair(rest));
        } else if let Some(rest) = line.strip_prefix("ACK command ") {
            self.commands.push(pair(rest));
        } else if let Some(rest) = line.strip_prefix("ACK epoch ") {
            let (node, epoch) = rest.split_once(' ').unwrap();
            self.epochs.push((node.to_owned(), epoch.parse().unwrap()));
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
    let Acknowledged { batches: acknowledged_batches, commands: acknowledged_commands, epochs } = acks;
    assert!(acknowledged_batches.len() >= ACKS_BEFORE_KILL / 2, "the child ran: {acknowledged_batches:?}");

    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(directory.path()).await.unwrap());
    let outbox_ids: Vec<String> = store.outbox(0, 1_000_000).await.unwrap().into_iter().map(|event| event.id).collect();
    for (writer, round) in &acknowledged_batches {
        let queue = format!("durable-{writer}");
        assert!(store.get_device(&format!("{queue}-{round}")).await.unwrap().is_some(), "device {writer}/{round}");
        assert!(
            store.get_session(&queue, &format!("session-{writer}-{round}")).await.unwrap().is_some(),
            "session {round}"
        );
        let alerts = store.list_alerts(&queue, 1_000_000).await.unwrap();
        assert!(alerts.iter().any(|alert| alert.id == *round), "alert of batch {writer}/{round}");
        assert!(outbox_ids.contains(&format!("event-{writer}-{round}")), "event of batch {writer}/{round}");
    }
    for (writer, id) in &acknowledged_commands {
        let command = store.get_command(&format!("durable-{writer}"), *id).await.unwrap();
        assert_eq!(command.map(|command| command.state), Some(CommandState::Queued), "command {writer}/{id}");
    }
    for writer in 0..WRITERS {
        // The indexes survived with the records: the queue and its count agree, ids have no gap.
        let queue = format!("durable-{writer}");
        let queued = store.queued_commands(&queue, 1_000_000).await.unwrap();
        let acknowledged = acknowledged_commands.iter().filter(|(owner, _)| *owner == writer).count();
        assert!(queued.len() >= acknowledged);
        assert!(queued.iter().enumerate().all(|(index, command)| command.id == index as u64 + 1));
        assert_eq!(store.pending_count(&queue).await.unwrap(), queued.len() as u64);
        // And the store goes on: numbering continues after everything that was written.
        let next = store.enqueue_commands(&queue, vec![get_command("urn:x//A")], 0).await.unwrap();
        assert_eq!(next, vec![queued.len() as u64 + 1]);
    }

    // Epochs never go back after a crash: the next grant is above every acknowledged
    // one, and the last acknowledged holder's fence no longer holds.
    assert!(!epochs.is_empty(), "the child granted leases");
    assert!(epochs.windows(2).all(|pair| pair[1].1 == pair[0].1 + 1), "each take-over a new epoch");
    let (last_node, last_epoch) = epochs.last().cloned().unwrap();
    let request = LeaseRequest {
        node_id: "node-after".to_owned(),
        ttl: 60_000,
        live_nodes: vec!["node-after".to_owned()],
        now: 0,
    };
    let SessionLoad::Loaded(snapshot) = store.load_session(LEASED_DEVICE, &[], 1, &request).await.unwrap() else {
        panic!("the leased device is registered");
    };
    assert!(snapshot.lease.epoch > last_epoch, "{} after {last_epoch}", snapshot.lease.epoch);
    let stale =
        Fence { device_id: LEASED_DEVICE.to_owned(), node_id: last_node, epoch: last_epoch, ttl: 1, release: false };
    let refused = store.commit(WriteBatch { fence: Some(stale), ..WriteBatch::default() }).await;
    assert!(matches!(refused, Err(StoreError::Fenced { .. })), "{refused:?}");
}
