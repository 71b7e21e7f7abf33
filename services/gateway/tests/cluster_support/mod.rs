//! What the cluster tests share: gateway nodes in this process on one real redis-server, and a small DM device.
//!
//! Each node is what `omadm gateway` runs (`omadm_gateway::node`, the same wiring and stop order): its own
//! store connection, a public and an internal listener on 127.0.0.1, membership (heartbeats), and the outbox
//! relay of the shards it owns, all relays publishing to one JSONL bus. "Killing" a node stops its listeners, heartbeats and relay at
//! once without leaving the cluster, as SIGKILL would; its peers find out by
//! a refused connection or a lapsed heartbeat.

// Test scaffolding: a failed setup step should fail the test loudly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

pub mod take_over;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use omadm_core::auth::{DEFAULT_REALM, credentials_for};
use omadm_core::bus::Bus;
use omadm_core::bus::relay::RelayConfig;
use omadm_core::clock;
use omadm_core::cluster::{NodeInfo, rendezvous_owner};
use omadm_core::model::{CommandId, CommandOrigin, Device, NewCommand};
use omadm_core::session::SessionConfig;
use omadm_core::store::{Store, WriteBatch};
use omadm_gateway::cluster::{Cluster, ClusterConfig};
use omadm_gateway::device::DeviceEdge;
use omadm_gateway::node::{Node as GatewayNode, NodeListeners, NodeSettings};
use omadm_gateway::server::ServerOptions;
use omadm_gateway::{BootstrapConfig, GatewayConfig};
use omadm_proto::command::Command;
use omadm_proto::package::media::{INITIATION_JSON, REQUEST_JSON, RESPONSE_JSON};
use omadm_proto::package::{CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

pub const DEVICE_ID_HEADER: &str = "OMADM-DevID";
pub const PASSWORD: &str = "s3cret";
pub const ADMIN_TOKEN: &str = "cluster-admin-token";
pub const INTERNAL_TOKEN: &str = "cluster-internal-token-0123456789";

/// The timings of the test nodes: quick heartbeats, so a dead node is noticed within 1.5 s.
pub fn cluster_config(node_id: &str, internal_url: &str) -> ClusterConfig {
    ClusterConfig {
        node_id: node_id.to_owned(),
        internal_url: internal_url.to_owned(),
        internal_token: INTERNAL_TOKEN.to_owned(),
        heartbeat_interval: Duration::from_millis(200),
        node_ttl: Duration::from_millis(1500),
        lease_ttl: Duration::from_secs(10),
        forward_timeout: Duration::from_secs(5),
        sole_process: false,
    }
}

fn gateway_config(base: &str) -> GatewayConfig {
    GatewayConfig {
        admin_token: ADMIN_TOKEN.to_owned(),
        // The same on every node: a nonce one node issues verifies on another.
        nonce_key: b"cluster nonce key, shared".to_vec(),
        session: SessionConfig {
            supported_alert_mime_types: Vec::new(),
            ..omadm_testkit::config::session(&format!("{base}/dm/s/"))
        },
        bootstrap: BootstrapConfig {
            server_id: "omadm-cluster-test".to_owned(),
            server_name: "omadm cluster test".to_owned(),
            ..omadm_testkit::config::bootstrap()
        },
        ..omadm_testkit::config::gateway(base)
    }
}

/// One gateway node, wired and stopped as `omadm gateway` does it ([`omadm_gateway::node::Node`]).
pub struct Node {
    pub id: String,
    /// Public base URL (`http://127.0.0.1:port`).
    pub base: String,
    pub internal_base: String,
    pub store: Arc<dyn Store>,
    pub edge: DeviceEdge,
    running: Mutex<Option<GatewayNode>>,
}

impl Node {
    /// Starts node `id` on `store` (its own connection), publishing to `bus`.
    pub async fn start(id: &str, store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Node {
        Self::start_with(id, store, bus, true).await
    }

    /// Like [`Node::start`]; without `relay` nothing moves the outbox to the bus (as while the broker is down).
    pub async fn start_with(id: &str, store: Arc<dyn Store>, bus: Arc<dyn Bus>, relay: bool) -> Node {
        let public = TcpListener::bind("127.0.0.1:0").unwrap();
        let internal = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", public.local_addr().unwrap());
        let internal_base = format!("http://{}", internal.local_addr().unwrap());
        let settings = NodeSettings {
            gateway: gateway_config(&base),
            cluster: cluster_config(id, &internal_base),
            server: ServerOptions {
                workers: Some(1),
                shutdown_timeout: Duration::from_secs(1),
                ..ServerOptions::default()
            },
            relay: relay.then(RelayConfig::default),
        };
        let listeners = NodeListeners { public, internal: Some(internal), ops: None };
        // No cluster test reads the repository: each node's content engine is its own.
        let content = omadm_core::content::ContentEngine::open("memory://").unwrap();
        let node = GatewayNode::start(store.clone(), bus, content, settings, listeners).await.unwrap();
        let edge = node.edge().clone();
        Node { id: id.to_owned(), base, internal_base, store, edge, running: Mutex::new(Some(node)) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        self.edge.cluster()
    }

    /// Stops everything at once without leaving the cluster, as SIGKILL would (nothing is drained).
    pub async fn kill(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(node) = running {
            node.kill().await;
        }
    }

    /// The graceful stop `omadm gateway` runs on SIGTERM, in its order.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some(node) = running {
            node.stop().await;
        }
    }

    /// Waits until this node's view holds exactly `count` live nodes.
    pub async fn wait_for_live_nodes(&self, count: usize) {
        for _ in 0..100 {
            if self.cluster().live_nodes().len() == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} sees {:?}, not {count} nodes", self.id, self.cluster().live_nodes());
    }
}

/// The nodes of a test and their backends.
pub struct TestCluster {
    pub nodes: Vec<Node>,
    pub redis_url: String,
    pub bus: Arc<dyn Bus>,
    pub events_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl TestCluster {
    /// Nodes named `ids` on the Redis at `redis_url`, every one seeing all the others.
    pub async fn start(redis_url: &str, ids: &[&str]) -> TestCluster {
        Self::start_with(redis_url, ids, |_, store| store).await
    }

    /// Like [`TestCluster::start`], with the store of each node (by id) replaced by what `wrap` makes of it.
    pub async fn start_with(
        redis_url: &str,
        ids: &[&str],
        wrap: impl Fn(&str, Arc<dyn Store>) -> Arc<dyn Store>,
    ) -> TestCluster {
        let temp = tempfile::tempdir().unwrap();
        let events_dir = temp.path().join("events");
        let bus = omadm_core::bus::open(events_dir.to_str().unwrap(), "omadm.").await.unwrap();
        let mut nodes = Vec::new();
        for id in ids {
            let store = wrap(id, omadm_core::store::open(redis_url).await.unwrap());
            nodes.push(Node::start(id, store, bus.clone()).await);
        }
        for node in &nodes {
            node.wait_for_live_nodes(ids.len()).await;
        }
        TestCluster { nodes, redis_url: redis_url.to_owned(), bus, events_dir, _temp: temp }
    }

    pub fn node(&self, id: &str) -> &Node {
        self.nodes.iter().find(|node| node.id == id).unwrap()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.nodes[0].store
    }

    /// A device id whose rendezvous owner among all the nodes is `owner`, registered with [`PASSWORD`].
    pub async fn register_device_owned_by(&self, owner: &str, tag: &str) -> String {
        let infos: Vec<NodeInfo> =
            self.nodes.iter().map(|node| NodeInfo { id: node.id.clone(), internal_url: String::new() }).collect();
        let device_id = (0..10_000)
            .map(|index| format!("IMEI:{tag}{index}"))
            .find(|device_id| rendezvous_owner(&infos, device_id).map(|node| node.id.as_str()) == Some(owner))
            .unwrap();
        let device = Device::new(&device_id, credentials_for(&device_id, DEFAULT_REALM, PASSWORD), clock::now_millis());
        self.store().commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
        device_id
    }

    /// Queues `count` EXEC commands for `device_id`; returns their ids.
    pub async fn enqueue_execs(&self, device_id: &str, count: usize) -> Vec<CommandId> {
        let commands = (0..count)
            .map(|index| NewCommand {
                command: Command::from_json(&serde_json::json!(["EXEC", format!("urn:oma:mo:test:1.0//Op{index}")]))
                    .unwrap(),
                origin: CommandOrigin::Operator,
                campaign_id: None,
            })
            .collect();
        self.store().enqueue_commands(device_id, commands, clock::now_millis()).await.unwrap()
    }

    /// The `command.result` events published so far (every relay writes to the one JSONL bus).
    pub fn result_events(&self) -> Vec<serde_json::Value> {
        let path = self.events_dir.join("omadm.results.jsonl");
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|event| event["type"] == "command.result")
            .collect()
    }

    /// Waits until the results of `device_id` on the bus name `expected` distinct commands.
    pub async fn wait_for_results(&self, device_id: &str, expected: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let events: Vec<serde_json::Value> =
                self.result_events().into_iter().filter(|event| event["key"] == device_id).collect();
            let mut ids: Vec<&str> = events.iter().map(|event| event["id"].as_str().unwrap()).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() >= expected {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the results of {device_id} did not all reach the bus");
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().unwrap()
}

/// A device that answers every command: 404 to GETs (it has no such node), 200 to anything else.
pub struct TestDevice {
    pub id: String,
    client: reqwest::Client,
}

impl TestDevice {
    pub fn new(id: &str) -> Self {
        TestDevice { id: id.to_owned(), client: http() }
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn basic(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{}:{PASSWORD}", self.id));
        format!("Basic {token}")
    }

    /// POSTs a Package#1 with Basic credentials to `node`.
    pub async fn package1(&self, node: &Node) -> reqwest::Response {
        let body = InitiationPackage { supported_objects: None, alert: None }.to_json_bytes().unwrap();
        self.client
            .post(node.url("/dm"))
            .header(CONTENT_TYPE, INITIATION_JSON)
            .header(DEVICE_ID_HEADER, &self.id)
            .header(AUTHORIZATION, self.basic())
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// The Package#3 answering `reply`, encoded.
    pub fn answer(reply: &RequestPackage) -> Vec<u8> {
        let statuses = reply
            .commands
            .iter()
            .map(|command| match command {
                Command::Get(_) => CommandStatus::new(StatusCode::NOT_FOUND),
                _ => CommandStatus::new(StatusCode::OK),
            })
            .collect();
        ResponsePackage::new(statuses).to_json_bytes().unwrap()
    }

    /// POSTs a Package#3 body to the session `path` (`/dm/s/{sid}`) on `node`.
    pub async fn package3(&self, node: &Node, path: &str, body: &[u8]) -> reqwest::Response {
        self.client
            .post(node.url(path))
            .header(CONTENT_TYPE, RESPONSE_JSON)
            .header(DEVICE_ID_HEADER, &self.id)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }
}

/// The Package#2 of a 200 answer, and its raw bytes.
pub async fn package2(response: reqwest::Response) -> (RequestPackage, Vec<u8>) {
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).map(|value| value.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap().to_vec();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(content_type.as_deref(), Some(REQUEST_JSON));
    (RequestPackage::parse(&body, &Default::default()).unwrap(), body)
}

/// The path of the session URL the CONT of a first Package#2 names (`/dm/s/{sid}`).
pub fn session_path(first: &RequestPackage) -> String {
    let Some(Command::Cont(cont)) = first.commands.first() else { panic!("CONT first: {first:?}") };
    let url = cont.server_uri().to_string();
    let start = url.find("/dm/s/").unwrap();
    url[start..].to_owned()
}
