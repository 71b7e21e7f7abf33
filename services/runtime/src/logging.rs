//! Tracing for every role: lines on stderr as text (colours only at a terminal) or one JSON object per line.
//!
//! The level comes from `RUST_LOG` (default `info`). tracing-actix-web logs every 4xx at warn; at fleet scale
//! those are expected (each Digest session starts with a 401 challenge) and counted in
//! `omadm_http_responses_total` instead, so its middleware logs only errors by default.

use serde::{Deserialize, Serialize};

/// `--log-format text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's subscriber; a second call (tests running a role twice in one process) does nothing.
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tracing_actix_web::middleware=error"));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
