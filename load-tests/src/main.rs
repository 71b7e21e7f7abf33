//! `omadm-load`: the performance harness (load-tests/README.md), and the baseline endpoint it starts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

mod baseline;
mod process_stats;
mod redis_stats;
mod replay;
mod scenario;
mod suite;

use scenario::{Binaries, Settings};
use suite::ScenarioName;

#[derive(Parser)]
#[command(
    name = "omadm-load",
    about = "omadm's performance harness: every figure with its ratio to a baseline measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Action {
    /// The baseline endpoint: answers every POST with the bytes of BODY_FILE (started by the harness itself).
    BaselineServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long)]
        content_type: String,
        #[arg(long)]
        body_file: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenarios to run, after the baseline.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ScenarioName::Embedded, ScenarioName::Cluster, ScenarioName::Kafka])]
    scenarios: Vec<ScenarioName>,
    /// Registered devices the sessions rotate over.
    #[arg(long, default_value_t = 2000)]
    devices: u32,
    /// Keep-alive connections of the load generator (devsim's concurrency too).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds each replayed drive lasts.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// HTTP workers of the baseline and of every server node.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Gateway counts of the cluster scenario, each started fresh on the same Redis.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 3])]
    gateways: Vec<usize>,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/omadm-load-report.json")]
    report: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Action::BaselineServer { listen, workers, content_type, body_file }) = cli.command {
        let body = std::fs::read(&body_file).with_context(|| body_file.display().to_string())?;
        return baseline::serve(&listen, workers, content_type, body.into());
    }
    let args = cli.run;
    anyhow::ensure!(args.seconds > 0.0 && args.seconds <= 600.0, "--seconds must be in (0, 600]");
    anyhow::ensure!(
        args.devices > 0 && args.connections > 0 && args.workers > 0,
        "--devices, --connections and --workers must be at least 1"
    );
    anyhow::ensure!(args.gateways.iter().all(|nodes| (1..=8).contains(nodes)), "--gateways takes counts from 1 to 8");
    let settings = Settings {
        devices: args.devices,
        workers: args.workers,
        load: replay::Load { connections: args.connections, duration: Duration::from_secs_f64(args.seconds) },
    };
    let binaries = Binaries::beside_this()?;
    let report = suite::run(&binaries, &settings, &args.scenarios, &args.gateways)?;
    if let Some(parent) = args.report.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.report, serde_json::to_vec_pretty(&report)?)?;
    print_table(&report);
    println!("report: {}", args.report.display());
    Ok(())
}

fn print_table(report: &suite::Report) {
    let machine = &report.machine;
    println!(
        "\n{} CPUs ({}), kernel {}; {} devices, {} connections, {} s per drive, {} workers per node",
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        report.devices,
        report.connections,
        report.seconds,
        report.workers
    );
    let baseline = &report.baseline;
    println!(
        "baseline (actix-web, fixed {}-byte answer): {:.0} requests/s, p99 {:.2} ms, server CPU {:.0} us/request, generator CPU {:.1} s",
        baseline.drive.answer_bytes,
        baseline.drive.requests_per_s,
        baseline.drive.latency_ms.p99,
        baseline.server_cpu_us_per_request,
        baseline.drive.generator_cpu_s
    );
    println!(
        "\n{:<52} {:>12} {:>8} {:>8} {:>10} {:>8} {:>9} {:>9}",
        "scenario", "rate", "ratio", "target", "cpu us/ex", "p99 ms", "redis/ex", "trips/ex"
    );
    let optional =
        |value: Option<f64>, digits: usize| value.map_or_else(|| "-".to_owned(), |value| format!("{value:.digits$}"));
    for line in &report.lines {
        println!(
            "{:<52} {:>12} {:>8.3} {:>8} {:>10.0} {:>8} {:>9} {:>9}",
            line.scenario,
            format!("{:.0} {}", line.rate_per_s, line.unit.trim_end_matches("/s")),
            line.ratio_to_baseline,
            optional(line.target_ratio, 2),
            line.server_cpu_us_per_exchange,
            optional(line.p99_ms, 2),
            optional(line.redis_commands_per_exchange, 1),
            optional(line.redis_round_trips_per_exchange, 1),
        );
    }
    println!("\nrate is per second; ratio is the scenario's exchanges/s over the baseline's requests/s");
    let number = |pointer: &str| {
        let details = serde_json::Value::Object(report.details.clone());
        details.pointer(pointer).and_then(serde_json::Value::as_u64)
    };
    if let (Some(per_device), Some(rss)) =
        (number("/embedded/memory/store_bytes_per_device"), number("/embedded/memory/server_rss_bytes"))
    {
        println!(
            "memory, embedded: {per_device} bytes on disk per device (target 1536), server RSS {:.1} MiB",
            rss as f64 / 1_048_576.0
        );
    }
    if let Some(per_device) = number("/cluster/redis_used_memory_per_device_bytes") {
        println!("memory, Redis: used_memory {per_device} bytes per device (target 1536)");
    }
}
