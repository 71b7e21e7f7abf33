//! Three built `omadm gateway` processes on one redis-server and one Kafka-protocol broker (tansu): a device's
//! session forwarded to its owner, the owner killed with SIGKILL mid-session, the session completing on another
//! process with each command result on `omadm.results` once, and a SIGTERM'd process leaving the cluster at once.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use omadm_testkit::http::JsonAnswer as _;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use omadm_core::bus::{BusOptions, Topic};
use omadm_core::cluster::{NodeInfo, rendezvous_owner};
use omadm_proto::command::Command as DmCommand;
use omadm_proto::package::media::{INITIATION_JSON, RESPONSE_JSON};
use omadm_proto::package::{CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use omadm_testkit::kafka::KafkaBroker;
use omadm_testkit::ports::free_port;
use omadm_testkit::process::{self, Output, Spawned};
use omadm_testkit::redis::RedisServer;
use serde_json::{Value, json};

const TOKEN: &str = "gateway-cluster-admin-token";
const PASSWORD: &str = "s3cret";
const KAFKA_SETTING: &str = "batch.num.messages=1";

/// A running `omadm gateway`, killed when dropped.
struct Gateway {
    id: String,
    base: String,
    /// The ops listener: `/metrics`.
    ops_base: String,
    process: Spawned,
}

impl Gateway {
    fn start(id: &str, redis: &RedisServer, kafka: &KafkaBroker, prefix: &str) -> Gateway {
        let (port, internal_port, ops_port) = (free_port(), free_port(), free_port());
        let base = format!("http://127.0.0.1:{port}");
        let ops_base = format!("http://127.0.0.1:{ops_port}");
        let mut command = process::command(env!("CARGO_BIN_EXE_omadm"));
        command
            .arg("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--internal-listen", &format!("127.0.0.1:{internal_port}")])
            .args(["--ops-listen", &format!("127.0.0.1:{ops_port}")])
            // The documented aliases of --store and --bus, as older deployments name them.
            .args(["--redis", &redis.url(), "--kafka", kafka.brokers(), "--kafka-setting", KAFKA_SETTING])
            // These tests read no repository content: an engine of each process's own is enough.
            .args(["--content", "memory://"])
            .args(["--admin-token", TOKEN, "--public-url", &base, "--node-id", id, "--topic-prefix", prefix])
            .args(["--heartbeat-interval-ms", "200", "--node-ttl-ms", "10000", "--workers", "1"])
            .args(["--max-commands-per-package", "2"])
            .env("RUST_LOG", "warn");
        let mut process = Spawned::spawn(command, Output::Lines);
        let banner = process.wait_for_line(Duration::from_secs(60), |line| line.starts_with("try: "));
        assert!(banner[0].starts_with(&format!("omadm gateway: listening on {base}")), "{banner:?}");
        assert!(banner.iter().any(|line| line.starts_with(&format!("node: {id} (internal http://127.0.0.1:"))));
        Gateway { id: id.to_owned(), base, ops_base, process }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill_hard(&mut self) {
        self.process.kill();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate(Duration::from_secs(20)).expect("omadm gateway did not stop within 20 s of SIGTERM")
    }
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(&format!("{name} ")).and_then(|value| value.parse().ok()))
}

async fn package2(response: reqwest::Response) -> RequestPackage {
    let status = response.status();
    let body = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    RequestPackage::parse(&body, &Default::default()).unwrap()
}

/// A device that answers GETs with 404 and every other command with 200.
fn answer(reply: &RequestPackage) -> Vec<u8> {
    let statuses = reply
        .commands
        .iter()
        .map(|command| match command {
            DmCommand::Get(_) => CommandStatus::new(StatusCode::NOT_FOUND),
            _ => CommandStatus::new(StatusCode::OK),
        })
        .collect();
    ResponsePackage::new(statuses).to_json_bytes().unwrap()
}

#[test]
fn gateways_share_redis_and_kafka_and_a_session_survives_the_sigkill_of_its_owner() {
    let redis = RedisServer::start();
    let kafka = KafkaBroker::start();
    let prefix = format!("t{}.", std::process::id());
    let mut gateways: Vec<Gateway> =
        ["gw-a", "gw-b", "gw-c"].iter().map(|id| Gateway::start(id, &redis, &kafka, &prefix)).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap();

    let nodes: Vec<NodeInfo> =
        gateways.iter().map(|gateway| NodeInfo { id: gateway.id.clone(), internal_url: String::new() }).collect();
    let device_id = (0..10_000)
        .map(|index| format!("IMEI:proc{index}"))
        .find(|device_id| rendezvous_owner(&nodes, device_id).map(|node| node.id.as_str()) == Some("gw-b"))
        .unwrap();
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{device_id}:{PASSWORD}")));

    runtime.block_on(async {
        // Every process sees the three.
        for gateway in &gateways {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text =
                    client.get(format!("{}/metrics", gateway.ops_base)).send().await.unwrap().text().await.unwrap();
                if sample(&text, "omadm_cluster_live_nodes") == Some(3.0) {
                    break;
                }
                assert!(Instant::now() < deadline, "{} does not see 3 nodes", gateway.id);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (a, c) = (&gateways[0], &gateways[2]);
        let registered = client
            .put(a.url(&format!("/api/v1/devices/{device_id}")))
            .bearer_auth(TOKEN)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(registered.status(), 201);
        let commands: Vec<Value> =
            (0..6).map(|index| json!(["EXEC", format!("urn:oma:mo:test:1.0//Op{index}")])).collect();
        let queued = client
            .post(c.url(&format!("/api/v1/devices/{device_id}/commands")))
            .bearer_auth(TOKEN)
            .json(&json!({"commands": commands}))
            .send()
            .await
            .unwrap();
        assert_eq!(queued.status(), 201);
        let ids: Vec<u64> = queued.json::<Value>().await.unwrap()["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap())
            .collect();

        // Package#1 at A: forwarded to B, the owner.
        let body = InitiationPackage { supported_objects: None, alert: None }.to_json_bytes().unwrap();
        let first = package2(
            client
                .post(a.url("/dm"))
                .header("Content-Type", INITIATION_JSON)
                .header("OMADM-DevID", &device_id)
                .header("Authorization", &basic)
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        let Some(DmCommand::Cont(cont)) = first.commands.first() else { panic!("{first:?}") };
        let url = cont.server_uri().to_string();
        assert!(url.starts_with(&gateways[1].base), "the owner (B) wrote the session URL: {url}");
        let path = url[url.find("/dm/s/").unwrap()..].to_owned();
        let session_urls: Vec<String> = gateways.iter().map(|gateway| gateway.url(&path)).collect();
        let send = |gateway: usize, reply: &RequestPackage| {
            client
                .post(&session_urls[gateway])
                .header("Content-Type", RESPONSE_JSON)
                .header("OMADM-DevID", &device_id)
                .body(answer(reply))
                .send()
        };
        let second = package2(send(1, &first).await.unwrap()).await;
        assert!(!second.ends_session());

        // B dies with the session open; C goes on with it.
        gateways[1].kill_hard();
        let mut reply = package2(send(2, &second).await.unwrap()).await;
        let mut packages = 0;
        while !reply.ends_session() {
            packages += 1;
            assert!(packages < 20, "the session does not end");
            reply = package2(send(2, &reply).await.unwrap()).await;
        }
        for id in &ids {
            let record: Value = client
                .get(gateways[0].url(&format!("/api/v1/devices/{device_id}/commands/{id}")))
                .bearer_auth(TOKEN)
                .json_answer()
                .await;
            assert_eq!((record["state"].as_str(), record["attempts"].as_u64()), (Some("done"), Some(1)), "{record}");
        }

        // Each result once on Kafka (a repeat would carry the same event id).
        let options = BusOptions {
            topic_prefix: prefix.clone(),
            kafka_settings: vec![("batch.num.messages".to_owned(), "1".to_owned())],
            ..BusOptions::default()
        };
        let bus = omadm_core::bus::open_with(&format!("kafka://{}", kafka.brokers()), &options).await.unwrap();
        let mut subscription = bus.subscribe("gateway-cluster-test", &[Topic::Results]).await.unwrap();
        let mut by_command: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while by_command.len() < ids.len() {
            assert!(Instant::now() < deadline, "results on Kafka: {by_command:?}");
            for delivery in subscription.next_batch(100, Duration::from_millis(500)).await.unwrap() {
                let event = delivery.event;
                if event.key == device_id && event.event_type == "command.result" {
                    let command_id = event.payload["command_id"].as_u64().unwrap();
                    by_command.entry(command_id).or_default().insert(event.id);
                }
            }
        }
        assert_eq!(by_command.keys().copied().collect::<Vec<_>>(), ids);
        assert!(by_command.values().all(|event_ids| event_ids.len() == 1), "{by_command:?}");
    });

    // SIGTERM: A leaves at once (well within its 10 s node TTL) and exits 0.
    let exit = gateways[0].terminate();
    assert!(exit.success(), "{exit:?}");
    runtime.block_on(async {
        let store = omadm_core::store::open(&redis.url()).await.unwrap();
        let probe = NodeInfo { id: "probe".to_owned(), internal_url: String::new() };
        let live = store.heartbeat(&probe, 1_000, omadm_core::clock::now_millis()).await.unwrap();
        let ids: Vec<&str> = live.iter().map(|node| node.id.as_str()).collect();
        assert!(!ids.contains(&"gw-a"), "{ids:?}");
        assert!(ids.contains(&"gw-c"), "{ids:?}");
        store.leave("probe").await.unwrap();
    });
}
