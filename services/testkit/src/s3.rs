//! An S3-compatible server for the content engine's tests: moto's `moto_server` (PyPI) on a free loopback port,
//! with one bucket, killed when dropped.
//!
//! ```text
//! let s3 = S3Server::start();              // moto_server -H 127.0.0.1 -p PORT; PUT /omadm-test
//! let url = s3.content_url("firmware");    // s3://omadm-test/firmware?endpoint=http://127.0.0.1:PORT&...
//! ```
//!
//! The binary is `OMADM_MOTO`, else `~/.cache/omadm-tools/moto-5.2.5/bin/moto_server` (where scripts/test
//! installs it), else `moto_server` on PATH. moto checks no signature: the credentials are placeholders.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ports::free_port;
use crate::process::{Output, Spawned};

/// The moto release scripts/test installs.
pub const MOTO_VERSION: &str = "5.2.5";

/// The bucket every [`S3Server`] has.
pub const BUCKET: &str = "omadm-test";

/// Where the moto server binary is.
pub fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OMADM_MOTO") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let cached = PathBuf::from(home).join(format!(".cache/omadm-tools/moto-{MOTO_VERSION}/bin/moto_server"));
        if cached.is_file() {
            return cached;
        }
    }
    PathBuf::from("moto_server")
}

/// A running moto server with [`BUCKET`].
pub struct S3Server {
    port: u16,
    _process: Spawned,
    _logs: tempfile::TempDir,
}

impl S3Server {
    /// Starts moto on a free port and creates the bucket; panics (a failed test) with how to install moto when
    /// it cannot run.
    pub fn start() -> S3Server {
        let binary = moto_binary();
        let port = free_port();
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdin(Stdio::null());
        if Command::new(&binary).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
            panic!(
                "no moto server at {} (scripts/test installs it; or: python3 -m venv ~/.cache/omadm-tools/moto-{MOTO_VERSION} \
                 && ~/.cache/omadm-tools/moto-{MOTO_VERSION}/bin/pip install 'moto[server]=={MOTO_VERSION}'; or set OMADM_MOTO)",
                binary.display()
            );
        }
        let logs = tempfile::tempdir().expect("a temp dir for moto's log");
        let mut process = Spawned::spawn(command, Output::LogFile(logs.path().join("moto.log")));
        process.wait_for_listener(port, Duration::from_secs(30));
        let server = S3Server { port, _process: process, _logs: logs };
        let status = server.request("PUT", &format!("/{BUCKET}"));
        assert!(status == 200, "moto did not create the bucket: HTTP {status}");
        server
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `--content` URL of the bucket below `prefix`.
    pub fn content_url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1&allow_http=true&access_key_id=test&secret_access_key=test",
            self.endpoint()
        )
    }

    /// How many objects the bucket holds below `prefix` (ListObjectsV2, counted from its XML answer).
    pub fn object_count(&self, prefix: &str) -> usize {
        let answer = self.exchange("GET", &format!("/{BUCKET}?list-type=2&prefix={prefix}"));
        answer.matches("<Key>").count()
    }

    /// One HTTP/1.1 request without a body; the status.
    fn request(&self, method: &str, target: &str) -> u16 {
        let answer = self.exchange(method, target);
        answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
    }

    fn exchange(&self, method: &str, target: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream.write_all(head.as_bytes()).expect("write to moto");
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }
}
