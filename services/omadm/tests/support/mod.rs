//! Running the built `omadm serve` from tests: start it, read its banner, stop or kill it.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `omadm serve` and what its banner said.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub token: String,
    pub banner: Vec<String>,
}

pub fn start(data_dir: &Path, extra: &[&str]) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_omadm"));
    command
        .arg("serve")
        .args(if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The test's own environment must not configure the server.
    for (name, _) in std::env::vars() {
        if name.starts_with("OMADM_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().expect("omadm starts");
    let stdout = child.stdout.take().unwrap();
    let (lines_sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    while !banner.iter().any(|line: &String| line.starts_with("try: ")) {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => banner.push(line),
            Err(error) => {
                let _ = child.kill();
                panic!("no banner from omadm serve ({error}); got {banner:?}");
            }
        }
    }
    let listening = banner.iter().find_map(|line| line.strip_prefix("omadm serve: listening on ")).unwrap();
    let base = listening.split_whitespace().next().unwrap().to_owned();
    let token_line = banner.iter().find_map(|line| line.strip_prefix("admin token: ")).unwrap();
    let token = token_line.split_whitespace().next().unwrap().to_owned();
    Served { child, base, token, banner }
}

pub fn terminate(mut served: Served) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    for _ in 0..200 {
        if let Some(exit) = served.child.try_wait().unwrap() {
            return exit;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = served.child.kill();
    panic!("omadm serve did not stop within 20 s of SIGTERM");
}

/// A test that fails half-way must not leave its server running (it would also hold the
/// test's output pipe open).
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Ends the server the hard way (SIGKILL): no shutdown code runs.
pub fn kill_hard(mut served: Served) {
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}

/// A loopback port that was free a moment ago, for a server that must keep its address across restarts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
