//! Running the built `omadm serve` from tests (on the test kit's process harness): start it, read its banner,
//! stop or kill it.

// Helpers outside #[test] functions: a failure in them is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::path::Path;
use std::time::Duration;

pub use omadm_testkit::process::Served;

/// `omadm serve --data-dir DATA_DIR EXTRA` (on 127.0.0.1 port 0 unless `extra` has `--listen`), once its banner
/// is out. A test that fails half-way does not leave it running: it is killed when dropped.
pub fn start(data_dir: &Path, extra: &[&str]) -> Served {
    omadm_testkit::process::serve(Path::new(env!("CARGO_BIN_EXE_omadm")), data_dir, extra)
}

/// SIGTERM, and the exit status once it stopped.
pub fn terminate(mut served: Served) -> std::process::ExitStatus {
    served.process.terminate(Duration::from_secs(20)).expect("omadm serve did not stop within 20 s of SIGTERM")
}

/// Ends the server the hard way (SIGKILL): no shutdown code runs.
pub fn kill_hard(mut served: Served) {
    served.process.kill();
}

/// `omadm serve --listen 127.0.0.1:0 --ops-listen none --data-dir DATA_DIR EXTRA`, which must refuse to start:
/// its one line on stderr.
pub fn refused(data_dir: &Path, extra: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_omadm"))
        .args(["serve", "--listen", "127.0.0.1:0", "--ops-listen", "none", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(!output.status.success(), "it started");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}
