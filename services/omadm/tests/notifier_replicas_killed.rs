//! Cluster mode under a crash: two `omadm notifier` replicas in one consumer group on Kafka (tansu), beside an
//! `omadm gateway` on one redis-server; one replica is SIGKILLed while a bulk request is being dispatched, and
//! still every request ends with exactly one final outcome (none lost) and every device gets its Package#0.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_testkit::http::JsonAnswer as _;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use omadm_core::bus::{BusOptions, Topic};
use omadm_proto::notification::{unwrap_push, verify};
use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::ports::{free_port, free_udp_port};
use omadm_testkit::process::{self, Output, Spawned};
use omadm_testkit::redis::RedisServer;
use omadm_testkit::wait::eventually;
use serde_json::{Value, json};

const TOKEN: &str = "notifier-replicas-killed-admin-token";
const SERVER_ID: &str = "dms.killed.example";
/// Enough devices that dispatching them takes a while, so the kill lands mid-run; one socket each (one request
/// per device), so a device's datagrams tell us it was woken without decoding a device id Package#0 lacks.
const DEVICES: usize = 600;
/// Partitions of every topic: several per replica, so both hold some and the survivor has several to take over.
const PARTITIONS: &str = "6";
/// Small batches: progress is visible (outcomes are stored and counted batch by batch) and the kill is likely to
/// land between the store of a batch's outcomes and the commit of its offsets or in the middle of a batch.
const BATCH_SIZE: &str = "5";
/// Devices of each warm-up round.
const WARM_UP_DEVICES: usize = 12;
/// Final outcomes the victim must have stored before it is killed: it is demonstrably dispatching.
const KILL_AFTER_OUTCOMES: u64 = 40;
/// The whole recovery, from the kill to every request's final outcome; the group evicts a killed member after the
/// consumer's 10 s session timeout.
const RECOVERY: Duration = Duration::from_secs(90);

/// A device of the test: its id, its own AuthNoti secret and the UDP socket it is notified on.
struct Device {
    id: String,
    secret: String,
    socket: UdpSocket,
}

impl Device {
    /// Device number `index`, on a loopback socket of its own.
    fn new(index: usize) -> Device {
        Device {
            id: format!("IMEI:99{index:06}"),
            secret: format!("noti-secret-{index}"),
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }
    }
}

/// One `omadm notifier` process, its ops URL and the address its datagrams leave from.
struct Replica {
    process: Spawned,
    ops: String,
    udp_source: SocketAddr,
}

fn millis_now() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// Starts an `omadm notifier` replica on the shared backends, sending from a UDP port of its own, once its banner
/// is out (the group is joined then).
fn start_replica(redis: &RedisServer, broker: &KafkaBroker, prefix: &str, name: &str) -> Replica {
    let ops_port = free_port();
    let udp_source: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let mut command = process::command(env!("CARGO_BIN_EXE_omadm"));
    command
        .arg("notifier")
        .args(["--store", &redis.url(), "--bus", &broker.url(), "--topic-prefix", prefix])
        .args(["--kafka-partitions", PARTITIONS, "--node-id", name])
        .args(["--ops-listen", &format!("127.0.0.1:{ops_port}"), "--server-id", SERVER_ID])
        .args(["--notifier-udp-bind", &udp_source.to_string(), "--notifier-batch-size", BATCH_SIZE])
        .args(broker.client_setting_args())
        .env("RUST_LOG", "warn");
    let mut process = Spawned::spawn(command, Output::Lines);
    let banner = process.wait_for_line(Duration::from_secs(60), |line| line.starts_with("ops: "));
    assert!(banner[0].starts_with("omadm notifier: consuming notification.requested"), "{banner:?}");
    Replica { process, ops: format!("http://127.0.0.1:{ops_port}"), udp_source }
}

/// The final outcomes (sent, failed, collapsed; not `retrying`) a replica has stored, from its `/metrics`.
async fn final_outcomes_stored(client: &reqwest::Client, replica: &Replica) -> u64 {
    let text = client.get(format!("{}/metrics", replica.ops)).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|line| line.starts_with("omadm_notifications_total{") && !line.contains("outcome=\"retrying\""))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum::<f64>() as u64
}

/// Registers every device through the operator API, a few at a time.
async fn register(client: &reqwest::Client, base: &str, devices: &[Device]) {
    for chunk in devices.chunks(25) {
        let mut registrations = tokio::task::JoinSet::new();
        for device in chunk {
            let request = client
                .put(format!("{base}/api/v1/devices/{}", device.id))
                .bearer_auth(TOKEN)
                .json(&json!({"password": "pw", "auth_secret": device.secret,
                              "notify_address": device.socket.local_addr().unwrap()}));
            registrations.spawn(async move {
                let answer = request.send().await.unwrap();
                assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
            });
        }
        registrations.join_all().await;
    }
}

/// Asks for one notification per device with `POST /api/v1/notifications` (at most 1,000 ids a call); returns
/// device id -> request id.
async fn request_notifications(client: reqwest::Client, base: String, ids: Vec<String>) -> BTreeMap<String, String> {
    let mut requests = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        let answer = client
            .post(format!("{base}/api/v1/notifications"))
            .bearer_auth(TOKEN)
            .json(&json!({"device_ids": chunk}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["unknown"], json!([]), "{answer}");
        let request_ids = answer["request_ids"].as_array().unwrap();
        assert_eq!(request_ids.len(), chunk.len(), "{answer}");
        // `request_ids` is in request order, which is the order of the listed ids.
        for (device_id, request_id) in chunk.iter().zip(request_ids) {
            requests.insert(device_id.clone(), request_id.as_str().unwrap().to_owned());
        }
    }
    requests
}

/// Waits until the record of each of `request_ids` is in a final state (sent, failed or collapsed), and returns
/// them by request id.
async fn wait_until_final(
    client: &reqwest::Client,
    base: &str,
    request_ids: BTreeSet<String>,
    within: Duration,
) -> BTreeMap<String, Value> {
    let mut pending = request_ids;
    let mut records = BTreeMap::new();
    eventually("every request to reach a final state", within, async || {
        for request_id in pending.clone() {
            let record: Value =
                client.get(format!("{base}/api/v1/notifications/{request_id}")).bearer_auth(TOKEN).json_answer().await;
            if ["sent", "failed", "collapsed"].contains(&record["state"].as_str().unwrap()) {
                pending.remove(&request_id);
                records.insert(request_id, record);
            }
        }
        pending.is_empty()
    })
    .await;
    records
}

/// One delivery of a final outcome event.
#[derive(Debug)]
struct Outcome {
    event_id: String,
    /// When the notifier decided it (the send's time for `notification.sent`).
    at: u64,
    /// The partition of the notifications topic: the request's own (both are keyed by the device id).
    partition: i32,
}

/// The final outcome events (`...:sent|failed|collapsed`; not a retried attempt's `...:attempt:{n}:failed`) on
/// the notifications topic, read from the beginning by a group of the test's own: request id -> every delivery,
/// repeats included. Reads until each of `request_ids` has one and no event came
/// for two seconds, so late repeats of a batch handled again are seen too.
async fn final_outcome_events(
    broker: &KafkaBroker,
    prefix: &str,
    request_ids: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Outcome>> {
    const FINAL_TYPES: [&str; 3] = ["notification.sent", "notification.failed", "notification.collapsed"];
    let options = BusOptions {
        topic_prefix: prefix.to_owned(),
        partitions: PARTITIONS.parse().unwrap(),
        kafka_settings: broker.client_settings(),
        ..BusOptions::default()
    };
    let bus = omadm_core::bus::open_with(&broker.url(), &options).await.unwrap();
    let mut subscription = bus.subscribe("notifier-replicas-killed-observer", &[Topic::Notifications]).await.unwrap();
    let mut outcomes: BTreeMap<String, Vec<Outcome>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_event = Instant::now();
    loop {
        let complete = request_ids.iter().all(|id| outcomes.contains_key(id));
        if complete && last_event.elapsed() > Duration::from_secs(2) {
            return outcomes;
        }
        assert!(
            Instant::now() < deadline,
            "final outcomes on Kafka for {} of {} requests",
            outcomes.len(),
            request_ids.len()
        );
        for delivery in subscription.next_batch(500, Duration::from_millis(200)).await.unwrap() {
            last_event = Instant::now();
            let event = &delivery.event;
            if !FINAL_TYPES.contains(&event.event_type.as_str()) || event.id.contains(":attempt:") {
                continue;
            }
            let request_id = event.payload["request_id"].as_str().unwrap().to_owned();
            let event = delivery.event;
            let outcome = Outcome { event_id: event.id, at: event.timestamp, partition: delivery.partition };
            outcomes.entry(request_id).or_default().push(outcome);
        }
    }
}

/// Every Package#0 waiting on `device`'s socket, each verified with the device's own secret: (sender, NOTIFICATION-ID).
fn received(device: &Device) -> Vec<(SocketAddr, u16)> {
    device.socket.set_nonblocking(true).unwrap();
    let now = u32::try_from(millis_now() / 1000).unwrap();
    let mut buffer = [0u8; 2048];
    let mut packages = Vec::new();
    loop {
        match device.socket.recv_from(&mut buffer) {
            Ok((length, from)) => {
                let package = unwrap_push(&buffer[..length]).unwrap();
                // Signed at most a few minutes ago: the whole test takes less.
                let notification = verify(package, Some(device.secret.as_bytes()), now, Some(300))
                    .unwrap_or_else(|error| panic!("{}: a Package#0 that does not verify: {error:?}", device.id));
                assert_eq!(notification.server_id.as_deref(), Some(SERVER_ID));
                packages.push((from, notification.notification_id.unwrap()));
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return packages,
            Err(error) => panic!("{}: {error}", device.id),
        }
    }
}

#[test]
fn every_request_ends_with_one_final_outcome_when_a_notifier_replica_is_killed_mid_run() {
    let started = Instant::now();
    let redis = RedisServer::start();
    let broker = KafkaBroker::start();
    let prefix = omadm_testkit::kafka::unique_prefix();
    let (port, internal_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let mut gateway = process::command(env!("CARGO_BIN_EXE_omadm"));
    gateway
        .arg("gateway")
        .args(["--listen", &format!("127.0.0.1:{port}"), "--internal-listen", &format!("127.0.0.1:{internal_port}")])
        .args(["--ops-listen", "none", "--store", &redis.url(), "--bus", &broker.url(), "--topic-prefix", &prefix])
        .args(["--kafka-partitions", PARTITIONS, "--content", "memory://"])
        .args(broker.client_setting_args())
        .args(["--admin-token", TOKEN, "--public-url", &base, "--server-id", SERVER_ID])
        .env("RUST_LOG", "warn");
    let mut gateway = Spawned::spawn(gateway, Output::Lines);
    gateway.wait_for_line(Duration::from_secs(60), |line| line.starts_with("try: "));
    let mut replicas = vec![
        start_replica(&redis, &broker, &prefix, "notifier-a"),
        start_replica(&redis, &broker, &prefix, "notifier-b"),
    ];

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::new();

    // Warm-up: the group hands every partition to the member that joins first and shares them only once the
    // other's join has rebalanced it. Rounds of fresh devices (one request each, like the run's) until both
    // replicas have stored outcomes, so both hold partitions when the run starts.
    let mut devices = Vec::new();
    let mut requests = BTreeMap::new();
    runtime.block_on(eventually("both replicas to hold partitions", Duration::from_secs(90), async || {
        let round: Vec<Device> = (0..WARM_UP_DEVICES).map(|index| Device::new(devices.len() + index)).collect();
        register(&client, &base, &round).await;
        let ids = round.iter().map(|device| device.id.clone()).collect();
        let round_requests = request_notifications(client.clone(), base.clone(), ids).await;
        let round_ids: BTreeSet<String> = round_requests.values().cloned().collect();
        wait_until_final(&client, &base, round_ids, Duration::from_secs(30)).await;
        devices.extend(round);
        requests.extend(round_requests);
        let mut stored = Vec::new();
        for replica in &replicas {
            stored.push(final_outcomes_stored(&client, replica).await);
        }
        eprintln!("warm-up round: outcomes stored per replica {stored:?}");
        stored.iter().all(|count| *count > 0)
    }));
    let warmed_up: Vec<u64> = runtime.block_on(async {
        let mut stored = Vec::new();
        for replica in &replicas {
            stored.push(final_outcomes_stored(&client, replica).await);
        }
        stored
    });

    let warm_up_requests = requests.len();
    let run: Vec<Device> = (0..DEVICES).map(|index| Device::new(devices.len() + index)).collect();
    runtime.block_on(register(&client, &base, &run));
    // The bulk request runs while the replicas dispatch: they start on the first requests it commits.
    let ids: Vec<String> = run.iter().map(|device| device.id.clone()).collect();
    devices.extend(run);
    let requesting = runtime.spawn(request_notifications(client.clone(), base.clone(), ids));

    // The victim is the first replica seen to have stored some of the run's outcomes: it is dispatching the run.
    let mut victim = None;
    runtime.block_on(eventually("a replica to store outcomes of the run", Duration::from_secs(60), async || {
        for (index, replica) in replicas.iter().enumerate() {
            if final_outcomes_stored(&client, replica).await >= warmed_up[index] + KILL_AFTER_OUTCOMES {
                victim = Some(index);
                return true;
            }
        }
        false
    }));
    let victim = victim.unwrap();
    let survivor = 1 - victim;
    // SIGKILL: no shutdown code runs, the group is not told, the batch in hand is neither stored nor committed.
    replicas[victim].process.kill();
    let killed_at = millis_now();
    let killed = Instant::now();
    let survivor_before = runtime.block_on(final_outcomes_stored(&client, &replicas[survivor]));
    eprintln!("killed replica {victim} at {:?}; the survivor had stored {survivor_before}", started.elapsed());

    let run_requests = runtime.block_on(requesting).unwrap();
    assert_eq!(run_requests.len(), DEVICES);
    requests.extend(run_requests);
    assert_eq!(requests.len(), devices.len());

    // Every request's record reaches a final state: the survivor takes the victim's partitions over once the group
    // has evicted it, and handles their uncommitted requests.
    let records = runtime.block_on(wait_until_final(&client, &base, requests.values().cloned().collect(), RECOVERY));
    eprintln!("every request final {:?} after the kill", killed.elapsed());
    for (device_id, request_id) in &requests {
        let record = &records[request_id];
        assert_eq!(record["device_id"].as_str(), Some(device_id.as_str()), "{record}");
        // Each device has one request and every socket takes datagrams: nothing to collapse into, nothing fails.
        assert_eq!((record["state"].as_str(), record["transport"].as_str()), (Some("sent"), Some("udp")), "{record}");
    }

    // On the topic: exactly one distinct final outcome id per request. A batch the victim stored but had not
    // committed is handled again by the survivor, so an id may come twice (at least once); two different final
    // ids for one request would be two outcomes.
    let request_ids: BTreeSet<String> = requests.values().cloned().collect();
    let outcomes = runtime.block_on(final_outcome_events(&broker, &prefix, &request_ids));
    let mut repeated = 0;
    for (device_id, request_id) in &requests {
        let events = &outcomes[request_id];
        let distinct: BTreeSet<&str> = events.iter().map(|outcome| outcome.event_id.as_str()).collect();
        assert_eq!(
            distinct.into_iter().collect::<Vec<_>>(),
            [format!("notification:{device_id}:{request_id}:sent")],
            "{request_id}: {events:?}"
        );
        repeated += usize::from(events.len() > 1);
    }
    let unrequested: Vec<&String> = outcomes.keys().filter(|id| !request_ids.contains(*id)).collect();
    assert!(unrequested.is_empty(), "outcomes of requests nobody made: {unrequested:?}");

    // The kill landed mid-run: some requests had their outcome before it (the victim's events all predate its
    // death), and some only after it, from the survivor.
    let first_outcome_at = |request_id: &String| outcomes[request_id].iter().map(|outcome| outcome.at).min().unwrap();
    let done_before_kill = request_ids.iter().filter(|id| first_outcome_at(id) <= killed_at).count();
    let total = request_ids.len();
    eprintln!("{done_before_kill} of {total} requests had an outcome at the kill; {repeated} had theirs repeated");
    assert!(done_before_kill > warm_up_requests, "the kill came before the run's first outcomes");
    assert!(done_before_kill < total, "all {total} requests were done at the kill");
    let survivor_after = runtime.block_on(final_outcomes_stored(&client, &replicas[survivor]));
    assert!(survivor_after > survivor_before, "the survivor handled nothing after the kill: {survivor_after}");

    // Every device got a Package#0 signed with its own secret. Duplicates are allowed: a request the victim sent
    // before its outcome was stored or its batch committed is sent again by the survivor, with a new id.
    let mut senders = BTreeSet::new();
    let mut served_by: BTreeMap<String, BTreeSet<SocketAddr>> = BTreeMap::new();
    let mut woken_twice = 0;
    for device in &devices {
        let packages = received(device);
        served_by.insert(device.id.clone(), packages.iter().map(|(from, _)| *from).collect());
        assert!(!packages.is_empty(), "{}: no Package#0", device.id);
        woken_twice += usize::from(packages.len() > 1);
        senders.extend(packages.iter().map(|(from, _)| *from));
        // The record names one of the packages the device got (the last stored of them).
        let record = &records[&requests[&device.id]];
        let recorded = record["notification_id"].as_u64().unwrap();
        assert!(packages.iter().any(|(_, id)| u64::from(*id) == recorded), "{}: {packages:?} {record}", device.id);
    }
    eprintln!("{woken_twice} devices woken more than once; senders {senders:?}");
    // Both replicas dispatched: the victim before its death, the survivor before and after it.
    let sources: BTreeSet<SocketAddr> = replicas.iter().map(|replica| replica.udp_source).collect();
    assert_eq!(senders, sources);

    // The survivor took the victim's partitions over: requests on a partition the victim was serving in the run
    // (it sent to a device of that partition after the warm-up) got their first outcome only after the kill. Those come after any batch the
    // victim left uncommitted on that partition, so by now its repeats have been read too.
    let victim_partitions: BTreeSet<i32> = devices[warm_up_requests..]
        .iter()
        .filter(|device| served_by[&device.id].contains(&replicas[victim].udp_source))
        .flat_map(|device| outcomes[&requests[&device.id]].iter().map(|outcome| outcome.partition))
        .collect();
    let taken_over = request_ids
        .iter()
        .filter(|id| outcomes[*id].iter().any(|outcome| victim_partitions.contains(&outcome.partition)))
        .filter(|id| first_outcome_at(id) > killed_at)
        .count();
    eprintln!("the victim served partitions {victim_partitions:?}; the survivor took {taken_over} requests over");
    assert!(taken_over > 0, "no request of the victim's partitions {victim_partitions:?} was handled after the kill");

    let exit = replicas[survivor].process.terminate(Duration::from_secs(20)).expect("the survivor did not stop");
    assert!(exit.success(), "{exit:?}");
    gateway.kill();
    eprintln!("wall time {:?}", started.elapsed());
}
