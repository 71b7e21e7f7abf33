//! The command-line flags of `omadm-devsim`.

use std::path::PathBuf;

use clap::Parser;

/// Plays N simulated OMA DM 2.0 devices against a DM server and prints a JSON report.
#[derive(Debug, Clone, Parser)]
#[command(name = "omadm-devsim", version, about)]
pub struct Args {
    /// Base URL of the DM server, e.g. http://127.0.0.1:8080 (Package#1 goes to <URL>/dm). Repeat it, or give a
    /// comma list, for one server reachable at several addresses (cluster nodes): device i starts at server
    /// i mod n and fails over to the others when one does not answer.
    #[arg(long = "server", value_name = "URL", required = true, value_delimiter = ',')]
    pub servers: Vec<String>,
    /// Send every request to a server drawn at random among --server URLs (a load balancer without affinity,
    /// so one session's packages land on different cluster nodes).
    #[arg(long)]
    pub random_server: bool,
    /// Times a device sends one request again after a 503/429 or after no answer, before the session fails.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub max_retries: u32,
    /// Longest Retry-After a device honours, in seconds (longer ones are cut to this).
    #[arg(long, value_name = "S", default_value_t = 30)]
    pub max_retry_after: u64,
    /// Number of simulated devices (up to 100,000 in one process).
    #[arg(long, default_value_t = 100)]
    pub devices: u32,
    /// Device ids are <P><index>, index zero-padded to 6 digits.
    #[arg(long, value_name = "P", default_value = "devsim-")]
    pub id_prefix: String,
    /// HTTP authentication password of every device.
    #[arg(long, value_name = "PW", default_value = "devsim-secret")]
    pub password: String,
    /// Register every device through the operator API (PUT /api/v1/devices/{id}) before the run; needs --admin-token.
    #[arg(long, requires = "admin_token")]
    pub register: bool,
    /// Operator API bearer token (for --register).
    #[arg(long, value_name = "T", env = "OMADM_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// DevInfo Mod of every device (a profile file can mix models).
    #[arg(long, value_name = "M", default_value = "SIM-1")]
    pub model: String,
    /// DevInfo FwV of every device.
    #[arg(long, value_name = "V", default_value = "1.0.0")]
    pub fwv: String,
    /// Profile file (TOML, or JSON when it ends in .json): devices, id_prefix, password, manufacturer, models.
    /// Its values replace the flags'.
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Sessions each device opens on its own; 0 = only on notification (then --duration is required).
    #[arg(long, value_name = "K", default_value_t = 1)]
    pub sessions_per_device: u32,
    /// Pause between two sessions of one device, in milliseconds (the periodic rate).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub session_interval_ms: u64,
    /// Sessions in flight at once, over the whole fleet.
    #[arg(long, value_name = "C", default_value_t = 64)]
    pub concurrency: usize,
    /// Stop after S seconds even if sessions remain (sessions in flight finish).
    #[arg(long, value_name = "S")]
    pub duration: Option<u64>,
    /// UDP port each device listens on for Package#0 at its own loopback address 127.x.y.z.
    #[arg(long, value_name = "PORT", default_value_t = omadm_client::notification::DEFAULT_NOTIFICATION_PORT)]
    pub notify_port: u16,
    /// Do not listen for notifications (no UDP socket per device).
    #[arg(long)]
    pub no_notify: bool,
    /// DMAcc AuthNoti secret of every device: registered as the device's `auth_secret` (with --register), and
    /// every Package#0 must carry a SHA256-DIGEST made with it (others are dropped and counted). Without it the
    /// devices take unsigned notifications.
    #[arg(long, value_name = "S")]
    pub auth_secret: Option<String>,
    /// List, in the report, the devices that accepted a notification (`notified_devices`) and those whose last
    /// firmware update failed (`firmware_failed_devices`), in id order.
    #[arg(long)]
    pub report_devices: bool,
    /// DMAcc ServerID the devices are provisioned with (must match the server's --server-id).
    #[arg(long, value_name = "ID", default_value = "omadm")]
    pub server_id: String,
    /// Probability (0..=1) that a firmware update fails (FUMO result 410).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub fw_fail_rate: f64,
    /// Report a firmware update's success but keep the old DevInfo FwV (an update that did not take).
    #[arg(long)]
    pub fw_keep_version: bool,
    /// How long a firmware update takes, in milliseconds.
    #[arg(long, value_name = "D", default_value_t = 1000)]
    pub fw_duration_ms: u64,
    /// Probability (0..=1) that a session's Package#1 carries a random Generic Alert.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub alert_rate: f64,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}
