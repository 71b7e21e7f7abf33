//! A redis-server of the test's own: started from PATH on a free loopback port, stopped when dropped.
//!
//! Never the Redis a machine may already run (e.g. on 6379): each server gets
//! a port the OS just handed out and a temp dir. With `durable`, every write
//! is in its append-only file before Redis answers, so a killed and
//! restarted server still holds what it acknowledged.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct RedisServer {
    port: u16,
    durable: bool,
    extra: Vec<String>,
    directory: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server that keeps nothing across restarts, and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// Starts a server that fsyncs every write to its append-only file.
    pub fn start_durable() -> RedisServer {
        Self::start_with(true)
    }

    /// Starts a server that keeps nothing across restarts, with `extra` arguments (`--cluster-enabled yes`...).
    pub fn start_with_args(extra: Vec<String>) -> RedisServer {
        let port = free_port();
        let mut server =
            RedisServer { port, durable: false, extra, directory: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    fn start_with(durable: bool) -> RedisServer {
        let port = free_port();
        let mut server =
            RedisServer { port, durable, extra: Vec::new(), directory: tempfile::tempdir().unwrap(), child: None };
        server.restart();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let persistence: &[&str] = if self.durable {
            &["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--save", "", "--appendonly", "no"]
        };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(persistence)
            .args(&self.extra)
            .arg("--dir")
            .arg(self.directory.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH (scripts/test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server on port {} did not start", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut answer = [0_u8; 7];
        stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
