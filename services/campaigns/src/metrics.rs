//! The campaigns role's Prometheus metrics, registered in the process's one registry (`omadm_core::metrics`).
//!
//! ```text
//! omadm_campaign_devices_total{state}            device records written in each state (starts: `notified`)
//! omadm_campaign_states_total{state}             campaigns the orchestrator moved to each state
//! omadm_campaign_conflicts_total{path}           writes that met a newer revision (tick, deadline, progress, join)
//! omadm_campaign_joined_total                    devices taken into dynamic campaigns after their start
//! omadm_campaign_rate_changes_total{reason}      start rate changes (ramp, failures, outbox_backlog, recovered)
//! omadm_campaign_tick_seconds                    one pass over every running campaign
//! ```

use std::sync::OnceLock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub struct CampaignMetrics {
    pub devices: IntCounterVec,
    pub campaign_states: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub joined: IntCounter,
    pub rate_changes: IntCounterVec,
    pub tick_seconds: Histogram,
}

pub fn metrics() -> &'static CampaignMetrics {
    static METRICS: OnceLock<CampaignMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = &omadm_core::metrics::metrics().registry;
        let counter = |name: &str, help: &str, label: &str| {
            let counter = IntCounterVec::new(Opts::new(name, help), &[label])
                .unwrap_or_else(|error| unreachable!("metric {name} is well formed: {error}"));
            // Registered once per process (OnceLock); a second registry entry would be a bug.
            let _ = registry.register(Box::new(counter.clone()));
            counter
        };
        let tick_seconds = Histogram::with_opts(
            HistogramOpts::new("omadm_campaign_tick_seconds", "One pass of the ticker over the running campaigns.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .unwrap_or_else(|error| unreachable!("the tick histogram is well formed: {error}"));
        let _ = registry.register(Box::new(tick_seconds.clone()));
        let joined = IntCounter::new(
            "omadm_campaign_joined_total",
            "Devices taken into dynamic campaigns after their start (they matched the target later).",
        )
        .unwrap_or_else(|error| unreachable!("the joined counter is well formed: {error}"));
        let _ = registry.register(Box::new(joined.clone()));
        CampaignMetrics {
            devices: counter("omadm_campaign_devices_total", "Campaign device records written, by state.", "state"),
            campaign_states: counter(
                "omadm_campaign_states_total",
                "Campaigns the orchestrator moved, by the state they entered.",
                "state",
            ),
            conflicts: counter(
                "omadm_campaign_conflicts_total",
                "Campaign writes that met a newer revision and were read again, by path.",
                "path",
            ),
            joined,
            rate_changes: counter(
                "omadm_campaign_rate_changes_total",
                "Changes of a campaign's start rate in force, by reason (ramp, failures, outbox_backlog, recovered).",
                "reason",
            ),
            tick_seconds,
        }
    })
}
