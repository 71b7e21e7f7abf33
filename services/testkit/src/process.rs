//! Spawning a binary from a test (the built `omadm` or any other): output captured, killed when dropped.
//!
//! A [`Spawned`] process writes its stdout and stderr to a log file
//! ([`Output::LogFile`]) or hands its stdout over line by line while stderr
//! goes to the test's own ([`Output::Lines`], for a banner). No `OMADM_*`
//! variable of the test's environment reaches it: the test states every
//! setting. Every wait has a deadline and fails with the process's log tail.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Where a spawned process's output goes.
pub enum Output {
    /// stdout and stderr appended to this file.
    LogFile(PathBuf),
    /// stdout read line by line ([`Spawned::wait_for_line`]), stderr inherited.
    Lines,
}

/// A running child process, SIGKILLed when dropped.
pub struct Spawned {
    child: Option<Child>,
    log: Option<PathBuf>,
    lines: Option<Receiver<String>>,
    description: String,
}

/// `binary` as a command with no `OMADM_*` variable of the test's own environment.
pub fn command(binary: impl AsRef<Path>) -> Command {
    let mut command = Command::new(binary.as_ref());
    for (name, _) in std::env::vars() {
        if name.starts_with("OMADM_") {
            command.env_remove(name);
        }
    }
    command
}

impl Spawned {
    /// Starts `command` (stdin closed) with its output sent to `output`.
    pub fn spawn(mut command: Command, output: Output) -> Spawned {
        let description = format!("{command:?}");
        command.stdin(Stdio::null());
        let log = match output {
            Output::LogFile(path) => {
                let out = File::options().create(true).append(true).open(&path).unwrap();
                command.stdout(out.try_clone().unwrap()).stderr(out);
                Some(path)
            }
            Output::Lines => {
                command.stdout(Stdio::piped()).stderr(Stdio::inherit());
                None
            }
        };
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {description}: {error}"));
        let lines = child.stdout.take().map(|stdout| {
            let (sender, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            lines
        });
        Spawned { child: Some(child), log, lines, description }
    }

    /// The process id (`None` once killed or stopped).
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// The exit status, if the process has exited on its own.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|child| child.try_wait().unwrap())
    }

    /// The lines of stdout up to and including the first that `last` accepts ([`Output::Lines`] only).
    /// Kills the process and fails when it does not come within `within`.
    pub fn wait_for_line(&mut self, within: Duration, last: impl Fn(&str) -> bool) -> Vec<String> {
        let lines = self.lines.as_ref().expect("wait_for_line needs Output::Lines");
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    let done = last(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(error) => {
                    self.kill();
                    panic!("{}: the awaited line did not come ({error}); got {seen:?}", self.description);
                }
            }
        }
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port`; fails when the process exits first
    /// or `within` passes.
    pub fn wait_for_listener(&mut self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        while !port_open(port) {
            if let Some(status) = self.try_wait() {
                panic!("{} exited ({status}) before listening on {port}:\n{}", self.description, self.log_tail(20));
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {port} within {within:?}:\n{}",
                self.description,
                self.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and wait: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then up to `grace` for the process to exit, then SIGKILL. The exit status when it exited in time.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal_and_wait("TERM", grace)
    }

    /// Sends `signal` (a name `kill` takes: `TERM`, `INT`), then waits up to `grace` for the process to exit,
    /// then SIGKILLs it. The exit status when it exited in time.
    pub fn signal_and_wait(&mut self, signal: &str, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let signalled = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
        assert!(signalled.success(), "kill -{signal} {} failed", child.id());
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The log file of [`Output::LogFile`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The last `lines` lines of the log file (empty without one).
    pub fn log_tail(&self, lines: usize) -> String {
        self.log.as_deref().map(|log| log_tail(log, lines)).unwrap_or_default()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// The last `lines` lines of a log file (empty when unreadable), for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `omadm` binary in the target directory of the running test, built (or brought up to date) once per
/// test binary so a test never drives a stale server. Crates that build `omadm` themselves use
/// `env!("CARGO_BIN_EXE_omadm")` instead.
pub fn omadm_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let test_exe = std::env::current_exe().unwrap();
    // target/debug/deps/fleet-<hash> -> target/debug/omadm
    let debug_dir = test_exe.parent().and_then(Path::parent).unwrap();
    let binary = debug_dir.join(format!("omadm{}", std::env::consts::EXE_SUFFIX));
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", "omadm", "--bin", "omadm"]).status().unwrap();
        assert!(status.success(), "cargo build -p omadm failed");
    });
    assert!(binary.exists(), "{} missing: run cargo build -p omadm", binary.display());
    binary
}

/// A fresh data dir for `omadm serve`, private to this user (0700) as the server demands; removed when dropped.
pub fn data_dir() -> tempfile::TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("omadm-data-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    builder.tempdir().unwrap()
}

/// A running `omadm serve` and what its banner said.
pub struct Served {
    pub process: Spawned,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The operator API token the banner printed.
    pub token: String,
    /// `http://127.0.0.1:PORT` of the ops listener (`/metrics`, `/readyz`); `None` with `--ops-listen none`.
    pub ops_base: Option<String>,
    pub banner: Vec<String>,
}

/// Starts `binary serve --data-dir DATA_DIR ARGS` (on 127.0.0.1 port 0 unless `args` has `--listen`, the ops
/// listener too unless it has `--ops-listen`) and reads its banner, up to the `try: ` line.
pub fn serve(binary: &Path, data_dir: &Path, args: &[&str]) -> Served {
    let mut command = command(binary);
    command
        .arg("serve")
        .args(if args.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] })
        .args(if args.contains(&"--ops-listen") { &[][..] } else { &["--ops-listen", "127.0.0.1:0"][..] })
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        // OMADM_TEST_LOG: the served process's filter when a test is being looked into (RUST_LOG's syntax).
        .env("RUST_LOG", std::env::var("OMADM_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()));
    let mut process = Spawned::spawn(command, Output::Lines);
    let banner = process.wait_for_line(Duration::from_secs(60), |line| line.starts_with("try: "));
    let listening = banner.iter().find_map(|line| line.strip_prefix("omadm serve: listening on ")).unwrap();
    let base = listening.split_whitespace().next().unwrap().to_owned();
    let token_line = banner.iter().find_map(|line| line.strip_prefix("admin token: ")).unwrap();
    let token = token_line.split_whitespace().next().unwrap().to_owned();
    let ops_base = banner
        .iter()
        .find_map(|line| line.strip_prefix("ops: http://"))
        .map(|rest| format!("http://{}", rest.split_whitespace().next().unwrap()));
    Served { process, base, token, ops_base, banner }
}
