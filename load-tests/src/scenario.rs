//! The scenarios: what each starts, how it is driven, and what it reads off the processes it measured.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use omadm_proto::package::InitiationPackage;
use omadm_proto::package::media::INITIATION_JSON;
use omadm_testkit::ports::free_port;
use omadm_testkit::process::{Output, Spawned};
use serde::Serialize;

use crate::process_stats::{CpuTime, resident_bytes};
use crate::redis_stats::{CommandDelta, CommandStats};
use crate::replay::{self, DriveReport, Load, PreparedRequest};

/// The devsim fleet every scenario uses (devsim's defaults: ids `devsim-NNNNNN`, one password).
pub const DEVICE_PREFIX: &str = "devsim-";
pub const DEVICE_PASSWORD: &str = "devsim-secret";
pub const ADMIN_TOKEN: &str = "omadm-load-admin-token";

/// The binaries a run starts, found next to this one (`load-tests/run` builds them together).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub omadm: PathBuf,
    pub devsim: PathBuf,
    pub this: PathBuf,
}

impl Binaries {
    pub fn beside_this() -> anyhow::Result<Binaries> {
        let this = std::env::current_exe()?;
        let dir = this.parent().context("no directory of the running binary")?;
        let binaries = Binaries { omadm: dir.join("omadm"), devsim: dir.join("omadm-devsim"), this: this.clone() };
        for binary in [&binaries.omadm, &binaries.devsim] {
            anyhow::ensure!(binary.exists(), "{} is missing: build with load-tests/run", binary.display());
        }
        Ok(binaries)
    }
}

/// What every drive shares.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub devices: u32,
    pub workers: usize,
    pub load: Load,
}

/// A server process the harness measures: where it listens and its pid.
pub struct Target {
    pub addresses: Vec<SocketAddr>,
    pub pids: Vec<u32>,
}

/// One drive of one target, with the CPU every process used meanwhile.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    #[serde(flatten)]
    pub drive: DriveReport,
    /// CPU seconds of the server processes (all nodes) during the drive.
    pub server_cpu_s: f64,
    /// Server CPU per answered request, in microseconds.
    pub server_cpu_us_per_request: f64,
    /// Requests per second each node answered.
    pub per_node_requests_per_s: f64,
    /// Resident memory of the server processes at the end of the drive, in bytes.
    pub server_rss_bytes: u64,
}

/// Package#1 of every device of the fleet: media type, OMADM-DevID and preemptive Basic credentials.
pub fn package1_requests(devices: u32) -> anyhow::Result<Vec<PreparedRequest>> {
    let body = Bytes::from(InitiationPackage::default().to_json_bytes()?);
    let device_header = HeaderName::from_static("omadm-devid");
    (0..devices)
        .map(|index| {
            let device_id = device_id(index);
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{device_id}:{DEVICE_PASSWORD}"));
            Ok(PreparedRequest {
                path: "/dm".to_owned(),
                headers: vec![
                    (CONTENT_TYPE, HeaderValue::from_static(INITIATION_JSON)),
                    (device_header.clone(), HeaderValue::from_str(&device_id)?),
                    (AUTHORIZATION, HeaderValue::from_str(&format!("Basic {credentials}"))?),
                ],
                body: body.clone(),
            })
        })
        .collect()
}

/// devsim's id of device `index`.
pub fn device_id(index: u32) -> String {
    format!("{DEVICE_PREFIX}{index:06}")
}

/// Drives `target` with `requests`, connection i going to node i mod n, and reads the nodes' CPU around it.
pub fn measure(target: &Target, requests: &[PreparedRequest], settings: &Settings) -> anyhow::Result<Measured> {
    let before: Vec<CpuTime> = target.pids.iter().map(|pid| CpuTime::of(*pid)).collect::<Result<_, _>>()?;
    let drive = replay::drive(&target.addresses, requests, settings.load)?;
    let after: Vec<CpuTime> = target.pids.iter().map(|pid| CpuTime::of(*pid)).collect::<Result<_, _>>()?;
    let server_cpu_s: f64 = after.iter().zip(&before).map(|(after, before)| after.since(*before)).sum();
    let answered = drive.requests.max(1) as f64;
    Ok(Measured {
        server_cpu_us_per_request: server_cpu_s * 1e6 / answered,
        per_node_requests_per_s: drive.requests_per_s / target.pids.len().max(1) as f64,
        server_rss_bytes: target.pids.iter().map(|pid| resident_bytes(*pid)).sum(),
        server_cpu_s,
        drive,
    })
}

/// The baseline process, answering every POST with `body` of `content_type`; killed when dropped.
pub struct Baseline {
    process: Spawned,
    pub address: SocketAddr,
    _body_file: tempfile::NamedTempFile,
}

impl Baseline {
    pub fn start(binaries: &Binaries, workers: usize, content_type: &str, body: &[u8]) -> anyhow::Result<Baseline> {
        let body_file = tempfile::NamedTempFile::new()?;
        std::fs::write(body_file.path(), body)?;
        let mut command = Command::new(&binaries.this);
        command
            .args(["baseline-server", "--listen", "127.0.0.1:0", "--workers", &workers.to_string()])
            .args(["--content-type", content_type, "--body-file"])
            .arg(body_file.path());
        let mut process = Spawned::spawn(command, Output::Lines);
        let lines = process.wait_for_line(Duration::from_secs(20), |line| line.starts_with("listening on "));
        let address = lines
            .iter()
            .find_map(|line| line.strip_prefix("listening on "))
            .context("the baseline did not say where it listens")?
            .parse()?;
        Ok(Baseline { process, address, _body_file: body_file })
    }

    pub fn target(&self) -> anyhow::Result<Target> {
        Ok(Target { addresses: vec![self.address], pids: vec![self.process.id().context("baseline gone")?] })
    }
}

/// What devsim measured over whole sessions, and what it cost.
#[derive(Debug, Clone, Serialize)]
pub struct DevsimRun {
    /// devsim's own JSON report.
    pub report: serde_json::Value,
    pub sessions_per_s: f64,
    /// Package#2s per second (exchanges).
    pub exchanges_per_s: f64,
    /// CPU seconds devsim used (registration included).
    pub devsim_cpu_s: f64,
    /// CPU seconds of the server processes over the same time.
    pub server_cpu_s: f64,
}

/// Runs `omadm-devsim ARGS --report FILE` to its end against `servers`, reading its and the servers' CPU.
pub fn devsim(
    binaries: &Binaries,
    servers: &[String],
    pids: &[u32],
    admin_token: &str,
    args: &[&str],
) -> anyhow::Result<DevsimRun> {
    let report_file = tempfile::NamedTempFile::new()?;
    let before: Vec<CpuTime> = pids.iter().map(|pid| CpuTime::of(*pid)).collect::<Result<_, _>>()?;
    let children_before = CpuTime::of_waited_children()?;
    let status = omadm_testkit::process::command(&binaries.devsim)
        .arg("--server")
        .arg(servers.join(","))
        .args(["--no-notify", "--admin-token", admin_token, "--password", DEVICE_PASSWORD])
        .args(args)
        .arg("--report")
        .arg(report_file.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    let devsim_cpu_s = CpuTime::of_waited_children()?.since(children_before);
    let after: Vec<CpuTime> = pids.iter().map(|pid| CpuTime::of(*pid)).collect::<Result<_, _>>()?;
    anyhow::ensure!(status.success(), "omadm-devsim {args:?} failed: {status}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(report_file.path())?)?;
    let number = |key: &str| report.get(key).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    let failed = number("sessions_failed");
    anyhow::ensure!(
        failed == 0.0,
        "omadm-devsim: {failed} sessions failed: {}",
        report.get("errors").cloned().unwrap_or_default()
    );
    let elapsed = number("elapsed_s").max(1e-9);
    Ok(DevsimRun {
        sessions_per_s: number("sessions_per_s"),
        exchanges_per_s: number("packages") / elapsed,
        devsim_cpu_s,
        server_cpu_s: after.iter().zip(&before).map(|(after, before)| after.since(*before)).sum(),
        report,
    })
}

/// The Package#2 a known device with fresh inventory and nothing queued gets: status, content type and body.
/// Refuses to go on unless it is the END the minimal scenario claims to measure.
pub fn probe_minimal_answer(address: SocketAddr, request: &PreparedRequest) -> anyhow::Result<(String, Bytes)> {
    let (status, content_type, body) = replay::probe(address, request)?;
    let text = String::from_utf8_lossy(&body);
    anyhow::ensure!(status == 200, "the probe Package#1 got {status}: {text}");
    anyhow::ensure!(
        text.contains("\"END\"") && !text.contains("\"CONT\""),
        "the probe Package#2 is not a lone END (inventory not fresh, or commands queued?): {text}"
    );
    Ok((content_type, body))
}

/// A server's ops listener's Prometheus series of `metric`: labels (as written) -> value.
pub fn metric_series(ops_base: &str, metric: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let address: SocketAddr = ops_base.trim_start_matches("http://").parse()?;
    let text = replay::get_text(address, "/metrics")?;
    Ok(text
        .lines()
        .filter_map(|line| line.strip_prefix(metric))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once(' ')?;
            Some((labels.trim().to_owned(), value.parse::<f64>().ok()?))
        })
        .collect())
}

/// Redis commands per exchange from Redis's own count and from the servers' count of their round trips.
#[derive(Debug, Clone, Serialize)]
pub struct RedisCost {
    pub redis: CommandDelta,
    pub commands_per_exchange: f64,
    pub evalsha_per_exchange: f64,
    /// `omadm_redis_round_trips_total` over every node, per exchange.
    pub client_round_trips_per_exchange: f64,
    /// The same by store operation (the metric's labels).
    pub client_round_trips_by_operation: BTreeMap<String, f64>,
}

/// Reads Redis and the nodes' round-trip counters around `drive`.
pub fn with_redis_cost<T>(
    redis_url: &str,
    ops_bases: &[String],
    exchanges: impl Fn(&T) -> u64,
    drive: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<(T, RedisCost)> {
    let round_trips = || -> anyhow::Result<BTreeMap<String, f64>> {
        let mut total = BTreeMap::new();
        for base in ops_bases {
            for (labels, value) in metric_series(base, "omadm_redis_round_trips_total")? {
                *total.entry(labels).or_insert(0.0) += value;
            }
        }
        Ok(total)
    };
    let stats_before = CommandStats::read(redis_url)?;
    let trips_before = round_trips()?;
    let result = drive()?;
    let stats_after = CommandStats::read(redis_url)?;
    let trips_after = round_trips()?;
    let delta = stats_after.since(&stats_before);
    let count = exchanges(&result).max(1) as f64;
    let by_operation: BTreeMap<String, f64> = trips_after
        .into_iter()
        .map(|(labels, after)| {
            let before = trips_before.get(&labels).copied().unwrap_or(0.0);
            (labels, (after - before) / count)
        })
        .filter(|(_, per_exchange)| *per_exchange > 0.0)
        .collect();
    let cost = RedisCost {
        commands_per_exchange: delta.commands as f64 / count,
        evalsha_per_exchange: delta.evalsha as f64 / count,
        client_round_trips_per_exchange: by_operation.values().sum(),
        client_round_trips_by_operation: by_operation,
        redis: delta,
    };
    Ok((result, cost))
}

/// A free loopback address.
pub fn loopback() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Waits until `GET /readyz` on `base` answers 200.
pub fn wait_ready(base: &str, within: Duration) -> anyhow::Result<()> {
    let address: SocketAddr = base.trim_start_matches("http://").parse()?;
    let deadline = std::time::Instant::now() + within;
    loop {
        if replay::get_status(address, "/readyz").is_ok_and(|status| status == 200) {
            return Ok(());
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "{base} not ready within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Directory under `root` named `name`, created.
pub fn subdir(root: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = root.join(name);
    std::fs::create_dir_all(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(path)
}

/// Queues the typical session's three commands (GETs of DevInfo leaves) for every device through the operator
/// API: the session is Package#1, a Package#2 with CONT and the commands, their Package#3, and END.
pub fn queue_typical_commands(address: SocketAddr, admin_token: &str, devices: u32) -> anyhow::Result<()> {
    let commands = serde_json::json!({"commands": [
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"],
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Mod"],
        ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//Man"],
    ]});
    for index in 0..devices {
        let path = format!("/api/v1/devices/{}/commands", device_id(index));
        let status = replay::post_json(address, &path, admin_token, &commands)?;
        anyhow::ensure!((200..300).contains(&status), "queueing commands for {} got {status}", device_id(index));
    }
    Ok(())
}

/// Bytes of every file under `directory`.
pub fn bytes_on_disk(directory: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(directory) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => bytes_on_disk(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}
