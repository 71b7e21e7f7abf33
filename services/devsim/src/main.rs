//! `omadm-devsim`: parses the flags, registers the fleet if asked, runs it, prints and writes the JSON report.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use omadm_client::retry::{RetryPolicy, ServerSelection};
use omadm_devsim::cli::Args;
use omadm_devsim::fumo::FirmwareBehaviour;
use omadm_devsim::profile::FleetProfile;
use omadm_devsim::register::{NotifyRegistration, register_fleet};
use omadm_devsim::report::Collector;
use omadm_devsim::schedule::Bounds;
use omadm_devsim::sim::{RunConfig, run};

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => match runtime.block_on(devsim(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("omadm-devsim: error: {error:#}");
                ExitCode::from(2)
            }
        },
        Err(error) => {
            eprintln!("omadm-devsim: error: cannot start the runtime: {error}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when every session succeeded.
async fn devsim(args: Args) -> anyhow::Result<bool> {
    let mut profile = FleetProfile::from_flags(args.devices, &args.id_prefix, &args.password, &args.model, &args.fwv);
    if let Some(path) = &args.profile {
        profile = profile.overlay_file(path)?;
    }
    profile.validate()?;
    let bounds = Bounds {
        sessions_per_device: args.sessions_per_device,
        interval: Duration::from_millis(args.session_interval_ms),
        duration: args.duration.map(Duration::from_secs),
    };
    bounds.validate(args.concurrency)?;
    for (name, rate) in [("--fw-fail-rate", args.fw_fail_rate), ("--alert-rate", args.alert_rate)] {
        anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} must be between 0 and 1, not {rate}");
    }
    let collector = Arc::new(Collector::new()?);
    let mut registration_failed = false;
    if args.register {
        let token = args.admin_token.as_deref().context("--register needs --admin-token")?;
        let http = reqwest::Client::new();
        let notify = NotifyRegistration {
            port: (!args.no_notify).then_some(args.notify_port),
            auth_secret: args.auth_secret.clone(),
        };
        let failed = register_fleet(&http, &args.servers, token, &profile, args.concurrency, &notify, &collector).await;
        if failed > 0 {
            eprintln!("omadm-devsim: {failed} of {} registrations failed", profile.devices);
            registration_failed = true;
        }
    }
    let config = RunConfig {
        servers: args.servers.clone(),
        selection: if args.random_server { ServerSelection::RandomPerRequest } else { ServerSelection::Sticky },
        retry: RetryPolicy {
            max_retries: args.max_retries,
            max_retry_after: Duration::from_secs(args.max_retry_after),
            ..RetryPolicy::default()
        },
        server_id: args.server_id.clone(),
        auth_secret: args.auth_secret.clone(),
        report_devices: args.report_devices,
        bounds,
        concurrency: args.concurrency,
        notify_port: (!args.no_notify).then_some(args.notify_port),
        firmware: FirmwareBehaviour {
            fail_rate: args.fw_fail_rate,
            keep_version: args.fw_keep_version,
            duration: Duration::from_millis(args.fw_duration_ms),
        },
        alert_rate: args.alert_rate,
        progress: true,
    };
    let report = run(profile, config, collector).await;
    let json = serde_json::to_string_pretty(&report)?;
    println!("{json}");
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report.sessions_failed == 0 && !registration_failed)
}
