//! The notifier's Prometheus metrics, registered in the process's one registry (`omadm_core::metrics`).
//!
//! ```text
//! omadm_notifications_total{transport="push|udp|sms|none", outcome="sent|failed|collapsed"}
//! omadm_notification_dispatch_seconds{transport="udp"}     request read -> Package#0 handed to the transport
//! omadm_notification_fallbacks_total{transport="udp|sms"}  sent by this transport after an earlier one failed
//! omadm_sms_submits_total{outcome="accepted|throttled|refused|error"}   one per submit_sm try (SMS transport)
//! omadm_smpp_binds_total{outcome="bound|refused|error"}                 one per bind try (transmitter or transceiver)
//! omadm_sms_receipts_total{outcome="delivered|undelivered|pending|earlier_segment|duplicate|unmatched|no_record|error"}
//!                                                                       one per delivery receipt (deliver_sm) read
//! omadm_push_sends_total{outcome="accepted|refused|unregistered|error|timeout"}  one per push gateway request
//! omadm_notification_rate_wait_seconds_total{transport="push|udp|sms"}  time sends waited for the shared rate
//! omadm_notification_answer_seconds{transport="push|udp|sms"}  Package#0 sent -> the device's next session started
//! ```

use std::sync::OnceLock;

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts};

pub struct NotifierMetrics {
    /// Requests by outcome, and the transport that was used (`none` when no transport was tried).
    pub notifications: IntCounterVec,
    /// From reading the request to the transport's accepting the package, by transport.
    pub dispatch_seconds: HistogramVec,
    /// Requests sent by a later transport of the device's order after an earlier one failed, by the one that sent.
    pub notification_fallbacks: IntCounterVec,
    /// submit_sm tries of the SMS transport, by outcome (`error`: the connection failed or timed out).
    pub sms_submits: IntCounterVec,
    /// bind_transmitter tries of the SMS transport, by outcome.
    pub smpp_binds: IntCounterVec,
    /// SMSC delivery receipts, by what they made of their request ([`crate::receipts::Filed`]).
    pub sms_receipts: IntCounterVec,
    /// Requests to the push gateway, by outcome (`unregistered`: the RegID is gone and was cleared; `error`: no
    /// connection; `timeout`: no answer in time).
    pub push_sends: IntCounterVec,
    /// From a Package#0's send to the start of the session that answered it, by transport: how long devices
    /// take to call back (its count is the answered notifications).
    pub answer_seconds: HistogramVec,
    /// Seconds sends waited for a token of their transport's shared rate (`rate::SharedRate`).
    pub rate_wait_seconds: CounterVec,
}

/// 0.1 s to a day: a device on an IP network calls back within a second or two, one asleep on a cellular
/// network may take minutes or hours.
const ANSWER_BUCKETS: &[f64] =
    &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0];

/// 0.1 ms to 5 s: a UDP send takes well under a millisecond, the store round trips dominate.
const DISPATCH_BUCKETS: &[f64] = &[0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The notifier's metrics, registered on first use.
pub fn metrics() -> &'static NotifierMetrics {
    static METRICS: OnceLock<NotifierMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let registry = &omadm_core::metrics::metrics().registry;
        let notifications = IntCounterVec::new(
            Opts::new("omadm_notifications_total", "Notification requests handled, by transport and outcome."),
            &["transport", "outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let dispatch_seconds = HistogramVec::new(
            HistogramOpts::new(
                "omadm_notification_dispatch_seconds",
                "Seconds from reading a notification request to its Package#0 leaving, by transport.",
            )
            .buckets(DISPATCH_BUCKETS.to_vec()),
            &["transport"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let notification_fallbacks = IntCounterVec::new(
            Opts::new(
                "omadm_notification_fallbacks_total",
                "Notifications sent by a later transport of the device's order after an earlier one failed.",
            ),
            &["transport"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let sms_submits = IntCounterVec::new(
            Opts::new("omadm_sms_submits_total", "submit_sm tries of the SMS transport, by outcome."),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let smpp_binds = IntCounterVec::new(
            Opts::new("omadm_smpp_binds_total", "Bind tries of the SMS transport, by outcome."),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let sms_receipts = IntCounterVec::new(
            Opts::new("omadm_sms_receipts_total", "SMSC delivery receipts read by the SMS transport, by outcome."),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(sms_receipts.clone()));
        let push_sends = IntCounterVec::new(
            Opts::new("omadm_push_sends_total", "Requests of the push transport to the push gateway, by outcome."),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(push_sends.clone()));
        let answer_seconds = HistogramVec::new(
            HistogramOpts::new(
                "omadm_notification_answer_seconds",
                "Seconds from a Package#0's send to the start of the device's next session, by transport.",
            )
            .buckets(ANSWER_BUCKETS.to_vec()),
            &["transport"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(answer_seconds.clone()));
        let rate_wait_seconds = CounterVec::new(
            Opts::new(
                "omadm_notification_rate_wait_seconds_total",
                "Seconds sends waited for their transport's shared rate, by transport.",
            ),
            &["transport"],
        )
        .unwrap_or_else(|_| unreachable_metric());
        let _ = registry.register(Box::new(rate_wait_seconds.clone()));
        let _ = registry.register(Box::new(notifications.clone()));
        let _ = registry.register(Box::new(dispatch_seconds.clone()));
        let _ = registry.register(Box::new(notification_fallbacks.clone()));
        let _ = registry.register(Box::new(sms_submits.clone()));
        let _ = registry.register(Box::new(smpp_binds.clone()));
        NotifierMetrics {
            notifications,
            dispatch_seconds,
            notification_fallbacks,
            sms_submits,
            smpp_binds,
            sms_receipts,
            push_sends,
            answer_seconds,
            rate_wait_seconds,
        }
    })
}

/// The names and labels above are valid constants, so building these metrics cannot fail.
fn unreachable_metric() -> ! {
    unreachable!("notifier metric definitions are constant and valid")
}
