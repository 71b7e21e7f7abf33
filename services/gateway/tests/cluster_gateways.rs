//! Gateway nodes sharing one real redis-server, over real sockets: forwarding to the owner, a session going on
//! after its owner dies, a stale owner's commit fenced, retransmitted Package#3s, and Redis going away and back.

// Helpers outside #[test] functions fail loudly too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cluster_support::take_over::TakeOver;
use cluster_support::{DEVICE_ID_HEADER, Node, PASSWORD, TestCluster, TestDevice, package2, session_path};
use omadm_core::bus::relay::OutboxRelay;
use omadm_core::clock;
use omadm_core::cluster::LeaseRequest;
use omadm_core::metrics::metrics;
use omadm_core::model::{CommandId, CommandOrigin, CommandState, NewCommand};
use omadm_core::store::WriteBatch;
use omadm_core::store::interpose::Interposed;
use omadm_proto::command::Command;
use omadm_proto::package::InitiationPackage;
use omadm_proto::package::media::INITIATION_JSON;
use omadm_testkit::redis::RedisServer;
use omadm_testkit::redis_cluster::RedisCluster;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

/// Every command of `ids` is done, was sent once, and has exactly one result event id on the bus
/// (repeats of one id are at-least-once delivery; two ids would be a result recorded twice).
async fn each_result_recorded_once(cluster: &TestCluster, device_id: &str, ids: &[CommandId]) {
    for id in ids {
        let record = cluster.store().get_command(device_id, *id).await.unwrap().unwrap();
        assert_eq!(record.state, CommandState::Done, "{record:?}");
        assert_eq!(record.attempts, 1, "{record:?}");
    }
    let events = cluster.wait_for_results(device_id, ids.len()).await;
    let mut by_command: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for event in &events {
        let command_id = event["payload"]["command_id"].as_u64().unwrap();
        by_command.entry(command_id).or_default().insert(event["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(by_command.keys().copied().collect::<Vec<_>>(), ids.to_vec(), "{events:?}");
    for (command_id, event_ids) in by_command {
        assert_eq!(event_ids.len(), 1, "command {command_id} has results {event_ids:?}");
    }
}

/// Answers every Package#2 with a Package#3 sent to `node_for(step)` until END; returns the Package#2s.
async fn run_to_end(
    cluster: &TestCluster,
    device: &TestDevice,
    path: &str,
    mut reply: omadm_proto::package::RequestPackage,
    node_for: impl Fn(usize) -> &'static str,
) -> usize {
    for step in 0..20 {
        if reply.ends_session() {
            return step;
        }
        let body = TestDevice::answer(&reply);
        (reply, _) = package2(device.package3(cluster.node(node_for(step)), path, &body).await).await;
    }
    panic!("the session did not end within 20 packages");
}

fn digest_answer(challenge: &reqwest::Response, device_id: &str) -> String {
    let header = challenge
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|value| value.starts_with("Digest") && value.contains("algorithm=SHA-256"))
        .expect("the owner's Digest challenge reached the device");
    let mut prompt = digest_auth::parse(&header).unwrap();
    let context = digest_auth::AuthContext::new_with_method(
        device_id,
        PASSWORD,
        "/dm",
        Option::<&[u8]>::None,
        digest_auth::HttpMethod::POST,
    );
    prompt.respond(&context).unwrap().to_header_string()
}

#[actix_rt::test]
async fn a_package1_sent_to_a_non_owner_is_forwarded_and_the_session_completes_across_nodes() {
    let redis = RedisServer::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a", "node-b", "node-c"]).await;
    let device_id = cluster.register_device_owned_by("node-b", "fwd").await;
    let commands = cluster.enqueue_execs(&device_id, 3).await;
    let device = TestDevice::new(&device_id);
    let (a, b, c) = (cluster.node("node-a"), cluster.node("node-b"), cluster.node("node-c"));

    // Digest through a non-owner: the owner's challenge is relayed, and the answer verifies on the owner.
    let challenge = device
        .client()
        .post(a.url("/dm"))
        .header(CONTENT_TYPE, INITIATION_JSON)
        .header(DEVICE_ID_HEADER, &device_id)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let authorization = digest_answer(&challenge, &device_id);
    let body = InitiationPackage { supported_objects: None, alert: None }.to_json_bytes().unwrap();
    let response = device
        .client()
        .post(a.url("/dm"))
        .header(CONTENT_TYPE, INITIATION_JSON)
        .header(DEVICE_ID_HEADER, &device_id)
        .header(AUTHORIZATION, authorization)
        .body(body)
        .send()
        .await
        .unwrap();
    let (first, _) = package2(response).await;
    assert_eq!((a.edge.active_sessions(), b.edge.active_sessions(), c.edge.active_sessions()), (0, 1, 0));
    // The owner wrote the CONT URL: its own public URL.
    let Some(Command::Cont(cont)) = first.commands.first() else { panic!("{first:?}") };
    assert!(cont.server_uri().to_string().starts_with(&b.base), "{cont:?}");

    // Every Package#3 goes to node C, which has no actor and forwards to B.
    let path = session_path(&first);
    let packages = run_to_end(&cluster, &device, &path, first, |_| "node-c").await;
    assert!(packages >= 2, "{packages}");
    assert_eq!(c.edge.active_sessions(), 0);
    each_result_recorded_once(&cluster, &device_id, &commands).await;
    let relayed = metrics().forwards.with_label_values(&["relayed"]).get();
    assert!(relayed > packages as u64, "{relayed}");
}

#[actix_rt::test]
async fn a_session_goes_on_after_its_owner_dies_and_each_result_is_recorded_once() {
    let redis = RedisServer::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a", "node-b", "node-c"]).await;
    let device_id = cluster.register_device_owned_by("node-b", "kill").await;
    let commands = cluster.enqueue_execs(&device_id, 6).await;
    let device = TestDevice::new(&device_id);
    let b = cluster.node("node-b");

    let (first, _) = package2(device.package1(b).await).await;
    let path = session_path(&first);
    let (second, _) = package2(device.package3(b, &path, &TestDevice::answer(&first)).await).await;
    assert!(!second.ends_session());
    let takeovers_before = metrics().lease_takeovers.with_label_values::<&str>(&[]).get();

    // B dies with the session open and its lease held. A gets the next Package#3: B refuses the
    // connection, A suspects it, rehydrates the session from Redis and takes the lease over.
    b.kill().await;
    let a = cluster.node("node-a");
    let (third, _) = package2(device.package3(a, &path, &TestDevice::answer(&second)).await).await;
    assert_eq!(a.edge.active_sessions(), 1);
    assert!(metrics().lease_takeovers.with_label_values::<&str>(&[]).get() > takeovers_before);

    // C still believes in B at first: forwards, finds it gone, and the Store says A holds the lease: one more hop.
    run_to_end(&cluster, &device, &path, third, |_| "node-c").await;
    each_result_recorded_once(&cluster, &device_id, &commands).await;
    let sessions = cluster.store().list_sessions(&device_id, 5).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].outcome, omadm_core::model::SessionOutcome::Ended);
}

#[actix_rt::test]
async fn on_redis_cluster_a_forwarded_session_survives_its_owners_death() {
    let redis = RedisCluster::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a", "node-b", "node-c"]).await;
    assert_eq!(cluster.store().outbox_shards(), 16_384);
    let device_id = cluster.register_device_owned_by("node-b", "rc").await;
    let commands = cluster.enqueue_execs(&device_id, 6).await;
    let device = TestDevice::new(&device_id);
    let (a, b) = (cluster.node("node-a"), cluster.node("node-b"));

    // Package#1 and the first Package#3 at A, forwarded to B.
    let (first, _) = package2(device.package1(a).await).await;
    assert_eq!(b.edge.active_sessions(), 1);
    let path = session_path(&first);
    let (second, _) = package2(device.package3(a, &path, &TestDevice::answer(&first)).await).await;
    b.kill().await;
    // The rest at C, which takes the session over; the relays of A and C publish the shards they own.
    run_to_end(&cluster, &device, &path, second, |_| "node-c").await;
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn a_stale_owners_commit_is_fenced_and_the_device_retries_on_the_new_owner() {
    let redis = RedisServer::start();
    let hooked = Interposed::new(omadm_core::store::open(&redis.url()).await.unwrap(), TakeOver::default());
    let for_b = hooked.clone();
    let cluster = TestCluster::start_with(&redis.url(), &["node-a", "node-b"], move |id, store| {
        if id == "node-b" { for_b.clone() } else { store }
    })
    .await;
    let device_id = cluster.register_device_owned_by("node-b", "fence").await;
    let commands = cluster.enqueue_execs(&device_id, 4).await;
    let device = TestDevice::new(&device_id);
    let (a, b) = (cluster.node("node-a"), cluster.node("node-b"));
    let fenced_before = metrics().fenced_steps.with_label_values::<&str>(&[]).get();

    let (first, _) = package2(device.package1(b).await).await;
    let path = session_path(&first);
    let awaited: Vec<u64> = commands.iter().copied().take(2).collect();

    // While B steps the Package#3, A (which presumes B dead) takes the device's lease: B's commit is refused.
    let takeover = LeaseRequest {
        node_id: "node-a".to_owned(),
        ttl: 10_000,
        live_nodes: vec!["node-a".to_owned()],
        now: clock::now_millis(),
    };
    hooked.interposer().take_over_before_next_commit(&device_id, takeover);
    let answer = TestDevice::answer(&first);
    let refused = device.package3(b, &path, &answer).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers().get("retry-after").unwrap(), "1");
    assert!(metrics().fenced_steps.with_label_values::<&str>(&[]).get() > fenced_before);
    // Nothing of the step was written.
    for id in &awaited {
        let record = cluster.store().get_command(&device_id, *id).await.unwrap().unwrap();
        assert_eq!(record.state, CommandState::Sent, "{record:?}");
    }
    let stored = cluster.store().get_session(&device_id, path.rsplit('/').next().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.packages, 1);
    for _ in 0..50 {
        if b.edge.active_sessions() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.edge.active_sessions(), 0, "the fenced actor stops");

    // The device retries at B: the Store says A holds the lease, so B hands the package to A.
    let (second, _) = package2(device.package3(b, &path, &answer).await).await;
    assert_eq!(a.edge.active_sessions(), 1);
    run_to_end(&cluster, &device, &path, second, |_| "node-b").await;
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn a_retransmitted_package3_gets_the_same_package2_and_no_second_result() {
    let redis = RedisServer::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a", "node-b"]).await;
    let device_id = cluster.register_device_owned_by("node-a", "again").await;
    let commands = cluster.enqueue_execs(&device_id, 4).await;
    let device = TestDevice::new(&device_id);
    let (a, b) = (cluster.node("node-a"), cluster.node("node-b"));

    let (first, _) = package2(device.package1(a).await).await;
    let path = session_path(&first);
    let answer = TestDevice::answer(&first);
    let (second, second_bytes) = package2(device.package3(a, &path, &answer).await).await;
    assert!(!second.ends_session());
    let sent: Vec<u64> = commands[2..].to_vec();

    // The Package#2 was lost: the device sends the same Package#3 again, and again gets the same Package#2.
    let (_, again) = package2(device.package3(a, &path, &answer).await).await;
    assert_eq!(again, second_bytes);
    // The owner dies before the device hears back; the retransmission lands on B and is answered from Redis.
    a.kill().await;
    let (_, from_b) = package2(device.package3(b, &path, &answer).await).await;
    assert_eq!(from_b, second_bytes);
    for id in &sent {
        let record = cluster.store().get_command(&device_id, *id).await.unwrap().unwrap();
        assert_eq!((record.state, record.attempts), (CommandState::Sent, 1), "{record:?}");
    }

    // The session goes on at B; the last Package#3 sent twice gets END twice.
    let last_answer = TestDevice::answer(&second);
    let (last, last_bytes) = package2(device.package3(b, &path, &last_answer).await).await;
    assert!(last.ends_session(), "{last:?}");
    let (_, repeated) = package2(device.package3(b, &path, &last_answer).await).await;
    assert_eq!(repeated, last_bytes);
    assert!(metrics().replayed_packages.with_label_values::<&str>(&[]).get() >= 3);
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn redis_going_away_gives_503_and_not_ready_and_both_recover_when_it_is_back() {
    let mut redis = RedisServer::start_durable();
    let cluster = TestCluster::start(&redis.url(), &["node-a"]).await;
    let device_id = cluster.register_device_owned_by("node-a", "down").await;
    let commands = cluster.enqueue_execs(&device_id, 2).await;
    let device = TestDevice::new(&device_id);
    let a = cluster.node("node-a");
    let (first, _) = package2(device.package1(a).await).await;
    let path = session_path(&first);
    let ready = |client: &reqwest::Client| client.get(a.url("/readyz")).send();
    assert_eq!(ready(device.client()).await.unwrap().status(), 200);

    redis.kill();
    let answer = TestDevice::answer(&first);
    let refused = device.package3(a, &path, &answer).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let refused = device.package1(a).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let not_ready = ready(device.client()).await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.headers().contains_key("retry-after"));

    // Back on the same port, with what it acknowledged: the node recovers by itself.
    redis.restart();
    let mut recovered = false;
    for _ in 0..100 {
        if ready(device.client()).await.unwrap().status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "/readyz did not turn 200 again");
    let (second, _) = package2(device.package3(a, &path, &answer).await).await;
    run_to_end(&cluster, &device, &path, second, |_| "node-a").await;
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn the_same_answer_to_consecutive_package2s_is_an_answer_not_a_retransmission() {
    let redis = RedisServer::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a"]).await;
    let device_id = cluster.register_device_owned_by("node-a", "same").await;
    let commands = cluster.enqueue_execs(&device_id, 6).await;
    let device = TestDevice::new(&device_id);
    let (first, _) = package2(device.package1(cluster.node("node-a")).await).await;
    let path = session_path(&first);
    // Package#2s of 2 EXECs each are all answered `[[200], [200]]`: every one is a step of its own.
    let packages = run_to_end(&cluster, &device, &path, first, |_| "node-a").await;
    assert_eq!(packages, 3);
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn after_a_failover_the_same_answer_as_the_last_one_is_taken_for_a_retransmission_once() {
    let redis = RedisServer::start();
    let cluster = TestCluster::start(&redis.url(), &["node-a", "node-b"]).await;
    let device_id = cluster.register_device_owned_by("node-b", "guess").await;
    let commands = cluster.enqueue_execs(&device_id, 6).await;
    let device = TestDevice::new(&device_id);
    let (a, b) = (cluster.node("node-a"), cluster.node("node-b"));
    let (first, _) = package2(device.package1(b).await).await;
    let path = session_path(&first);
    let (second, _) = package2(device.package3(b, &path, &TestDevice::answer(&first)).await).await;
    let (third, third_bytes) = package2(device.package3(b, &path, &TestDevice::answer(&second)).await).await;
    assert_eq!(TestDevice::answer(&second), TestDevice::answer(&third));

    // B dies. A cannot tell the answer to the third Package#2 from a retransmission of the answer to the
    // second (same bytes, as many statuses): B may have died before the third reached the device, so A
    // sends the third again rather than record statuses against commands the device may never have seen.
    b.kill().await;
    let answer = TestDevice::answer(&third);
    let (_, again) = package2(device.package3(a, &path, &answer).await).await;
    assert_eq!(again, third_bytes);
    // The device answers it (the same bytes once more): now it is the answer.
    let (last, _) = package2(device.package3(a, &path, &answer).await).await;
    assert!(last.ends_session(), "{last:?}");
    each_result_recorded_once(&cluster, &device_id, &commands).await;
}

#[actix_rt::test]
async fn a_full_outbox_gives_503_and_not_ready_until_the_relay_drains_it() {
    let redis = RedisServer::start();
    let options = omadm_core::store::StoreOptions { outbox_limit_per_shard: 4, ..Default::default() };
    let store = omadm_core::store::open_with(&redis.url(), &options).await.unwrap();
    let events = tempfile::tempdir().unwrap();
    let bus = omadm_core::bus::open(events.path().to_str().unwrap(), "omadm.").await.unwrap();
    // No relay: the bus is as good as down, and the outbox fills up.
    let node = Node::start_with("node-a", store.clone(), bus.clone(), false).await;
    let device_id = "IMEI:full-outbox";
    let device = omadm_core::model::Device::new(
        device_id,
        omadm_core::auth::credentials_for(device_id, omadm_core::auth::DEFAULT_REALM, PASSWORD),
        clock::now_millis(),
    );
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
    let commands: Vec<NewCommand> = (0..6)
        .map(|index| NewCommand {
            command: Command::from_json(&serde_json::json!(["EXEC", format!("urn:oma:mo:test:1.0//Op{index}")]))
                .unwrap(),
            origin: CommandOrigin::Operator,
            campaign_id: None,
        })
        .collect();
    store.enqueue_commands(device_id, commands, clock::now_millis()).await.unwrap();
    let full_before = metrics().outbox_full.get();
    let device = TestDevice::new(device_id);
    let (mut reply, _) = package2(device.package1(&node).await).await;
    let path = session_path(&reply);

    let mut refused = None;
    for _ in 0..6 {
        let answer = TestDevice::answer(&reply);
        let response = device.package3(&node, &path, &answer).await;
        if response.status() == 503 {
            refused = Some((response, answer));
            break;
        }
        (reply, _) = package2(response).await;
    }
    let (response, answer) = refused.expect("the outbox never filled up");
    assert!(response.headers().contains_key("retry-after"));
    assert!(metrics().outbox_full.get() > full_before);
    let not_ready = device.client().get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert_eq!(not_ready.json::<serde_json::Value>().await.unwrap()["error"], "the outbox is full");

    // The broker is back: the outbox drains, readiness returns by itself, and the refused package goes through.
    let relay = OutboxRelay::spawn(store.clone(), bus.clone());
    relay.drain().await.unwrap();
    let ready = device.client().get(node.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let (next, _) = package2(device.package3(&node, &path, &answer).await).await;
    let mut reply = next;
    while !reply.ends_session() {
        // This node has no waker of that relay: each step's events are drained before the next step.
        relay.drain().await.unwrap();
        (reply, _) = package2(device.package3(&node, &path, &TestDevice::answer(&reply)).await).await;
    }
    let records = store.list_commands(device_id, None, 10).await.unwrap();
    assert!(records.iter().all(|record| record.state == CommandState::Done && record.attempts == 1), "{records:?}");
}
