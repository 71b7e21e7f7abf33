//! A Kafka-protocol broker of the test's own: tansu on its memory engine on a free loopback port, stopped when dropped.
//!
//! The binary is `OMADM_TANSU`, else `~/.cache/omadm-tools/tansu-0.6.0/bin/tansu`
//! (where scripts/test builds it), else `tansu` on PATH.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct KafkaBroker {
    port: u16,
    directory: TempDir,
    child: Option<Child>,
}

fn tansu_binary() -> PathBuf {
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

impl KafkaBroker {
    /// Starts tansu and waits until it accepts connections.
    pub fn start() -> KafkaBroker {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let directory = tempfile::tempdir().unwrap();
        let listener = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(directory.path().join("tansu.log")).unwrap();
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener])
            .args(["--storage-engine", "memory://tansu/"])
            .current_dir(directory.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {} ({error}): scripts/test builds it, or set OMADM_TANSU", binary.display())
            });
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu on port {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        KafkaBroker { port, directory, child: Some(child) }
    }

    /// `127.0.0.1:PORT`, as `--kafka` takes it.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
