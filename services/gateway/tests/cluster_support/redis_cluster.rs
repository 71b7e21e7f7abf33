//! A 3-node Redis Cluster of the test's own: three redis-servers on free loopback ports, stopped when dropped.
//!
//! Each node runs with `--cluster-enabled yes` (its cluster bus on another free
//! port), no persistence, in a temp dir; `redis-cli --cluster create` assigns
//! the 16,384 slots over the three masters (no replicas), and the cluster is
//! used once every node reports `cluster_state:ok`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::redis_server::{RedisServer, free_port};

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with_args(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &free_port().to_string(),
                        "--cluster-node-timeout",
                        "2000",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli must be on PATH (scripts/test installs it)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let output = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "-p", &node.port().to_string(), "CLUSTER", "INFO"])
                    .output()
                    .unwrap();
                let info = String::from_utf8_lossy(&output.stdout).into_owned();
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not become ok: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// `redis+cluster://` with every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|node| format!("127.0.0.1:{}", node.port())).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
