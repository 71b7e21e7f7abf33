//! omadm-campaigns: the campaigns role. Fleet-wide rollouts (firmware updates or any DM commands) run by a pure
//! rollout ([`rollout`], [`progress`], [`start`]) inside a thin shell ([`role`]) that reads and writes the
//! campaign records of the Store and follows devices on the Bus (docs/campaigns.md).

pub mod metrics;
pub mod progress;
pub mod role;
pub mod rollout;
pub mod start;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use role::Orchestrator;

/// The consumer group every campaigns replica joins (on sessions, results and alerts).
pub const CONSUMER_GROUP: &str = "omadm-campaigns";

/// Why the role cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CampaignsError {
    #[error("cannot join the event bus: {0}")]
    Bus(String),
}

/// The campaigns role's settings as given (flags, `OMADM_CAMPAIGNS_*`, the `[campaigns]` TOML table).
///
/// ```text
/// --campaigns-tick-ms MS             OMADM_CAMPAIGNS_TICK_MS             tick_ms              200
/// --campaigns-lease-s S              OMADM_CAMPAIGNS_LEASE_S             lease_s              10
/// --campaigns-deadline-sweep-s S     OMADM_CAMPAIGNS_DEADLINE_SWEEP_S    deadline_sweep_s     5
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignsArgs {
    /// How often each running campaign is moved on (selection, starts, gates) [default: 200].
    #[arg(long = "campaigns-tick-ms", env = "OMADM_CAMPAIGNS_TICK_MS", value_name = "MS")]
    pub tick_ms: Option<u64>,
    /// How long one replica holds a campaign before any replica may take it [default: 10].
    #[arg(long = "campaigns-lease-s", env = "OMADM_CAMPAIGNS_LEASE_S", value_name = "SECONDS")]
    pub lease_s: Option<u64>,
    /// How often devices in flight are checked against their deadlines [default: 5].
    #[arg(long = "campaigns-deadline-sweep-s", env = "OMADM_CAMPAIGNS_DEADLINE_SWEEP_S", value_name = "SECONDS")]
    pub deadline_sweep_s: Option<u64>,
}

/// The campaigns role's settings in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignsSettings {
    pub tick_interval: Duration,
    pub lease: Duration,
    pub deadline_sweep: Duration,
}

impl Default for CampaignsSettings {
    fn default() -> Self {
        CampaignsSettings {
            tick_interval: Duration::from_millis(200),
            lease: Duration::from_secs(10),
            deadline_sweep: Duration::from_secs(5),
        }
    }
}

impl CampaignsSettings {
    /// Fills the defaults; a zero duration is refused, naming its flag.
    pub fn resolve(args: &CampaignsArgs) -> Result<CampaignsSettings, String> {
        let defaults = CampaignsSettings::default();
        let positive = |value: Option<u64>, flag: &str| match value {
            Some(0) => Err(format!("--{flag} must be at least 1")),
            other => Ok(other),
        };
        Ok(CampaignsSettings {
            tick_interval: positive(args.tick_ms, "campaigns-tick-ms")?
                .map_or(defaults.tick_interval, Duration::from_millis),
            lease: positive(args.lease_s, "campaigns-lease-s")?.map_or(defaults.lease, Duration::from_secs),
            deadline_sweep: positive(args.deadline_sweep_s, "campaigns-deadline-sweep-s")?
                .map_or(defaults.deadline_sweep, Duration::from_secs),
        })
    }
}
