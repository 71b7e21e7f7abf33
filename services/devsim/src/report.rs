//! The run's counters and latency histograms, and the final JSON report built from them.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use omadm_client::transport::TransportStats;
use serde::Serialize;

/// Percentiles of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Latencies per HTTP exchange and per whole session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latencies {
    pub exchange: Percentiles,
    pub session: Percentiles,
}

/// Firmware updates the simulated devices ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FirmwareCounts {
    pub succeeded: u64,
    pub failed: u64,
}

/// The final report (printed and written with --report).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub devices: u32,
    pub registered: u64,
    pub elapsed_s: f64,
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Package#2 received over all sessions.
    pub packages: u64,
    /// Status code the devices gave -> how many commands.
    pub commands_by_status: BTreeMap<String, u64>,
    pub sessions_per_s: f64,
    pub latency_ms: Latencies,
    /// Failure kind -> how many sessions (or registrations) failed so.
    pub errors: BTreeMap<String, u64>,
    pub notifications_received: u64,
    /// Package#0s the devices dropped, by reason (`wrong_digest`, `duplicate`, ...); reasons never seen are absent.
    pub notifications_dropped: BTreeMap<String, u64>,
    /// With --report-devices: the devices that accepted a notification, in id order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notified_devices: Option<Vec<String>>,
    pub firmware: FirmwareCounts,
    /// With --report-devices: the devices whose last firmware update failed (its result code was not 200), in
    /// id order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware_failed_devices: Option<Vec<String>>,
    /// Requests the devices sent again (after a 503/429, or after no answer).
    pub retries: u64,
    /// Retries sent to another server URL than the attempt before (a server did not answer).
    pub failovers: u64,
    /// 503 and 429 answers the devices received.
    pub unavailable_answers: u64,
    /// The first failed sessions ([`MAX_FAILURE_SAMPLES`] at most): which device, and the error it met.
    pub failure_samples: Vec<FailureSample>,
}

/// How many failed sessions the report names.
pub const MAX_FAILURE_SAMPLES: usize = 10;

/// One failed session, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureSample {
    pub device_id: String,
    pub error: String,
}

/// One finished session, as the simulator records it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutcome {
    Ok { packages: u64, statuses: Vec<u16>, exchanges: Vec<Duration>, session: Duration },
    Failed { kind: String },
}

/// The mutable part of the collector; one lock per finished session.
#[derive(Debug)]
struct Tallies {
    sessions_ok: u64,
    sessions_failed: u64,
    packages: u64,
    commands_by_status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    exchange_micros: Histogram<u64>,
    session_micros: Histogram<u64>,
    registered: u64,
    notifications_received: u64,
    notifications_dropped: BTreeMap<String, u64>,
    notified_devices: Option<std::collections::BTreeSet<String>>,
    firmware_failed_devices: Option<std::collections::BTreeSet<String>>,
    listeners_set_up: u64,
    firmware: FirmwareCounts,
    transport: TransportStats,
    failure_samples: Vec<FailureSample>,
}

/// Highest latency the histograms hold: one hour, in microseconds (higher values are clamped).
const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Collects results from every device task.
#[derive(Debug)]
pub struct Collector {
    tallies: Mutex<Tallies>,
}

/// Errors building the collector (only a bad histogram configuration).
#[derive(Debug, thiserror::Error)]
#[error("cannot create a latency histogram: {0}")]
pub struct CollectorError(String);

fn histogram() -> Result<Histogram<u64>, CollectorError> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3).map_err(|error| CollectorError(error.to_string()))
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX).clamp(1, HIGHEST_MICROS)
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    if histogram.is_empty() {
        return Percentiles::default();
    }
    let millis = |micros: u64| micros as f64 / 1000.0;
    Percentiles {
        p50: millis(histogram.value_at_quantile(0.50)),
        p90: millis(histogram.value_at_quantile(0.90)),
        p99: millis(histogram.value_at_quantile(0.99)),
        max: millis(histogram.max()),
    }
}

impl Collector {
    pub fn new() -> Result<Collector, CollectorError> {
        Ok(Collector {
            tallies: Mutex::new(Tallies {
                sessions_ok: 0,
                sessions_failed: 0,
                packages: 0,
                commands_by_status: BTreeMap::new(),
                errors: BTreeMap::new(),
                exchange_micros: histogram()?,
                session_micros: histogram()?,
                registered: 0,
                notifications_received: 0,
                notifications_dropped: BTreeMap::new(),
                notified_devices: None,
                firmware_failed_devices: None,
                listeners_set_up: 0,
                firmware: FirmwareCounts::default(),
                transport: TransportStats::default(),
                failure_samples: Vec::new(),
            }),
        })
    }

    fn with<T>(&self, change: impl FnOnce(&mut Tallies) -> T) -> T {
        change(&mut self.tallies.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn record_session(&self, outcome: SessionOutcome) {
        self.with(|tallies| match outcome {
            SessionOutcome::Ok { packages, statuses, exchanges, session } => {
                tallies.sessions_ok += 1;
                tallies.packages += packages;
                for status in statuses {
                    *tallies.commands_by_status.entry(status).or_default() += 1;
                }
                for exchange in exchanges {
                    tallies.exchange_micros.saturating_record(micros(exchange));
                }
                tallies.session_micros.saturating_record(micros(session));
            }
            SessionOutcome::Failed { kind } => {
                tallies.sessions_failed += 1;
                *tallies.errors.entry(kind).or_default() += 1;
            }
        });
    }

    pub fn record_error(&self, kind: &str) {
        self.with(|tallies| *tallies.errors.entry(kind.to_owned()).or_default() += 1);
    }

    pub fn record_registered(&self) {
        self.with(|tallies| tallies.registered += 1);
    }

    /// A notification `device_id` accepted; named in the report when `named`.
    pub fn record_notification(&self, device_id: &str, named: bool) {
        self.with(|tallies| {
            tallies.notifications_received += 1;
            if named {
                tallies.notified_devices.get_or_insert_default().insert(device_id.to_owned());
            }
        });
    }

    /// Adds one device's dropped notifications (when the device is done).
    pub fn record_notification_drops(&self, counts: &omadm_client::notification::NotificationCounts) {
        self.with(|tallies| {
            for (kind, count) in &counts.dropped {
                *tallies.notifications_dropped.entry(kind.name().to_owned()).or_default() += count;
            }
        });
    }

    /// One more device has tried to bind its notification socket; returns how many have.
    pub fn record_listener_set_up(&self) -> u64 {
        self.with(|tallies| {
            tallies.listeners_set_up += 1;
            tallies.listeners_set_up
        })
    }

    /// The outcome of one firmware update of `device_id`; with `named`, a failure names the device in the report
    /// (and a later success of the same device takes the name out).
    pub fn record_firmware(&self, device_id: &str, succeeded: bool, named: bool) {
        self.with(|tallies| {
            if succeeded {
                tallies.firmware.succeeded += 1;
            } else {
                tallies.firmware.failed += 1;
            }
            if named {
                let failed = tallies.firmware_failed_devices.get_or_insert_default();
                if succeeded {
                    failed.remove(device_id);
                } else {
                    failed.insert(device_id.to_owned());
                }
            }
        });
    }

    /// Names a failed session in the report, while there is room for it.
    pub fn record_failure_sample(&self, device_id: &str, error: &str) {
        self.with(|tallies| {
            if tallies.failure_samples.len() < MAX_FAILURE_SAMPLES {
                tallies
                    .failure_samples
                    .push(FailureSample { device_id: device_id.to_owned(), error: error.to_owned() });
            }
        });
    }

    /// Adds one device's transport counters (when the device is done).
    pub fn record_transport(&self, stats: TransportStats) {
        self.with(|tallies| {
            tallies.transport.retries += stats.retries;
            tallies.transport.failovers += stats.failovers;
            tallies.transport.unavailable_answers += stats.unavailable_answers;
            tallies.transport.challenges_answered += stats.challenges_answered;
        });
    }

    /// (sessions ok, sessions failed), for the progress line.
    pub fn progress(&self) -> (u64, u64) {
        self.with(|tallies| (tallies.sessions_ok, tallies.sessions_failed))
    }

    pub fn report(&self, devices: u32, elapsed: Duration) -> Report {
        self.with(|tallies| Report {
            devices,
            registered: tallies.registered,
            elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            sessions_ok: tallies.sessions_ok,
            sessions_failed: tallies.sessions_failed,
            packages: tallies.packages,
            commands_by_status: tallies
                .commands_by_status
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            sessions_per_s: (crate::schedule::rate_per_second(tallies.sessions_ok, elapsed) * 100.0).round() / 100.0,
            latency_ms: Latencies {
                exchange: percentiles(&tallies.exchange_micros),
                session: percentiles(&tallies.session_micros),
            },
            errors: tallies.errors.clone(),
            notifications_received: tallies.notifications_received,
            notifications_dropped: tallies.notifications_dropped.clone(),
            notified_devices: tallies.notified_devices.as_ref().map(|devices| devices.iter().cloned().collect()),
            firmware: tallies.firmware.clone(),
            firmware_failed_devices: tallies
                .firmware_failed_devices
                .as_ref()
                .map(|devices| devices.iter().cloned().collect()),
            retries: tallies.transport.retries,
            failovers: tallies.transport.failovers,
            unavailable_answers: tallies.transport.unavailable_answers,
            failure_samples: tallies.failure_samples.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(statuses: &[u16], exchange_ms: &[u64], session_ms: u64) -> SessionOutcome {
        SessionOutcome::Ok {
            packages: exchange_ms.len() as u64,
            statuses: statuses.to_vec(),
            exchanges: exchange_ms.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            session: Duration::from_millis(session_ms),
        }
    }

    #[test]
    fn percentiles_of_one_to_hundred_ms() {
        let collector = Collector::new().unwrap();
        for ms in 1..=100 {
            collector.record_session(ok(&[200], &[ms], ms * 2));
        }
        let report = collector.report(100, Duration::from_secs(4));
        let exchange = report.latency_ms.exchange;
        // hdrhistogram keeps 3 significant digits: within 0.1 %.
        assert!((exchange.p50 - 50.0).abs() <= 0.05, "{exchange:?}");
        assert!((exchange.p90 - 90.0).abs() <= 0.1, "{exchange:?}");
        assert!((exchange.p99 - 99.0).abs() <= 0.1, "{exchange:?}");
        assert!((exchange.max - 100.0).abs() <= 0.1, "{exchange:?}");
        assert!((report.latency_ms.session.max - 200.0).abs() <= 0.2);
        assert_eq!(report.sessions_per_s, 25.0);
    }

    #[test]
    fn counts_statuses_packages_and_errors() {
        let collector = Collector::new().unwrap();
        collector.record_session(ok(&[200, 200, 404], &[3, 4], 8));
        collector.record_session(ok(&[200], &[5], 5));
        collector.record_session(SessionOutcome::Failed { kind: "transport".into() });
        collector.record_error("register");
        collector.record_firmware("d", false, false);
        let stats = TransportStats { retries: 3, failovers: 1, unavailable_answers: 2, challenges_answered: 1 };
        collector.record_transport(stats);
        collector.record_transport(stats);
        for index in 0..12 {
            collector.record_failure_sample(&format!("d{index}"), "the server answered HTTP 410: gone");
        }
        let report = collector.report(3, Duration::from_secs(1));
        assert_eq!(report.sessions_ok, 2);
        assert_eq!(report.sessions_failed, 1);
        assert_eq!(report.packages, 3);
        assert_eq!(report.commands_by_status, BTreeMap::from([("200".into(), 3), ("404".into(), 1)]));
        assert_eq!(report.errors, BTreeMap::from([("register".into(), 1), ("transport".into(), 1)]));
        assert_eq!(report.firmware, FirmwareCounts { succeeded: 0, failed: 1 });
        assert_eq!((report.retries, report.failovers, report.unavailable_answers), (6, 2, 4));
        assert_eq!(report.failure_samples.len(), MAX_FAILURE_SAMPLES);
        assert_eq!(report.failure_samples[0].device_id, "d0");
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "sessions_ok",
            "sessions_failed",
            "packages",
            "commands_by_status",
            "sessions_per_s",
            "errors",
            "retries",
            "failovers",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert!(json["latency_ms"]["exchange"]["p99"].is_number());
        assert!(json["latency_ms"]["session"]["max"].is_number());
    }

    #[test]
    fn an_empty_run_reports_zeros() {
        let report = Collector::new().unwrap().report(0, Duration::ZERO);
        assert_eq!(report.latency_ms, Latencies::default());
        assert_eq!(report.sessions_per_s, 0.0);
    }
}
