//! A Redis Cluster of the test's own: 3 primaries (and optionally a replica each) on free loopback ports.
//!
//! Each node is a [`RedisServer`] with `--cluster-enabled yes` (its cluster
//! bus on another free port, `--cluster-port`), no persistence, in a temp
//! dir; `redis-cli --cluster create` assigns the 16,384 slots over the
//! primaries, then the cluster is used once every node reports
//! `cluster_state:ok`. Every node is killed when the cluster is dropped.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;
use crate::redis::{Persistence, RedisServer};

/// How many primaries, and how many replicas each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub primaries: usize,
    pub replicas_per_primary: usize,
}

impl Default for ClusterShape {
    /// Three primaries, no replica.
    fn default() -> Self {
        ClusterShape { primaries: 3, replicas_per_primary: 0 }
    }
}

pub struct RedisCluster {
    /// The primaries first (in `redis-cli --cluster create` order), then the replicas.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three primaries, no replica.
    pub fn start() -> RedisCluster {
        Self::start_with(ClusterShape::default())
    }

    pub fn start_with(shape: ClusterShape) -> RedisCluster {
        let count = shape.primaries * (1 + shape.replicas_per_primary);
        let nodes: Vec<RedisServer> = (0..count)
            .map(|_| {
                let cluster_port = free_port().to_string();
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &cluster_port,
                    "--cluster-node-timeout",
                    "2000",
                ];
                RedisServer::start_with(Persistence::None, args.map(str::to_owned).to_vec())
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &shape.replicas_per_primary.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be on PATH (scripts/test installs it)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Waits until every node serves every slot.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            loop {
                let info = cli(node.port(), &["CLUSTER", "INFO"]);
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The slot Redis computes for `key` (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u32 {
        cli(self.nodes[0].port(), &["CLUSTER", "KEYSLOT", key]).trim().parse().unwrap()
    }

    /// The port of the primary that serves `slot` (from each node's own line of `CLUSTER NODES`).
    pub fn port_serving(&self, slot: u32) -> u16 {
        for node in &self.nodes {
            let nodes = cli(node.port(), &["CLUSTER", "NODES"]);
            let own = nodes.lines().find(|line| line.contains("myself")).unwrap();
            for range in own.split_whitespace().skip(8) {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                if let (Ok(start), Ok(end)) = (start.parse::<u32>(), end.parse::<u32>())
                    && (start..=end).contains(&slot)
                {
                    return node.port();
                }
            }
        }
        panic!("no node serves slot {slot}");
    }
}

/// Runs redis-cli against one node and returns its output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli must be on PATH (scripts/test installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
