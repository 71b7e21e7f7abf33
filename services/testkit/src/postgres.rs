//! A PostgreSQL server of the test's own (a durable store for tansu's PostgreSQL engine): a fresh cluster in a
//! temp dir, on a free loopback port, stopped when dropped.
//!
//! ```text
//! let database = PostgresServer::start();   // initdb; postgres -h 127.0.0.1 -p PORT -k DIR
//! database.psql("create table t (id int)"); // psql -v ON_ERROR_STOP=1
//! let url = database.url();                 // postgres://postgres@127.0.0.1:PORT/postgres
//! ```
//!
//! Never the PostgreSQL a machine may already run (e.g. on 5432): its own data dir, port and unix socket dir.
//! The binaries are those of `OMADM_POSTGRES_BIN` (a dir), else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package, which scripts/test installs), else PATH. initdb and postgres refuse to run
//! as root, so under root they run as the `postgres` system user (setpriv, which execs: the process the kit
//! holds is the postmaster itself). Every commit is fsynced (`fsync`, `synchronous_commit` on): a test that
//! counts on what the server acknowledged gets the server's real durability. Clients are trusted without a
//! password (a throwaway cluster on loopback, as the kit's redis-server has none). The server's output goes to
//! `postgres.log` in its dir, quoted when it does not come up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::process::{Output, Spawned, log_tail};

/// The superuser initdb creates, and the database every cluster has.
const SUPERUSER: &str = "postgres";

pub struct PostgresServer {
    port: u16,
    directory: TempDir,
    process: Option<Spawned>,
}

/// The dir of initdb, postgres, pg_isready and psql (`None`: on PATH).
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OMADM_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn binary(name: &str) -> PathBuf {
    binaries().map_or_else(|| PathBuf::from(name), |dir| dir.join(name))
}

/// `program` as a command with no `PG*` variable of the test's environment: settings for a PostgreSQL the machine
/// runs (PGHOST, PGSSLMODE...) must not reach this one.
fn pg_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(|name| name.starts_with("PG")) {
            command.env_remove(name);
        }
    }
    command
}

/// `name` (initdb, postgres) as a command that runs as the `postgres` system user when the test runs as root.
fn server_command(name: &str, as_postgres: Option<(u32, u32)>) -> Command {
    let program = binary(name);
    match as_postgres {
        Some((uid, gid)) => {
            let mut command = pg_command("setpriv");
            command
                .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--init-groups".to_owned(), "--".to_owned()])
                .arg(program);
            command
        }
        None => pg_command(program),
    }
}

/// What `id ARGS` prints, trimmed (`None` when it fails: no such user).
fn id(args: &[&str]) -> Option<String> {
    let output = Command::new("id").args(args).output().expect("run id");
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The uid and gid of the `postgres` system user when this process runs as root (`None` otherwise).
fn postgres_user() -> Option<(u32, u32)> {
    if id(&["-u"])? != "0" {
        return None;
    }
    let number = |args: &[&str]| {
        id(args).and_then(|text| text.parse::<u32>().ok()).unwrap_or_else(|| {
            panic!(
                "the tests run as root, where initdb and postgres refuse to run, and there is no `{SUPERUSER}` \
                 user to run them as (Debian's postgresql package creates it; scripts/test installs it)"
            )
        })
    };
    Some((number(&["-u", SUPERUSER]), number(&["-g", SUPERUSER])))
}

impl PostgresServer {
    /// Creates a cluster (initdb) in a temp dir, starts it on a free loopback port and waits until it accepts
    /// connections; panics (a failed test) with how to install PostgreSQL when it cannot.
    pub fn start() -> PostgresServer {
        if !binary("initdb").is_file() && binaries().is_some() {
            panic!(
                "no initdb at {} (scripts/test installs Debian's postgresql package; or set OMADM_POSTGRES_BIN to \
                 the dir of initdb and postgres)",
                binary("initdb").display()
            );
        }
        let as_postgres = postgres_user();
        let directory = tempfile::tempdir().expect("a temp dir for PostgreSQL");
        if let Some((uid, gid)) = as_postgres {
            std::os::unix::fs::chown(directory.path(), Some(uid), Some(gid)).expect("chown the dir to postgres");
        }
        let mut initdb = server_command("initdb", as_postgres);
        initdb
            .arg("--pgdata")
            .arg(directory.path().join("data"))
            .args(["--username", SUPERUSER, "--auth", "trust", "--encoding", "UTF8", "--locale", "C"])
            .current_dir(directory.path())
            .stdin(Stdio::null());
        let output = initdb.output().unwrap_or_else(|error| {
            panic!("cannot run {} (scripts/test installs PostgreSQL): {error}", binary("initdb").display())
        });
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut server = PostgresServer { port: free_port(), directory, process: None };
        server.spawn(as_postgres);
        server
    }

    fn spawn(&mut self, as_postgres: Option<(u32, u32)>) {
        let mut command = server_command("postgres", as_postgres);
        command
            .arg("-D")
            .arg(self.directory.path().join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.directory.path())
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on"])
            .current_dir(self.directory.path());
        let mut process = Spawned::spawn(command, Output::LogFile(self.log()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_ready() {
            if let Some(status) = process.try_wait() {
                panic!("postgres exited ({status}) on port {}:\n{}", self.port, log_tail(&self.log(), 20));
            }
            assert!(
                Instant::now() < deadline,
                "postgres on port {} did not accept connections within 30 s:\n{}",
                self.port,
                log_tail(&self.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the superuser on the database initdb made.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{SUPERUSER}", self.port)
    }

    /// What the server printed (`postgres.log` in its dir).
    pub fn log(&self) -> PathBuf {
        self.directory.path().join("postgres.log")
    }

    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// pg_isready: the server accepts connections (not just the port: it refuses them while starting up).
    pub fn is_ready(&self) -> bool {
        pg_command(binary("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", SUPERUSER, "-d", SUPERUSER])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Runs `sql` with psql as the superuser on the `postgres` database, stopping at the first error; the rows
    /// it printed (unaligned, `|` between columns, no header). Panics with psql's error when a statement fails.
    pub fn psql(&self, sql: &str) -> String {
        let mut child = pg_command(binary("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", SUPERUSER, "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary("psql").display()));
        child.stdin.take().expect("psql's stdin").write_all(sql.as_bytes()).expect("write to psql");
        let output = child.wait_with_output().expect("wait for psql");
        assert!(
            output.status.success(),
            "psql failed ({}) on port {}:\n{}",
            output.status,
            self.port,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- postgres log (last lines)\n{}", log_tail(&self.log(), 20));
        }
        // SIGINT is PostgreSQL's fast shutdown: it ends the sessions and stops its other processes, which a
        // SIGKILL of the postmaster would leave behind in a dir about to be removed.
        if let Some(mut process) = self.process.take() {
            process.signal_and_wait("INT", Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_of_its_own_answers_and_keeps_every_commit_fsynced() {
        let server = PostgresServer::start();
        assert_ne!(server.port(), 5432);
        let settings = server.psql("select current_setting('fsync'), current_setting('synchronous_commit');");
        assert_eq!(settings, "on|on\n");
        assert!(server.directory().join("data/PG_VERSION").is_file());
    }
}
