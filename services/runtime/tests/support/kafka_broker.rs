//! A Kafka-protocol broker of the test's own: tansu on a free loopback port, stopped when dropped; or an external one.
//!
//! `OMADM_TEST_KAFKA=host:9092[,host:9092]` points the tests at a broker that
//! already runs (Apache Kafka, say): nothing is started, kill and restart are
//! not available ([`KafkaBroker::is_external`]). Otherwise tansu runs on its
//! memory engine in a temp dir; the binary is `OMADM_TANSU`, else
//! `~/.cache/omadm-tools/tansu-0.6.0/bin/tansu` (where scripts/test builds
//! it), else `tansu` on PATH. Either way, tests use topic names of their own
//! ([`unique_prefix`]) so they never see each other's events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct KafkaBroker {
    brokers: String,
    /// `None` for an external broker.
    local: Option<LocalBroker>,
}

struct LocalBroker {
    port: u16,
    directory: TempDir,
    child: Option<Child>,
}

/// The tansu binary the tests run.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OMADM_TANSU") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = PathBuf::from(home).join(".cache/omadm-tools/tansu-0.6.0/bin/tansu");
        if cached.is_file() {
            return cached;
        }
    }
    PathBuf::from("tansu")
}

/// A topic prefix no other test (nor an earlier run on an external broker) uses: `t4242-3-1700000000123.`
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!("t{}-{}-{millis}.", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl KafkaBroker {
    /// The external broker of `OMADM_TEST_KAFKA`, or a tansu started now and accepting connections.
    pub fn start() -> KafkaBroker {
        if let Ok(brokers) = std::env::var("OMADM_TEST_KAFKA") {
            if !brokers.is_empty() {
                return KafkaBroker { brokers, local: None };
            }
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let local = LocalBroker { port, directory: tempfile::tempdir().unwrap(), child: None };
        let mut broker = KafkaBroker { brokers: format!("127.0.0.1:{port}"), local: Some(local) };
        broker.restart();
        broker
    }

    /// `host:port[,host:port]`, as rdkafka's `bootstrap.servers` takes it.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The bus URL: `kafka://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.brokers)
    }

    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// librdkafka settings the clients of this broker need (`BusOptions::kafka_settings`), then
    /// those of `OMADM_TEST_KAFKA_SETTINGS` (`key=value,key=value`, e.g. to measure producer settings).
    ///
    /// tansu 0.6.0 (memory engine) answers a fetch from an offset inside a
    /// record batch with the batches after it only: a group that committed in
    /// the middle of a batch would never get the rest of it. One record per
    /// batch keeps every offset at a batch start. Apache Kafka needs nothing.
    pub fn client_settings(&self) -> Vec<(String, String)> {
        let mut settings = match self.local {
            Some(_) => vec![("batch.num.messages".to_owned(), "1".to_owned())],
            None => Vec::new(),
        };
        let extra = std::env::var("OMADM_TEST_KAFKA_SETTINGS").unwrap_or_default();
        for pair in extra.split(',').filter(|pair| !pair.trim().is_empty()) {
            let (key, value) = pair.split_once('=').expect("OMADM_TEST_KAFKA_SETTINGS holds key=value pairs");
            settings.push((key.trim().to_owned(), value.trim().to_owned()));
        }
        settings
    }

    /// Kills the broker (SIGKILL) and waits for it to exit. Its memory engine loses every topic.
    pub fn kill(&mut self) {
        let local = self.local.as_mut().expect("an external broker cannot be killed by the tests");
        if let Some(mut child) = local.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts tansu again on the same port (after [`KafkaBroker::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let local = self.local.as_mut().expect("an external broker cannot be restarted by the tests");
        let listener = format!("tcp://127.0.0.1:{}", local.port);
        let log = std::fs::File::create(local.directory.path().join("tansu.log")).unwrap();
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(local.directory.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {} ({error}): scripts/test builds it, or set OMADM_TANSU", binary.display())
            });
        local.child = Some(child);
        let port = local.port;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu on port {port} did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What tansu printed so far.
    pub fn log(&self) -> String {
        self.local
            .as_ref()
            .and_then(|local| std::fs::read_to_string(local.directory.path().join("tansu.log")).ok())
            .unwrap_or_default()
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if self.local.is_none() {
            return;
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- tansu log (last lines)\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        self.kill();
    }
}
