//! Prometheus metrics of the server, registered once in one registry.
//!
//! Labels are bounded: package types, command names, status classes, endpoints
//! and topics; never device or session ids.

use std::sync::OnceLock;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Every metric of the process. Obtain it with [`metrics()`].
pub struct Metrics {
    pub registry: Registry,
    /// Sessions started (a Package#1 accepted).
    pub sessions_started: IntCounterVec,
    /// Sessions ended, by outcome: `ended` (END sent) or `expired`.
    pub sessions_ended: IntCounterVec,
    /// Sessions open right now on this node.
    pub sessions_active: IntGauge,
    /// Open sessions a new Package#1 of their device ended, by `before_package3` (`true`: no Package#3 of
    /// it arrived, so its commands were not counted as delivered).
    pub sessions_superseded: IntCounterVec,
    /// Package#1s refused with 429 because their device opened sessions faster than its rate.
    pub session_rate_limited: IntCounter,
    /// Device uploads refused, by `reason`: `item_too_large` (413), `device_bytes`, `device_items` (413, the
    /// device's quota), `total_bytes` (507, the cap on all device uploads).
    pub uploads_refused: IntCounterVec,
    /// Repository bytes sent and received, by `direction` (`download`, `upload`; operator and device alike).
    pub repository_bytes: IntCounterVec,
    /// Repository answers to downloads, by `kind`: `full` (200), `partial` (206), `not_modified` (304),
    /// `unsatisfiable` (416).
    pub repository_downloads: IntCounterVec,
    /// Repository downloads whose bytes are being sent right now on this node.
    pub repository_downloads_active: IntGauge,
    /// Content engine failures, by `operation` (`write`, `read`, `delete`).
    pub content_errors: IntCounterVec,
    /// Packages received and sent, by `package` (`1`, `3`, `2`) and `direction` (`in`, `out`).
    pub packages: IntCounterVec,
    /// Package sizes in bytes, by `package`.
    pub package_bytes: HistogramVec,
    /// Commands answered by devices, by `command` (HGET, GET...) and `class` (2xx, 3xx, 4xx, 5xx, 1xxx).
    pub command_results: IntCounterVec,
    /// Commands queued, by `command` and `origin` (operator, inventory).
    pub commands_queued: IntCounterVec,
    /// Generic Alerts received, by answered `status`.
    pub alerts: IntCounterVec,
    /// HTTP request latency in seconds, by `endpoint` (route pattern) and `method`.
    pub http_latency: HistogramVec,
    /// HTTP responses, by `endpoint`, `method` and `status` (class, e.g. 4xx).
    pub http_responses: IntCounterVec,
    /// Device authentication failures, by `reason`: missing, malformed, unsupported_scheme, device_mismatch,
    /// bad_credentials (wrong password or unknown device: no label tells them apart), stale_nonce, replayed.
    pub auth_failures: IntCounterVec,
    /// Requests refused with 429 by an authentication throttle, by `scope`: device, address, api_token.
    pub auth_throttled: IntCounterVec,
    /// Store operation failures, by `operation`.
    pub store_errors: IntCounterVec,
    /// Bus publish failures, by `topic`.
    pub bus_errors: IntCounterVec,
    /// Events published, by `topic`.
    pub events_published: IntCounterVec,
    /// Events waiting in the outbox shards this node relays (summed over nodes: the whole outbox).
    pub outbox_backlog: IntGauge,
    /// Commits refused because their outbox shard was full (`StoreError::OutboxFull`); counted by the caller.
    pub outbox_full: IntCounter,
    /// Scheduled events (`WriteBatch::scheduled`) this node's relay moved into the outbox at their time.
    pub scheduled_released: IntCounter,
    /// Notifications requested (a `notification.requested` event and its record committed).
    pub notifications_requested: IntCounter,
    /// Push registrations and unregistrations at the device edge (D.2.4), by `action` (`register`,
    /// `unregister`) and `outcome` (`stored`, `unchanged`, `cleared`, `other_reg_id`, `refused`).
    pub push_registrations: IntCounterVec,
    /// Device requests this node tried to forward to another node, by `outcome`: `relayed` (the owner
    /// answered), `owner_unreachable` (handled here instead), `refused` (the owner refused the internal
    /// token), `hop_limit` (a lease held elsewhere after the last allowed hop).
    pub forwards: IntCounterVec,
    /// Session steps for which this node took a device's session over from another lease
    /// (rehydrated from the store, or the lease epoch moved since this node's last step).
    pub lease_takeovers: IntCounterVec,
    /// Session steps whose commit the store refused because the lease had moved (nothing written).
    pub fenced_steps: IntCounterVec,
    /// Retransmitted Package#3s answered with the Package#2 already sent, without a second step.
    pub replayed_packages: IntCounterVec,
    /// Live gateway nodes in this node's view (suspects excluded).
    pub live_nodes: IntGauge,
    /// Requests the Redis store engine sent, by store `operation` (load_session, commit...).
    pub redis_round_trips: IntCounterVec,
    /// Redis Cluster connections built again from the seed nodes after a node stopped answering.
    pub redis_cluster_rebuilds: IntCounter,
    /// Session lease decisions, by `outcome`: granted, renewed, taken_over, held (load_session), fenced (commit).
    pub store_leases: IntCounterVec,
    /// Kafka records sent, by `topic` and `outcome`: `acknowledged`, `retried` (failed, sent again) or `failed`.
    pub bus_records_sent: IntCounterVec,
    /// Kafka delivery failures, by `topic` and `error`: `timed_out`, `queue_full`, `broker`, `rejected`, `fatal`.
    pub bus_delivery_failures: IntCounterVec,
    /// Time for one `publish` call to return, in seconds, by `engine` (`jsonl`, `kafka`).
    pub bus_publish_duration: HistogramVec,
    /// Events handed to consumers, by `topic`.
    pub bus_events_consumed: IntCounterVec,
    /// Records on the bus that are not events of their topic, skipped by consumers, by `topic`.
    pub bus_corrupt_records: IntCounterVec,
    /// Consumer failures, by `engine` and `operation` (`fetch`, `commit`).
    pub bus_consumer_errors: IntCounterVec,
    /// JSONL topic files rotated into segments, by `topic`.
    pub bus_segments_rotated: IntCounterVec,
    /// JSONL segments deleted past retention, by `topic`.
    pub bus_segments_deleted: IntCounterVec,
    /// Records a consumer group never read because retention deleted them first, by `topic`.
    pub bus_consumer_skipped_records: IntCounterVec,
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Latency buckets from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Package size buckets from 128 B to 4 MiB.
const SIZE_BUCKETS: &[f64] = &[128.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0, 262_144.0, 1_048_576.0, 4_194_304.0];

impl Metrics {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(metric.clone()));
            metric
        };
        let plain_counter = |name: &str, help: &str| {
            let metric = IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(metric.clone()));
            metric
        };
        let gauge = |name: &str, help: &str| {
            let metric = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(metric.clone()));
            metric
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let metric = HistogramVec::new(opts, labels).unwrap_or_else(|_| unreachable_metric());
            let _ = registry.register(Box::new(metric.clone()));
            metric
        };
        Metrics {
            sessions_started: counter("omadm_sessions_started_total", "DM sessions started.", &[]),
            sessions_ended: counter("omadm_sessions_ended_total", "DM sessions ended, by outcome.", &["outcome"]),
            sessions_active: gauge("omadm_sessions_active", "DM sessions open on this node."),
            sessions_superseded: counter(
                "omadm_sessions_superseded_total",
                "Open sessions ended by a new Package#1 of their device, by whether no Package#3 had arrived.",
                &["before_package3"],
            ),
            session_rate_limited: plain_counter(
                "omadm_session_rate_limited_total",
                "Package#1s refused (429) because their device opened sessions faster than its rate.",
            ),
            uploads_refused: counter(
                "omadm_uploads_refused_total",
                "Device uploads refused by a quota or cap, by reason.",
                &["reason"],
            ),
            repository_bytes: counter(
                "omadm_repository_bytes_total",
                "Data Repository bytes sent (download) and received (upload).",
                &["direction"],
            ),
            repository_downloads: counter(
                "omadm_repository_downloads_total",
                "Data Repository download answers, by kind (full, partial, not_modified, unsatisfiable).",
                &["kind"],
            ),
            repository_downloads_active: gauge(
                "omadm_repository_downloads_active",
                "Data Repository downloads whose bytes are being sent on this node.",
            ),
            content_errors: counter(
                "omadm_content_errors_total",
                "Content engine failures, by operation (write, read, delete).",
                &["operation"],
            ),
            packages: counter(
                "omadm_packages_total",
                "DM packages, by package and direction.",
                &["package", "direction"],
            ),
            package_bytes: histogram("omadm_package_bytes", "DM package sizes in bytes.", &["package"], SIZE_BUCKETS),
            command_results: counter(
                "omadm_command_results_total",
                "Command statuses reported by devices.",
                &["command", "class"],
            ),
            commands_queued: counter("omadm_commands_queued_total", "Commands queued.", &["command", "origin"]),
            alerts: counter("omadm_alerts_total", "Generic Alerts received, by answered status.", &["status"]),
            http_latency: histogram(
                "omadm_http_request_duration_seconds",
                "HTTP request latency.",
                &["endpoint", "method"],
                LATENCY_BUCKETS,
            ),
            http_responses: counter(
                "omadm_http_responses_total",
                "HTTP responses, by status class.",
                &["endpoint", "method", "status"],
            ),
            auth_failures: counter("omadm_auth_failures_total", "Device authentication failures.", &["reason"]),
            auth_throttled: counter(
                "omadm_auth_throttled_total",
                "Requests refused by an authentication throttle (429), by scope.",
                &["scope"],
            ),
            store_errors: counter("omadm_store_errors_total", "Store operation failures.", &["operation"]),
            bus_errors: counter("omadm_bus_errors_total", "Bus publish failures.", &["topic"]),
            events_published: counter("omadm_events_published_total", "Events published.", &["topic"]),
            outbox_backlog: gauge("omadm_outbox_backlog", "Events waiting in the outbox shards this node relays."),
            outbox_full: plain_counter(
                "omadm_outbox_full_total",
                "Commits refused because their outbox shard held its bound of events.",
            ),
            scheduled_released: plain_counter(
                "omadm_scheduled_events_released_total",
                "Scheduled events moved into the outbox at their time by this node's relay.",
            ),
            notifications_requested: plain_counter(
                "omadm_notifications_requested_total",
                "Notifications requested: an event and its notification record committed.",
            ),
            push_registrations: counter(
                "omadm_push_registrations_total",
                "Push registrations and unregistrations at the device edge, by action and outcome.",
                &["action", "outcome"],
            ),
            forwards: counter(
                "omadm_forwards_total",
                "Device requests forwarded to another node, by outcome.",
                &["outcome"],
            ),
            lease_takeovers: counter(
                "omadm_lease_takeovers_total",
                "Session steps that took a device's session over from another lease.",
                &[],
            ),
            fenced_steps: counter(
                "omadm_fenced_steps_total",
                "Session steps refused because the device's lease had moved.",
                &[],
            ),
            replayed_packages: counter(
                "omadm_replayed_packages_total",
                "Retransmitted Package#3s answered with the Package#2 already sent.",
                &[],
            ),
            live_nodes: gauge("omadm_cluster_live_nodes", "Live gateway nodes in this node's view."),
            redis_round_trips: counter(
                "omadm_redis_round_trips_total",
                "Requests the Redis store engine sent, by store operation.",
                &["operation"],
            ),
            redis_cluster_rebuilds: plain_counter(
                "omadm_redis_cluster_rebuilds_total",
                "Redis Cluster connections built again from the seed nodes after a node stopped answering.",
            ),
            store_leases: counter("omadm_store_leases_total", "Session lease decisions, by outcome.", &["outcome"]),
            bus_records_sent: counter(
                "omadm_bus_records_sent_total",
                "Kafka records sent, by topic and outcome.",
                &["topic", "outcome"],
            ),
            bus_delivery_failures: counter(
                "omadm_bus_delivery_failures_total",
                "Kafka delivery failures, by topic and error class.",
                &["topic", "error"],
            ),
            bus_publish_duration: histogram(
                "omadm_bus_publish_duration_seconds",
                "Time for one publish call to return.",
                &["engine"],
                LATENCY_BUCKETS,
            ),
            bus_events_consumed: counter("omadm_bus_events_consumed_total", "Events handed to consumers.", &["topic"]),
            bus_corrupt_records: counter(
                "omadm_bus_corrupt_records_total",
                "Records that are not events of their topic, skipped by consumers.",
                &["topic"],
            ),
            bus_consumer_errors: counter(
                "omadm_bus_consumer_errors_total",
                "Bus consumer failures, by engine and operation.",
                &["engine", "operation"],
            ),
            bus_segments_rotated: counter(
                "omadm_bus_segments_rotated_total",
                "JSONL topic files rotated into segments.",
                &["topic"],
            ),
            bus_segments_deleted: counter(
                "omadm_bus_segments_deleted_total",
                "JSONL segments deleted past retention.",
                &["topic"],
            ),
            bus_consumer_skipped_records: counter(
                "omadm_bus_consumer_skipped_records_total",
                "Records a consumer group never read because retention deleted them first.",
                &["topic"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

/// The metric definitions above are constants; prometheus only refuses
/// malformed names, which a test checks (`all_metrics_register`).
#[cold]
fn unreachable_metric<T>() -> T {
    unreachable!("metric definitions are constant and valid")
}

/// The status class label of a DM or HTTP status: `2xx`, `3xx`, `4xx`, `5xx` or `1xxx`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        1000..=1999 => "1xxx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_metrics_register() {
        let metrics = metrics();
        metrics.sessions_started.with_label_values::<&str>(&[]).inc();
        metrics.packages.with_label_values(&["1", "in"]).inc();
        metrics.outbox_full.inc();
        let text = metrics.render();
        assert!(text.contains("omadm_outbox_full_total 1"), "{text}");
        assert!(text.contains("omadm_sessions_started_total 1"), "{text}");
        assert!(text.contains("omadm_packages_total{direction=\"in\",package=\"1\"} 1"), "{text}");
        assert!(text.contains("omadm_sessions_active 0"), "{text}");
    }
}
