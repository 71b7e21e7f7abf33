//! Tracing for every role: lines on stderr as text (colours only at a terminal) or one JSON object per line.
//!
//! The level comes from `RUST_LOG` (default [`DEFAULT_FILTER`]). tracing-actix-web logs every 4xx at warn; at
//! fleet scale those are expected (each Digest session starts with a 401 challenge) and counted in
//! `omadm_http_responses_total` instead, so its middleware logs only errors by default. actix-http logs a
//! request it could not parse as an ERROR of `actix_http::h1::dispatcher`: the client's fault, counted as a
//! 400, so that target is off.

use serde::{Deserialize, Serialize};

/// `--log-format text|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The default tracing filter of every role (`RUST_LOG` replaces it).
pub const DEFAULT_FILTER: &str = "info,tracing_actix_web::middleware=error,actix_http::h1::dispatcher=off";

/// Installs the process's subscriber; a second call (tests running a role twice in one process) does nothing.
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colours);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
