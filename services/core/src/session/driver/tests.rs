//! The driver's policy over the real embedded store in a tempdir: retransmissions, take-over,
//! concurrent Package#1s, stale fences, expiry and the outbox, as one node or two sharing the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use omadm_proto::command::Command;
use omadm_proto::multipart::MultipartResponse;
use omadm_proto::package::{CommandStatus, InitiationPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::cluster::LeaseRequest;
use crate::model::{CommandOrigin, CommandRecord, CommandState, Device, NewCommand};
use crate::session::SessionError;
use crate::store::interpose::{Interpose, Interposed};
use crate::store::{EmbeddedStore, StoreOptions};

const DEVICE: &str = "IMEI:493005100592800";
const START: Millis = 1_700_000_000_000;
const TIMEOUT: Millis = 60_000;

fn config() -> SessionConfig {
    SessionConfig {
        session_timeout: TIMEOUT,
        inventory_max_age: 1_000 * TIMEOUT,
        max_attempts: 3,
        ..SessionConfig::example()
    }
}

/// A node as the driver sees it: its id, the nodes it believes alive, and what the driver told it.
struct Node {
    id: String,
    live: Mutex<Vec<String>>,
    ended: Mutex<Vec<String>>,
    accepted: Mutex<Vec<u32>>,
    full: Mutex<Vec<(u32, u64)>>,
}

impl SessionHost for Node {
    fn lease_request(&self, now: Millis) -> LeaseRequest {
        LeaseRequest { node_id: self.id.clone(), ttl: 30_000, live_nodes: self.live.lock().unwrap().clone(), now }
    }
    fn outbox_accepted(&self, shard: u32) {
        self.accepted.lock().unwrap().push(shard);
    }
    fn outbox_full(&self, shard: u32, len: u64) {
        self.full.lock().unwrap().push((shard, len));
    }
    fn session_ended(&self, session_id: &str) {
        self.ended.lock().unwrap().push(session_id.to_owned());
    }
}

fn node(store: &Arc<dyn Store>, id: &str, live: &[&str]) -> (SessionDriver, Arc<Node>) {
    let node = Arc::new(Node {
        id: id.to_owned(),
        live: Mutex::new(live.iter().map(|id| (*id).to_owned()).collect()),
        ended: Mutex::default(),
        accepted: Mutex::default(),
        full: Mutex::default(),
    });
    let driver = SessionDriver::new(store.clone(), config(), node.clone(), Arc::new(KeyedLocks::default()));
    (driver, node)
}

/// A store with a registered device (inventory fresh, so no inventory GETs) and `commands` EXECs queued.
async fn store_with(options: StoreOptions, commands: usize) -> (Arc<dyn Store>, TempDir, Vec<CommandId>) {
    let directory = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open_with(directory.path(), &options).await.unwrap());
    let mut device = Device::new(DEVICE, crate::auth::credentials_for(DEVICE, "omadm", "secret"), START);
    device.inventory.updated_at = Some(START);
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let queued = (0..commands)
        .map(|index| NewCommand {
            command: Command::from_json(&json!(["EXEC", format!("urn:oma:mo:oma-fumo:1.0/fw{index}/Update")])).unwrap(),
            origin: CommandOrigin::Operator,
            campaign_id: None,
        })
        .collect();
    let ids = store.enqueue_commands(DEVICE, queued, START).await.unwrap();
    (store, directory, ids)
}

async fn world(commands: usize) -> (Arc<dyn Store>, TempDir, Vec<CommandId>) {
    store_with(StoreOptions::default(), commands).await
}

/// A Package#3 of these codes as the device sends it, received at `received_at`.
fn package3_at(codes: &[u16], arrival: Arrival, received_at: Instant) -> Package3 {
    let statuses = codes.iter().map(|code| CommandStatus::new(StatusCode::new(*code).unwrap())).collect();
    let response = MultipartResponse { package: ResponsePackage::new(statuses), parts: Vec::new() };
    let body = response.package.to_json_bytes().unwrap();
    Package3 { device_id: DEVICE.to_owned(), response, package3_sha256: package3_digest(&body), received_at, arrival }
}

fn package3(codes: &[u16]) -> Package3 {
    package3_at(codes, Arrival::Direct, Instant::now())
}

/// The commands of an encoded Package#2, as wire JSON.
fn commands_of(package2: &[u8]) -> Vec<Value> {
    let value: Value = serde_json::from_slice(package2).unwrap();
    value["CMD"].as_array().unwrap().clone()
}

fn exec(index: usize) -> Value {
    json!(["EXEC", format!("urn:oma:mo:oma-fumo:1.0/fw{index}/Update")])
}

async fn record(store: &Arc<dyn Store>, id: CommandId) -> CommandRecord {
    store.get_command(DEVICE, id).await.unwrap().unwrap()
}

/// Opens session `session_id` on `driver`: its Package#2 is CONT and the first queued command.
async fn open(driver: &SessionDriver, session_id: &str) -> OpenSession {
    let opened = driver.open(DEVICE, session_id.to_owned(), InitiationPackage::default(), None, START).await.unwrap();
    let commands = commands_of(&opened.package2);
    assert_eq!(commands[0][0], "CONT", "{commands:?}");
    opened.session.expect("the session stays open")
}

#[tokio::test]
async fn a_package3_sent_again_after_its_package2_was_lost_gets_that_package2_without_a_second_step() {
    let (store, _directory, ids) = world(3).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    let first = driver.answer(&mut session, package3(&[200, 200]), START + 1).await.unwrap();
    assert_eq!(commands_of(&first.package2), vec![exec(1)]);
    let stored_before = store.get_session(DEVICE, "s1").await.unwrap().unwrap();

    // Two statuses cannot answer a Package#2 of one command: it is the same Package#3 again.
    let again = driver.answer(&mut session, package3(&[200, 200]), START + 2).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(store.get_session(DEVICE, "s1").await.unwrap().unwrap(), stored_before, "nothing written");
    assert_eq!(record(&store, ids[1]).await.attempts, 1, "the command was not sent twice");
    assert_eq!(record(&store, ids[2]).await.state, CommandState::Queued);
    assert!(!session.is_finished());
}

#[tokio::test]
async fn the_same_bytes_as_a_genuine_answer_are_an_answer_once_the_package2_went_straight_back() {
    let (store, _directory, ids) = world(3).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    driver.answer(&mut session, package3(&[200, 200]), START + 1).await.unwrap();
    // This Package#2 goes back through a forwarding node, which may not pass it on.
    let relayed = package3_at(&[200], Arrival::Forwarded, Instant::now());
    let third = driver.answer(&mut session, relayed, START + 2).await.unwrap();
    assert_eq!(commands_of(&third.package2), vec![exec(2)]);

    // The same bytes with as many statuses: taken for a retransmission once, as the Package#2 may be lost...
    let resent = driver.answer(&mut session, package3(&[200]), START + 3).await.unwrap();
    assert_eq!(resent, third);
    assert_eq!(record(&store, ids[2]).await.state, CommandState::Sent);
    // ...then, that Package#2 having gone straight back to the device, as its answer.
    let last = driver.answer(&mut session, package3(&[200]), START + 4).await.unwrap();
    assert_eq!(commands_of(&last.package2), vec![json!(["END"])]);
    assert!(last.ended && session.is_finished());
    for id in ids {
        assert_eq!(record(&store, id).await.state, CommandState::Done);
    }
}

#[tokio::test]
async fn a_retransmission_that_overtook_its_own_package2_is_not_its_answer() {
    let (store, _directory, ids) = world(3).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    driver.answer(&mut session, package3(&[200, 200]), START + 1).await.unwrap();
    let sent_early = Instant::now();
    let third = driver.answer(&mut session, package3(&[200]), START + 2).await.unwrap();
    assert_eq!(commands_of(&third.package2), vec![exec(2)]);

    // Received before the Package#2 it would answer was produced: the device had not seen it.
    let overtaking = package3_at(&[200], Arrival::Direct, sent_early);
    assert_eq!(driver.answer(&mut session, overtaking, START + 3).await.unwrap(), third);
    assert_eq!(record(&store, ids[2]).await.state, CommandState::Sent);
    let answer = driver.answer(&mut session, package3(&[200]), START + 4).await.unwrap();
    assert!(answer.ended);
    assert_eq!(record(&store, ids[2]).await.state, CommandState::Done);
}

#[tokio::test]
async fn after_end_the_last_package3_gets_end_again_and_any_other_gets_gone() {
    let (store, _directory, _ids) = world(1).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    let end = driver.answer(&mut session, package3(&[200, 200]), START + 1).await.unwrap();
    assert!(end.ended && session.is_finished());

    // On the session that ended here, and on any node from the stored final state.
    assert_eq!(driver.answer(&mut session, package3(&[200, 200]), START + 2).await.unwrap(), end);
    let stored = match driver.stored_session(DEVICE, "s1", 10).await.unwrap() {
        StoredSession::Ended(state) => state,
        other => panic!("{other:?}"),
    };
    let (elsewhere, _) = node(&store, "b", &["b"]);
    assert_eq!(elsewhere.answer_ended(stored.clone(), package3(&[200, 200]), START + 3).await.unwrap(), end);
    let other = elsewhere.answer_ended(stored, package3(&[200]), START + 3).await;
    assert!(matches!(other, Err(DriverError::SessionGone)), "{other:?}");
    let other = driver.answer(&mut session, package3(&[500]), START + 4).await;
    assert!(matches!(other, Err(DriverError::SessionGone)), "{other:?}");
}

#[tokio::test]
async fn a_node_that_takes_the_lease_over_replays_what_the_dead_node_sent_then_steps() {
    let (store, _directory, ids) = world(3).await;
    let (first_node, first_host) = node(&store, "a", &["a"]);
    let mut session = open(&first_node, "s1").await;
    let sent = first_node.answer(&mut session, package3(&[200, 200]), START + 1).await.unwrap();

    // Node a is gone; b rehydrates the session and gets the Package#3 whose Package#2 was lost with a.
    let (second_node, _) = node(&store, "b", &["b"]);
    let StoredSession::Open(state) = second_node.stored_session(DEVICE, "s1", 10).await.unwrap() else { panic!() };
    let mut adopted = OpenSession::rehydrated(state);
    assert_eq!(second_node.answer(&mut adopted, package3(&[200, 200]), START + 2).await.unwrap(), sent);
    assert_eq!(record(&store, ids[1]).await.attempts, 1);
    let next = second_node.answer(&mut adopted, package3(&[200]), START + 3).await.unwrap();
    assert_eq!(commands_of(&next.package2), vec![exec(2)]);

    // Node a comes back believing b alive: the lease is b's, the step belongs there.
    *first_host.live.lock().unwrap() = vec!["a".to_owned(), "b".to_owned()];
    let refused = first_node.answer(&mut session, package3(&[200]), START + 4).await;
    assert!(matches!(&refused, Err(DriverError::Elsewhere { node_id }) if node_id == "b"), "{refused:?}");
    assert!(session.is_finished());
}

#[tokio::test]
async fn a_take_over_reads_the_state_another_node_moved_on() {
    let (store, _directory, ids) = world(3).await;
    let (first_node, _) = node(&store, "a", &["a"]);
    let mut stale = open(&first_node, "s1").await;
    // b takes the session over while a is thought dead, and answers its Package#3.
    let (second_node, _) = node(&store, "b", &["b"]);
    let StoredSession::Open(state) = second_node.stored_session(DEVICE, "s1", 10).await.unwrap() else { panic!() };
    let mut adopted = OpenSession::rehydrated(state);
    let moved_on = second_node.answer(&mut adopted, package3(&[200, 200]), START + 1).await.unwrap();

    // b dies before the Package#2 reaches the device; a takes the lease back with its stale state:
    // it reads the stored state and sends b's Package#2 again rather than step the old one.
    let again = first_node.answer(&mut stale, package3(&[200, 200]), START + 2).await.unwrap();
    assert_eq!(again, moved_on);
    assert_eq!(record(&store, ids[1]).await.attempts, 1);
    // And steps from the stored state from then on.
    let next = first_node.answer(&mut stale, package3(&[200]), START + 3).await.unwrap();
    assert_eq!(commands_of(&next.package2), vec![exec(2)]);
    assert_eq!(record(&store, ids[1]).await.state, CommandState::Done);
}

#[tokio::test]
async fn a_second_package1_while_the_first_session_is_open_ends_it_and_requeues_its_commands() {
    let (store, _directory, ids) = world(2).await;
    let (driver, host) = node(&store, "a", &["a"]);
    let first = open(&driver, "s1").await;
    assert_eq!(record(&store, ids[0]).await.session_id.as_deref(), Some("s1"));

    // The device retried its Package#1 while the first was in flight: s1 ends under the device's lock.
    let second = driver.open(DEVICE, "s2".to_owned(), InitiationPackage::default(), None, START + 1).await.unwrap();
    assert_eq!(commands_of(&second.package2)[1], exec(0), "the requeued command goes in the new session");
    assert_eq!(*host.ended.lock().unwrap(), vec!["s1".to_owned()]);
    let ended = store.get_session(DEVICE, first.session_id()).await.unwrap().unwrap();
    assert!(ended.ended && ended.awaiting.is_empty());
    // s1 got no Package#3: its sending was no attempt, so the command is on its first attempt again.
    let resent = record(&store, ids[0]).await;
    assert_eq!((resent.attempts, resent.session_id.as_deref()), (1, Some("s2")));

    // A previous session the caller ended itself is not ended again.
    let (other, other_host) = node(&store, "a", &["a"]);
    other.supersede_stored(DEVICE, "s2", START + 2).await.unwrap();
    other.open(DEVICE, "s3".to_owned(), InitiationPackage::default(), Some("s2"), START + 3).await.unwrap();
    assert!(other_host.ended.lock().unwrap().is_empty());
    assert!(store.get_session(DEVICE, "s2").await.unwrap().unwrap().ended);
}

#[tokio::test]
async fn a_superseded_session_counts_no_attempt_before_its_first_package3_and_does_after() {
    let (store, _directory, ids) = world(2).await;
    let (driver, _) = node(&store, "a", &["a"]);
    // Package#1 after Package#1, more than max_attempts times: the command is never used up.
    for round in 0..5 {
        let mut session = open(&driver, &format!("s{round}")).await;
        assert_eq!(record(&store, ids[0]).await.attempts, 1);
        driver.supersede(&mut session, START + 1).await.unwrap();
        assert!(session.is_finished());
        let requeued = record(&store, ids[0]).await;
        assert_eq!((requeued.state, requeued.attempts), (CommandState::Queued, 0), "round {round}");
    }

    // Once a Package#3 arrived, the Package#2 it answered reached the device: superseding counts the attempt.
    let mut session = open(&driver, "s-answered").await;
    let next = driver.answer(&mut session, package3(&[200, 200]), START + 2).await.unwrap();
    assert_eq!(commands_of(&next.package2), vec![exec(1)]);
    driver.supersede(&mut session, START + 3).await.unwrap();
    let requeued = record(&store, ids[1]).await;
    assert_eq!((requeued.state, requeued.attempts), (CommandState::Queued, 1));

    // A timer expiry counts it too.
    let mut silent = open(&driver, "s-silent").await;
    driver.expire(&mut silent, START + TIMEOUT).await.unwrap();
    assert_eq!(record(&store, ids[1]).await.attempts, 2);
}

#[tokio::test]
async fn a_commit_under_a_lease_that_moved_writes_nothing_and_is_fenced() {
    let (inner, _directory, ids) = world(2).await;
    let racing = Interposed::new(inner.clone(), TakeOverBeforeCommit::default());
    let (driver, host) = node(&(racing.clone() as Arc<dyn Store>), "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    let before = inner.get_session(DEVICE, "s1").await.unwrap().unwrap();

    // Node b takes the device's lease between this step's load and its commit.
    *racing.interposer().armed.lock().unwrap() = true;
    let fenced = driver.answer(&mut session, package3(&[200, 200]), START + 1).await;
    assert!(matches!(fenced, Err(DriverError::Fenced)), "{fenced:?}");
    assert!(session.is_finished());
    assert_eq!(inner.get_session(DEVICE, "s1").await.unwrap().unwrap(), before, "nothing written");
    assert_eq!(record(&inner, ids[0]).await.state, CommandState::Sent);
    assert_eq!(record(&inner, ids[1]).await.state, CommandState::Queued);
    assert!(host.full.lock().unwrap().is_empty());
}

#[tokio::test]
async fn expiry_requeues_what_the_session_awaited_whether_by_timer_or_by_a_late_package3() {
    let (store, _directory, ids) = world(2).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    assert_eq!(driver.expires_in(&session, START + 1_000), TIMEOUT - 1_000);
    driver.expire(&mut session, START + TIMEOUT).await.unwrap();
    assert!(session.is_finished());
    assert_eq!(record(&store, ids[0]).await.state, CommandState::Queued);
    assert!(store.get_session(DEVICE, "s1").await.unwrap().unwrap().ended);
    // Expiring it again is nothing to do.
    driver.expire(&mut OpenSession::rehydrated(session.state().clone()), START + TIMEOUT).await.unwrap();

    let mut late = open(&driver, "s2").await;
    let expired = driver.answer(&mut late, package3(&[200, 200]), START + TIMEOUT + 1).await;
    assert!(matches!(expired, Err(DriverError::Expired)), "{expired:?}");
    assert!(late.is_finished());
    let requeued = record(&store, ids[0]).await;
    assert_eq!((requeued.state, requeued.attempts), (CommandState::Queued, 2));
}

#[tokio::test]
async fn a_full_outbox_refuses_the_step_writes_nothing_and_tells_the_node() {
    let (store, _directory, _ids) =
        store_with(StoreOptions { outbox_limit_per_shard: 0, ..StoreOptions::default() }, 1).await;
    let (driver, host) = node(&store, "a", &["a"]);
    let refused = driver.open(DEVICE, "s1".to_owned(), InitiationPackage::default(), None, START).await;
    assert!(matches!(refused, Err(DriverError::OutboxFull { .. })), "{refused:?}");
    assert_eq!(host.full.lock().unwrap().len(), 1);
    assert!(host.accepted.lock().unwrap().is_empty());
    assert!(store.get_session(DEVICE, "s1").await.unwrap().is_none());
}

#[tokio::test]
async fn a_committed_step_reports_its_outbox_shards() {
    let (store, _directory, _ids) = world(1).await;
    let (driver, host) = node(&store, "a", &["a"]);
    open(&driver, "s1").await;
    assert_eq!(*host.accepted.lock().unwrap(), vec![0]);
}

#[tokio::test]
async fn lookups_and_refusals() {
    let (store, _directory, _ids) = world(1).await;
    let (driver, _) = node(&store, "a", &["a"]);
    let mut session = open(&driver, "s1").await;
    assert!(matches!(driver.stored_session(DEVICE, "nope", 10).await, Err(DriverError::UnknownSession)));
    assert!(matches!(driver.stored_session("IMEI:2", "s1", 10).await, Err(DriverError::UnknownSession)));
    let mut stranger = package3(&[200, 200]);
    stranger.device_id = "IMEI:2".to_owned();
    assert!(matches!(driver.answer(&mut session, stranger, START + 1).await, Err(DriverError::WrongDevice)));
    assert!(!session.is_finished());
    let miscount = driver.answer(&mut session, package3(&[200]), START + 1).await;
    assert!(matches!(miscount, Err(DriverError::Refused(SessionError::StatusCountMismatch { .. }))), "{miscount:?}");
    assert!(!session.is_finished(), "a refused package leaves the session open");

    store.delete_device(DEVICE).await.unwrap();
    let gone = driver.answer(&mut session, package3(&[200, 200]), START + 2).await;
    assert!(matches!(gone, Err(DriverError::UnknownDevice)), "{gone:?}");
    assert!(session.is_finished());
}

#[test]
fn every_state_of_the_session_gets_the_replay() {
    let state = |id: &str| SessionState {
        id: id.to_owned(),
        device_id: DEVICE.to_owned(),
        started_at: 0,
        last_activity: 0,
        packages: 1,
        awaiting: Vec::new(),
        ended: false,
        commands_answered: 0,
        replay: Some(PackageReplay { package3_sha256: "old".to_owned(), package2: "{}".to_owned() }),
    };
    let mut batch = WriteBatch { sessions: vec![state("s1"), state("s2")], ..WriteBatch::default() };
    set_replay(&mut batch, "s1", None);
    assert_eq!(batch.sessions[0].replay, None);
    assert!(batch.sessions[1].replay.is_some(), "another session's state is left alone");
}

/// The real store, except that once armed, another node ("b") takes the device's lease over just
/// before the next fenced commit: the interleaving of a node presumed dead that was only slow.
#[derive(Default)]
struct TakeOverBeforeCommit {
    armed: Mutex<bool>,
}

#[async_trait]
impl Interpose for TakeOverBeforeCommit {
    async fn commit(&self, inner: &dyn Store, batch: WriteBatch) -> Result<(), StoreError> {
        let take_over = std::mem::take(&mut *self.armed.lock().unwrap());
        if let (true, Some(fence)) = (take_over, &batch.fence) {
            let other = LeaseRequest { node_id: "b".to_owned(), ttl: 30_000, live_nodes: vec!["b".to_owned()], now: 0 };
            let loaded = inner.load_session(&fence.device_id, &[], 1, &other).await?;
            assert!(matches!(loaded, SessionLoad::Loaded(_)), "b took the lease over");
        }
        inner.commit(batch).await
    }
}
