//! A Kafka-protocol broker of the test's own (tansu on a free loopback port, killed when dropped), or an external one.
//!
//! `OMADM_TEST_KAFKA=host:9092[,host:9092]` (a `kafka://` prefix is allowed)
//! points the tests at a broker that already runs (Apache Kafka, say):
//! nothing is started, and kill, stop and restart are not available
//! ([`KafkaBroker::is_external`]). Otherwise tansu runs in a temp dir on the
//! storage engine of `OMADM_TANSU_STORAGE` (default `memory://tansu/`); the
//! binary is `OMADM_TANSU`, else `~/.cache/omadm-tools/tansu-0.6.0/bin/tansu`
//! (where scripts/test builds it), else `tansu` on PATH.
//! `OMADM_TEST_KAFKA_SETTINGS=key=value,key=value` adds librdkafka settings
//! for every client ([`KafkaBroker::client_settings`]). [`KafkaBroker::start_durable`] runs tansu on its
//! PostgreSQL engine over a PostgreSQL server of its own ([`crate::postgres`]), so what the broker
//! acknowledged outlives a kill and restart of the broker; that binary is `OMADM_TANSU_POSTGRES`, else
//! `~/.cache/omadm-tools/tansu-pg-0.6.0/bin/tansu` (built with the `postgres` feature, which the other
//! build lacks). Either way, tests use
//! topic names of their own ([`unique_prefix`]) so they never see each
//! other's events.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tempfile::TempDir;

use crate::ports::free_port;
use crate::postgres::PostgresServer;
use crate::process::{Output, Spawned, log_tail};

pub struct KafkaBroker {
    brokers: String,
    /// `None` for an external broker.
    local: Option<LocalBroker>,
}

struct LocalBroker {
    port: u16,
    binary: PathBuf,
    /// Where `binary` comes from, for the failure when it is missing.
    install: &'static str,
    storage: String,
    directory: TempDir,
    process: Option<Spawned>,
    /// The PostgreSQL server of a durable broker; it outlives the broker's restarts.
    _database: Option<PostgresServer>,
}

/// The tables tansu's PostgreSQL engine needs, which it does not create.
const TANSU_POSTGRES_SCHEMA: &str = include_str!("tansu_postgres.sql");

const INSTALL_TANSU: &str = "scripts/test builds it (`cargo install tansu --version 0.6.0 --locked --features \
     dynostore --root ~/.cache/omadm-tools/tansu-0.6.0`), or set OMADM_TANSU or OMADM_TEST_KAFKA";
const INSTALL_TANSU_POSTGRES: &str = "scripts/test builds it (`cargo install tansu --version 0.6.0 --locked \
     --features postgres --root ~/.cache/omadm-tools/tansu-pg-0.6.0`), or set OMADM_TANSU_POSTGRES";

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

/// The tansu binary with the PostgreSQL engine, which [`KafkaBroker::start_durable`] runs.
pub fn tansu_postgres_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OMADM_TANSU_POSTGRES") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/omadm-tools/tansu-pg-0.6.0/bin/tansu")
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
        if let Ok(brokers) = std::env::var("OMADM_TEST_KAFKA")
            && !brokers.is_empty()
        {
            eprintln!("test kit: using the external broker at {brokers}");
            return KafkaBroker { brokers: brokers.trim_start_matches("kafka://").to_owned(), local: None };
        }
        let storage = std::env::var("OMADM_TANSU_STORAGE").unwrap_or_else(|_| "memory://tansu/".to_owned());
        KafkaBroker::start_local(tansu_binary(), INSTALL_TANSU, storage, None)
    }

    /// A tansu whose topics are kept in a PostgreSQL server started now (every commit fsynced): a kill or a
    /// stop and a restart lose nothing it acknowledged. Never the external broker (its durability is its own).
    pub fn start_durable() -> KafkaBroker {
        let database = PostgresServer::start();
        database.psql(TANSU_POSTGRES_SCHEMA);
        let storage = database.url();
        KafkaBroker::start_local(tansu_postgres_binary(), INSTALL_TANSU_POSTGRES, storage, Some(database))
    }

    fn start_local(
        binary: PathBuf,
        install: &'static str,
        storage: String,
        database: Option<PostgresServer>,
    ) -> KafkaBroker {
        let port = free_port();
        let directory = tempfile::tempdir().unwrap();
        let local = LocalBroker { port, binary, install, storage, directory, process: None, _database: database };
        let mut broker = KafkaBroker { brokers: format!("127.0.0.1:{port}"), local: Some(local) };
        broker.restart();
        broker
    }

    /// `host:port[,host:port]`, as rdkafka's `bootstrap.servers` and `omadm gateway --kafka` take it.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The bus URL `omadm_core::bus::open` takes: `kafka://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("kafka://{}", self.brokers)
    }

    pub fn is_external(&self) -> bool {
        self.local.is_none()
    }

    /// The port of the broker the test started (`None` for an external one).
    pub fn port(&self) -> Option<u16> {
        self.local.as_ref().map(|local| local.port)
    }

    /// librdkafka settings the clients of this broker need (`BusOptions::kafka_settings`), then
    /// those of `OMADM_TEST_KAFKA_SETTINGS` (`key=value,key=value`, e.g. to measure producer settings
    /// or reach an external broker).
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

    /// Bus options for this broker (`feature = "core"`): topics under a [`unique_prefix`], `partitions` of
    /// each, and the [`KafkaBroker::client_settings`].
    #[cfg(feature = "core")]
    pub fn bus_options(&self, partitions: i32) -> omadm_core::bus::BusOptions {
        omadm_core::bus::BusOptions {
            topic_prefix: unique_prefix(),
            partitions,
            kafka_settings: self.client_settings(),
            ..omadm_core::bus::BusOptions::default()
        }
    }

    /// [`KafkaBroker::client_settings`] as `omadm gateway` takes them: `--kafka-setting key=value` each.
    pub fn client_setting_args(&self) -> Vec<String> {
        self.client_settings()
            .into_iter()
            .flat_map(|(key, value)| ["--kafka-setting".to_owned(), format!("{key}={value}")])
            .collect()
    }

    /// Kills the broker (SIGKILL) and waits for it to exit. Its memory engine loses every topic.
    pub fn kill(&mut self) {
        let local = self.local.as_mut().expect("an external broker cannot be killed by the tests");
        if let Some(mut process) = local.process.take() {
            process.kill();
        }
    }

    /// Stops the broker (SIGTERM, SIGKILL after 5 s). tansu 0.6.0 exits on SIGTERM at once when no client is
    /// connected; in the durability tests, with a producer connected, it kept serving for the whole 5 s and
    /// ended in the SIGKILL.
    pub fn stop(&mut self) {
        let local = self.local.as_mut().expect("an external broker cannot be stopped by the tests");
        if let Some(mut process) = local.process.take() {
            process.terminate(Duration::from_secs(5));
        }
    }

    /// Starts tansu again on the same port (after [`KafkaBroker::kill`] or [`KafkaBroker::stop`]; a running one
    /// is killed first); with the memory engine it starts empty, with the durable one as it was.
    pub fn restart(&mut self) {
        self.kill();
        let local = self.local.as_mut().expect("an external broker cannot be restarted by the tests");
        let listener = format!("tcp://127.0.0.1:{}", local.port);
        let mut command = Command::new(&local.binary);
        command
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", &local.storage])
            .current_dir(local.directory.path());
        if !local.binary.is_file() && local.binary.components().count() > 1 {
            panic!("no tansu at {}: {}", local.binary.display(), local.install);
        }
        let mut process = Spawned::spawn(command, Output::LogFile(local.log_path()));
        process.wait_for_listener(local.port, Duration::from_secs(30));
        local.process = Some(process);
    }

    /// Where tansu writes what it prints (`None` for an external broker).
    pub fn log_path(&self) -> Option<PathBuf> {
        self.local.as_ref().map(LocalBroker::log_path)
    }

    /// What tansu printed so far.
    pub fn log(&self) -> String {
        self.log_path().and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default()
    }
}

impl LocalBroker {
    fn log_path(&self) -> PathBuf {
        self.directory.path().join("tansu.log")
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let Some(local) = self.local.as_mut() else { return };
        if std::thread::panicking() {
            eprintln!("--- tansu log (last lines)\n{}", log_tail(&local.log_path(), 40));
        }
        if let Some(mut process) = local.process.take() {
            process.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tansu_schema_applies_to_a_fresh_postgres() {
        let database = PostgresServer::start();
        database.psql(TANSU_POSTGRES_SCHEMA);
        let tables = database.psql("select count(*) from pg_tables where schemaname = 'public';");
        assert_eq!(tables, "20\n");
    }
}
