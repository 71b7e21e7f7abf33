//! Checks of the Redis engine beyond the conformance suite, run on a standalone server and on a cluster alike.

use std::collections::BTreeSet;
use std::sync::Arc;

use omadm_core::bus::Topic;
use omadm_core::clock::now_millis;
use omadm_core::cluster::{Fence, Lease, LeaseRequest};
use omadm_core::model::{CommandState, SentCommand, SessionOutcome};
use omadm_core::store::conformance::{alert, device, ended_session, event, get_command, open_session};
use omadm_core::store::{RedisStore, SessionLoad, Store, StoreError, WriteBatch};

const TTL: u64 = 60_000;

pub fn request(node: &str, live: &[&str]) -> LeaseRequest {
    LeaseRequest {
        node_id: node.to_owned(),
        ttl: TTL,
        live_nodes: live.iter().map(|id| (*id).to_owned()).collect(),
        now: now_millis(),
    }
}

async fn granted(
    store: &RedisStore,
    device_id: &str,
    awaiting: &[u64],
    request: &LeaseRequest,
) -> Box<omadm_core::store::SessionSnapshot> {
    match store.load_session(device_id, awaiting, 10, request).await.unwrap() {
        SessionLoad::Loaded(snapshot) => snapshot,
        other => panic!("expected a grant for {}, got {other:?}", request.node_id),
    }
}

/// Two stores are two gateway nodes on the same Redis: a lease held by one is
/// refused to the other while it is live, taken over when it is not; the old
/// holder's commit is then fenced and writes nothing; concurrent loads from
/// both nodes leave exactly one holder.
pub async fn fencing_across_two_nodes(node_a: &RedisStore, node_b: &RedisStore) {
    let (a, b) = ("node-a", "node-b");
    let device_id = "fence-two-nodes";
    node_a.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    node_a
        .enqueue_commands(
            device_id,
            vec![get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man"), get_command("urn:oma:mo:oma-dm-devinfo:1.2//Mod")],
            1,
        )
        .await
        .unwrap();
    let session = open_session("fence-two-nodes-s", device_id, 100);

    let first = granted(node_a, device_id, &[], &request(a, &[a, b])).await;
    let held = node_b.load_session(device_id, &[], 10, &request(b, &[a, b])).await.unwrap();
    assert_eq!(held, SessionLoad::LeaseHeld { node_id: a.to_owned(), epoch: first.lease.epoch });
    node_a
        .commit(WriteBatch {
            sessions: vec![session.clone()],
            fence: Some(Fence::of(&first.lease, TTL, false)),
            ..WriteBatch::default()
        })
        .await
        .unwrap();

    // Node b believes a dead: it takes the lease over with the next epoch.
    let taken = granted(node_b, device_id, &[], &request(b, &[b])).await;
    assert_eq!(
        taken.lease,
        Lease { device_id: device_id.to_owned(), node_id: b.to_owned(), epoch: first.lease.epoch + 1 }
    );
    assert_eq!(taken.queued.len(), 2);

    // Node a, not knowing, commits its step: fenced, nothing written, no event.
    let mut stale_step = session.clone();
    stale_step.packages = 2;
    let mut sent = taken.queued[0].clone();
    sent.state = CommandState::Sent;
    let stale = WriteBatch {
        sessions: vec![stale_step],
        commands: vec![sent.clone()],
        events: vec![event("fence-two-nodes-e", Topic::Results, device_id)],
        fence: Some(Fence::of(&first.lease, TTL, false)),
        ..WriteBatch::default()
    };
    let shard = node_a.outbox_shard_of(device_id);
    let waiting = node_a.outbox_lengths(&[shard]).await.unwrap();
    match node_a.commit(stale).await {
        Err(StoreError::Fenced { device_id: fenced }) => assert_eq!(fenced, device_id),
        other => panic!("the old holder must be fenced, got {other:?}"),
    }
    assert_eq!(node_b.get_session(device_id, &session.id).await.unwrap(), Some(session.clone()));
    assert_eq!(node_b.get_command(device_id, sent.id).await.unwrap().unwrap().state, CommandState::Queued);
    assert_eq!(node_b.outbox_lengths(&[shard]).await.unwrap(), waiting);

    // The new holder's step applies.
    let mut step = session.clone();
    step.packages = 2;
    node_b
        .commit(WriteBatch {
            sessions: vec![step.clone()],
            commands: vec![sent.clone()],
            fence: Some(Fence::of(&taken.lease, TTL, false)),
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(node_a.get_session(device_id, &session.id).await.unwrap(), Some(step));

    // Both nodes race for a fresh device: one wins, every other load meets its lease.
    let raced = "fence-race";
    node_a.commit(WriteBatch { devices: vec![device(raced)], ..WriteBatch::default() }).await.unwrap();
    let loads = (0..20).map(|index| {
        let (store, node) = if index % 2 == 0 { (node_a, a) } else { (node_b, b) };
        async move { (node, store.load_session(raced, &[], 10, &request(node, &[a, b])).await.unwrap()) }
    });
    let results = futures_util::future::join_all(loads).await;
    let winners: BTreeSet<(String, u64)> = results
        .iter()
        .map(|(node, load)| match load {
            SessionLoad::Loaded(snapshot) => {
                assert_eq!(snapshot.lease.node_id, *node);
                (snapshot.lease.node_id.clone(), snapshot.lease.epoch)
            }
            SessionLoad::LeaseHeld { node_id, epoch } => (node_id.clone(), *epoch),
            SessionLoad::UnknownDevice => panic!("the device is registered"),
        })
        .collect();
    assert_eq!(winners.len(), 1, "one holder under one epoch: {winners:?}");
}

/// A Package#3 exchange on the owner: `load_session` then `commit` (session,
/// command outcomes, mirror, alert, events, lease renewal) are 2 requests to
/// Redis; so is the last exchange that ends the session and releases the lease.
pub async fn package_exchange_is_two_round_trips(store: &RedisStore) {
    let device_id = "hot-path-1";
    let node = "hot-node";
    store.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    store
        .enqueue_commands(device_id, (0..4).map(|_| get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man")).collect(), 1)
        .await
        .unwrap();
    let mut session = open_session("hot-path-s", device_id, 100);
    store.commit(WriteBatch { sessions: vec![session.clone()], ..WriteBatch::default() }).await.unwrap();

    let mut awaiting: Vec<u64> = Vec::new();
    for package in 0..3 {
        let before = store.round_trips();
        let snapshot = granted(store, device_id, &awaiting, &request(node, &[node])).await;
        let last = package == 2;
        let mut batch = WriteBatch::default();
        for mut answered in snapshot.awaiting.clone() {
            answered.state = CommandState::Done;
            answered.status = Some(200);
            batch.events.push(event(&format!("hot-result-{}", answered.id), Topic::Results, device_id));
            batch.commands.push(answered);
        }
        session.awaiting.clear();
        awaiting.clear();
        if !last {
            for mut next in snapshot.queued.iter().take(2).cloned() {
                next.state = CommandState::Sent;
                session.awaiting.push(SentCommand { command_id: Some(next.id), command: next.command.clone() });
                awaiting.push(next.id);
                batch.commands.push(next);
            }
        }
        session.packages += 1;
        batch.sessions.push(session.clone());
        batch.mirrors.push((device_id.to_owned(), snapshot.mirror.clone()));
        batch.alerts.push(alert(device_id, snapshot.next_alert_id));
        if last {
            batch.ended_sessions.push(ended_session(&session, 900, SessionOutcome::Ended));
        }
        batch.fence = Some(Fence::of(&snapshot.lease, TTL, last));
        store.commit(batch).await.unwrap();
        assert_eq!(store.round_trips() - before, 2, "package {package}: load_session + commit");
    }
    assert_eq!(store.pending_count(device_id).await.unwrap(), 0);
    let shard = store.outbox_shard_of(device_id);
    assert_eq!(store.outbox_lengths(&[shard]).await.unwrap(), vec![4]);
    assert_eq!(store.list_sessions(device_id, 1).await.unwrap()[0].outcome, SessionOutcome::Ended);
    // The lease was released with the last commit: another node gets it at once.
    let next = granted(store, device_id, &[], &request("other-node", &["other-node", node])).await;
    assert_eq!(next.lease.node_id, "other-node");
}

/// A lease whose PX ran out while nobody took it over: its holder's commit still applies (no
/// other node can have written: a grant to one raises the epoch) and brings the lease back; the
/// holder loading again keeps its epoch. Once another node was granted it, the old fence is stale.
pub async fn a_lapsed_lease_still_admits_its_holder(store: &RedisStore) {
    let device_id = "lapsed-1";
    let (a, b) = ("lapsed-node-a", "lapsed-node-b");
    store.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    let short = LeaseRequest { ttl: 300, ..request(a, &[a, b]) };
    let first = granted(store, device_id, &[], &short).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;

    let session = open_session("lapsed-s", device_id, 1);
    let batch = WriteBatch {
        sessions: vec![session.clone()],
        fence: Some(Fence::of(&first.lease, TTL, false)),
        ..WriteBatch::default()
    };
    store.commit(batch).await.unwrap();
    assert_eq!(store.get_session(device_id, &session.id).await.unwrap(), Some(session));
    let held = store.load_session(device_id, &[], 10, &request(b, &[a, b])).await.unwrap();
    assert_eq!(
        held,
        SessionLoad::LeaseHeld { node_id: a.to_owned(), epoch: first.lease.epoch },
        "renewed by the commit"
    );

    // Lapsed again, the holder loads again: same epoch.
    let again = granted(store, device_id, &[], &short).await;
    assert_eq!(again.lease, first.lease);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(granted(store, device_id, &[], &request(a, &[a, b])).await.lease, first.lease);

    // Lapsed, and another node is granted it meanwhile: the old fence is stale.
    let other = "lapsed-2";
    store.commit(WriteBatch { devices: vec![device(other)], ..WriteBatch::default() }).await.unwrap();
    let lapsing = granted(store, other, &[], &LeaseRequest { ttl: 300, ..request(a, &[a, b]) }).await;
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let taken = granted(store, other, &[], &request(b, &[a, b])).await;
    assert_eq!(taken.lease.epoch, lapsing.lease.epoch + 1);
    let stale = WriteBatch { fence: Some(Fence::of(&lapsing.lease, TTL, false)), ..WriteBatch::default() };
    assert!(matches!(store.commit(stale).await, Err(StoreError::Fenced { .. })));

    // Deleting the device drops its holder: the last fence is stale, the epoch goes on.
    assert!(store.delete_device(device_id).await.unwrap());
    let stale = WriteBatch { fence: Some(Fence::of(&first.lease, TTL, false)), ..WriteBatch::default() };
    assert!(matches!(store.commit(stale).await, Err(StoreError::Fenced { .. })));
    store.commit(WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() }).await.unwrap();
    assert_eq!(granted(store, device_id, &[], &request(b, &[a, b])).await.lease.epoch, first.lease.epoch + 1);
}

/// `open_sessions` finds the open sessions of devices all over the keyspace and none of the ended ones.
pub async fn open_sessions_of_many_devices(store: Arc<dyn Store>) {
    let mut expected = BTreeSet::new();
    for index in 0..60 {
        let device_id = format!("open-many-{index}");
        let state = open_session(&format!("open-many-s-{index}"), &device_id, 10);
        let mut batch = WriteBatch { sessions: vec![state.clone()], ..WriteBatch::default() };
        if index % 3 == 0 {
            batch.ended_sessions.push(ended_session(&state, 20, SessionOutcome::Expired));
        } else {
            expected.insert(state.id.clone());
        }
        store.commit(batch).await.unwrap();
    }
    // A device whose last open session ends leaves the index.
    let closing = open_session("open-many-s-1", "open-many-1", 10);
    store
        .commit(WriteBatch {
            ended_sessions: vec![ended_session(&closing, 30, SessionOutcome::Ended)],
            ..WriteBatch::default()
        })
        .await
        .unwrap();
    expected.remove("open-many-s-1");
    let found: BTreeSet<String> = store
        .open_sessions()
        .await
        .unwrap()
        .into_iter()
        .filter(|state| state.id.starts_with("open-many-s-"))
        .map(|state| state.id)
        .collect();
    assert_eq!(found, expected);
}

/// Package#3 exchanges per second (load_session + commit of a step with a session, a command
/// outcome, an event and the fence), from one caller and from `concurrency` callers on their own
/// devices. Prints the rates; run by hand for the numbers in docs/cluster.md.
pub async fn exchange_rates(
    store: Arc<RedisStore>,
    label: &'static str,
    concurrency: usize,
    exchanges_per_caller: usize,
) {
    for callers in [1, concurrency] {
        let started = std::time::Instant::now();
        let tasks = (0..callers).map(|caller| {
            let store = Arc::clone(&store);
            async move {
                let device_id = format!("rate-{label}-{callers}-{caller}");
                store.commit(WriteBatch { devices: vec![device(&device_id)], ..WriteBatch::default() }).await.unwrap();
                let commands = (0..exchanges_per_caller).map(|_| get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man"));
                store.enqueue_commands(&device_id, commands.collect(), 1).await.unwrap();
                let mut session = open_session(&format!("{device_id}-s"), &device_id, 1);
                for exchange in 0..exchanges_per_caller {
                    let snapshot = granted(&store, &device_id, &[], &request("rate-node", &["rate-node"])).await;
                    let mut sent = snapshot.queued[0].clone();
                    sent.state = CommandState::Done;
                    session.packages += 1;
                    let batch = WriteBatch {
                        sessions: vec![session.clone()],
                        commands: vec![sent],
                        events: vec![event(&format!("{device_id}-e-{exchange}"), Topic::Results, &device_id)],
                        fence: Some(Fence::of(&snapshot.lease, TTL, false)),
                        ..WriteBatch::default()
                    };
                    store.commit(batch).await.unwrap();
                }
            }
        });
        let handles: Vec<_> = tasks.map(tokio::spawn).collect();
        for handle in handles {
            handle.await.unwrap();
        }
        let elapsed = started.elapsed();
        // The rate includes each caller's registration and enqueue (3 requests) before its exchanges.
        let rate = (callers * exchanges_per_caller) as f64 / elapsed.as_secs_f64();
        println!(
            "{label}: {callers} callers, {} exchanges in {elapsed:?}: {rate:.0} exchanges/s",
            callers * exchanges_per_caller
        );
    }
}

/// The requests each Store call sends (docs/cluster.md lists them): checked, not assumed.
/// On a cluster, calls that read many slots send `CLUSTER SLOTS` and one pipeline per node (1 to 3 here).
pub async fn round_trips_of_every_call(store: &RedisStore) {
    let cluster = store.is_cluster();
    let per_node = |count: u64| if cluster { (2..=4).contains(&count) } else { count == 1 };
    let device_id = "trips-1";
    // Three devices, in three different slots on a cluster.
    let mut spread: Vec<String> = Vec::new();
    for index in 0.. {
        let candidate = format!("trips-spread-{index}");
        let shard = store.outbox_shard_of(&candidate);
        if !cluster || spread.iter().all(|known| store.outbox_shard_of(known) != shard) {
            spread.push(candidate);
        }
        if spread.len() == 3 {
            break;
        }
    }
    let node = omadm_core::cluster::NodeInfo { id: "trips-node".to_owned(), internal_url: "http://x".to_owned() };

    macro_rules! trips {
        ($call:expr) => {{
            let before = store.round_trips();
            let _ = $call.await.unwrap();
            store.round_trips() - before
        }};
    }
    // A device registered outside a session step: on a cluster its stored index terms are read (one GET), the
    // device index and the terms it joins written (the slot table read, then one pipeline per node they are
    // on: 1 to 3), then its group.
    let register = WriteBatch { devices: vec![device(device_id)], ..WriteBatch::default() };
    let registering = trips!(store.commit(register));
    assert!(if cluster { (4..=6).contains(&registering) } else { registering == 1 }, "registering: {registering}");
    assert_eq!(trips!(store.get_device(device_id)), 1, "get_device");
    assert_eq!(
        trips!(store.enqueue_commands(device_id, vec![get_command("urn:oma:mo:oma-dm-devinfo:1.2//Man")], 1)),
        2
    );
    assert_eq!(trips!(store.get_command(device_id, 1)), 1, "get_command");
    assert_eq!(trips!(store.list_commands(device_id, None, 10)), 1, "list_commands");
    assert_eq!(trips!(store.queued_commands(device_id, 10)), 1, "queued_commands");
    assert_eq!(trips!(store.pending_count(device_id)), 1, "pending_count");
    assert_eq!(trips!(store.get_session(device_id, "trips-s")), 1, "get_session");
    assert_eq!(trips!(store.load_session(device_id, &[1], 10, &request("trips-node", &["trips-node"]))), 1);
    assert_eq!(trips!(store.list_sessions(device_id, 10)), 1, "list_sessions");
    assert_eq!(trips!(store.get_mirror(device_id)), 1, "get_mirror");
    assert_eq!(trips!(store.list_alerts(device_id, 10)), 1, "list_alerts");
    assert_eq!(trips!(store.next_alert_id(device_id)), 1, "next_alert_id");
    let item = omadm_core::model::RepositoryItem {
        path: "trips/x".to_owned(),
        content_type: "text/plain".to_owned(),
        blob: "items/stored-elsewhere".to_owned(),
        size: 1,
        sha256: "0".repeat(64),
        source: omadm_core::model::ContentSource::Operator,
        device_id: None,
        stored_at: 1,
    };
    // On a cluster the upload quota counters (a slot of their own) are released in a step before the write.
    assert_eq!(trips!(store.put_content(item)), if cluster { 2 } else { 1 }, "put_content");
    assert_eq!(trips!(store.get_content("trips/x")), 1, "get_content");
    assert_eq!(trips!(store.delete_content("trips/x")), if cluster { 2 } else { 1 }, "delete_content");
    assert_eq!(trips!(store.upload_usage(device_id)), 1, "upload_usage");
    assert_eq!(trips!(store.heartbeat(&node, TTL, now_millis())), 1, "heartbeat");
    assert_eq!(trips!(store.leave("trips-node")), 1, "leave");

    // A notification request: on a cluster its request id -> device key first (a slot of its own), then the
    // device's slot with the record and the event. Reading it back finds the device, then the record.
    let record = omadm_core::model::NotificationRecord {
        request_id: "trips-request".to_owned(),
        device_id: device_id.to_owned(),
        requested_at: now_millis(),
        requested_by: "operator".to_owned(),
        request_mos: false,
        outcome: None,
        ..omadm_core::model::NotificationRecord::default()
    };
    let requested = WriteBatch {
        notifications: vec![record],
        events: vec![event("trips-request-e", Topic::Notifications, device_id)],
        ..WriteBatch::default()
    };
    assert_eq!(trips!(store.commit(requested)), if cluster { 2 } else { 1 }, "commit of a notification request");
    assert_eq!(trips!(store.get_notification("trips-request")), 2, "get_notification");
    assert_eq!(trips!(store.get_notification("trips-none")), 1, "get_notification of an unknown request");
    store.ack_outbox(store.outbox_shard_of(device_id), &["trips-request-e".to_owned()]).await.unwrap();

    // Three devices' sessions and events in one batch: one script per slot on a cluster.
    let mut batch = WriteBatch::default();
    for spread_id in &spread {
        batch.sessions.push(open_session(&format!("{spread_id}-s"), spread_id, 1));
        batch.events.push(event(&format!("{spread_id}-e"), Topic::Results, spread_id));
    }
    assert_eq!(trips!(store.commit(batch)), if cluster { 3 } else { 1 }, "commit across 3 slots");
    let shard = store.outbox_shard_of(&spread[0]);
    assert_eq!(trips!(store.outbox(shard, 10)), 1, "outbox");
    assert_eq!(trips!(store.ack_outbox(shard, &[format!("{}-e", spread[0])])), 1, "ack_outbox");
    let shards: Vec<u32> = spread.iter().map(|id| store.outbox_shard_of(id)).collect();
    assert!(per_node(trips!(store.outbox_lengths(&shards))), "outbox_lengths");
    let open_sessions = trips!(store.open_sessions());
    assert!(
        if cluster { (4..=8).contains(&open_sessions) } else { open_sessions == 2 },
        "open_sessions: {open_sessions}"
    );
    let listed = trips!(store.list_devices(&Default::default(), None, 10));
    assert!(if cluster { (3..=5).contains(&listed) } else { listed == 2 }, "list_devices: {listed}");
    // On a cluster: its terms read, its script, then the device index and its terms (the slot table read, then
    // one pipeline per node).
    let deleting = trips!(store.delete_device(device_id));
    assert!(if cluster { (4..=6).contains(&deleting) } else { deleting == 1 }, "delete_device: {deleting}");
}
