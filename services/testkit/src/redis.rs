//! A redis-server of the test's own: started from PATH on a free loopback port in a temp dir, killed when dropped.
//!
//! Never the Redis a machine may already run (e.g. on 6379). With
//! [`Persistence::Aof`] every write is in the append-only file before Redis
//! answers, so a killed or stopped and restarted server still holds what it
//! acknowledged; with [`Persistence::None`] it keeps nothing. Its output goes
//! to `redis.log` in its dir, quoted when it does not come up.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Output, Spawned, log_tail};

/// What a server keeps across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing (no RDB, no AOF).
    None,
    /// An append-only file fsynced on every write.
    Aof,
}

pub struct RedisServer {
    port: u16,
    persistence: Persistence,
    extra_args: Vec<String>,
    directory: TempDir,
    process: Option<Spawned>,
}

impl RedisServer {
    /// Starts a server that keeps nothing across restarts, and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with(Persistence::None, Vec::new())
    }

    /// Starts a server that fsyncs every write to its append-only file.
    pub fn start_durable() -> RedisServer {
        Self::start_with(Persistence::Aof, Vec::new())
    }

    /// Starts a server with more command-line arguments (e.g. the cluster ones).
    pub fn start_with(persistence: Persistence, extra_args: Vec<String>) -> RedisServer {
        let directory = tempfile::tempdir().unwrap();
        let mut server = RedisServer { port: free_port(), persistence, extra_args, directory, process: None };
        server.restart();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// What the server printed (`redis.log` in its dir).
    pub fn log(&self) -> PathBuf {
        self.directory.path().join("redis.log")
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Stops the server (SIGTERM: it finishes its AOF and exits; SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate(Duration::from_secs(10));
        }
    }

    /// Starts the server again on the same port and dir (after [`RedisServer::kill`] or [`RedisServer::stop`];
    /// a running one is killed first), and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let persistence: &[&str] = match self.persistence {
            Persistence::None => &["--save", "", "--appendonly", "no"],
            Persistence::Aof => &["--save", "", "--appendonly", "yes", "--appendfsync", "always"],
        };
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(persistence)
            .arg("--dir")
            .arg(self.directory.path())
            .args(&self.extra_args)
            .current_dir(self.directory.path());
        let mut process = Spawned::spawn(command, Output::LogFile(self.log()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ping() {
            if let Some(status) = process.try_wait() {
                panic!(
                    "redis-server exited ({status}) on port {} (scripts/test installs it):\n{}",
                    self.port,
                    log_tail(&self.log(), 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer PING within 20 s:\n{}",
                self.port,
                log_tail(&self.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = Some(process);
    }

    /// PING answered with PONG.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0_u8; 7];
        stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
