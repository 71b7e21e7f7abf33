//! Operations endpoints: `/metrics` (Prometheus text), `/healthz` (the process runs), `/readyz` (it can serve);
//! all three on the ops listener, the two probes also on the device listener.
//!
//! ```text
//! GET /healthz -> 200 {"status": "ok"}
//! GET /readyz  -> 200 {"status": "ready"} | 503 {"error": "shutting down"} / {"error": "store unavailable: ..."}
//!                                           / {"error": "the outbox is full"} / {"error": "no heartbeat accepted ..."}
//! GET /metrics -> text/plain; version=0.0.4
//! ```
//!
//! Readiness answers 503 as soon as a graceful shutdown begins, so load
//! balancers drain the node while in-flight packages finish; while the store
//! does not answer (probed at each call, with a timeout); while a commit of
//! this node found its outbox shard full (until the relay drained it below
//! that length); and in a cluster while this node's heartbeats do not get
//! through. Each condition clears by itself.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::metrics::metrics;

use crate::cluster::Cluster;
use crate::{AppState, HttpError};

/// Whether the node accepts new work: the role runtime's, shared by the server (which flips it on shutdown)
/// and `/readyz`. Registered as `web::Data<Readiness>`; without it the node counts as ready while the store answers.
pub use omadm_runtime::ops::{METRICS_CONTENT_TYPE, Readiness};

/// How long `/readyz` waits for the store before calling it unavailable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Registers every operations endpoint, for the ops listener (expects `web::Data<AppState>`).
pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/metrics", web::get().to(get_metrics));
    configure_probes(config);
}

/// Registers `/healthz` and `/readyz` alone, for the device listener: load balancers in front of it probe the
/// port they send traffic to, and neither probe says anything about devices (`/metrics` would: it stays on the
/// ops listener).
pub fn configure_probes(config: &mut web::ServiceConfig) {
    config.route("/healthz", web::get().to(get_healthz)).route("/readyz", web::get().to(get_readyz));
}

async fn get_metrics() -> HttpResponse {
    omadm_runtime::ops::metrics_response()
}

async fn get_healthz() -> HttpResponse {
    omadm_runtime::ops::healthz_response()
}

async fn get_readyz(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    // The shutdown, then what other roles in the process raised (the in-process notifier: `notifier: ...`).
    if let Some(readiness) = request.app_data::<web::Data<Readiness>>()
        && let Err(reason) = readiness.verdict()
    {
        return Err(HttpError::unavailable(reason));
    }
    // One request that touches the store (one outbox shard's length; the relay keeps the backlog gauge).
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.outbox_lengths(&[0])).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            metrics().store_errors.with_label_values(&["outbox_lengths"]).inc();
            return Err(HttpError::unavailable(format!("store unavailable: {error}")));
        }
        Err(_elapsed) => {
            metrics().store_errors.with_label_values(&["outbox_lengths"]).inc();
            return Err(HttpError::unavailable(format!(
                "store did not answer within {} s",
                STORE_PROBE_TIMEOUT.as_secs()
            )));
        }
    }
    if let Some(cluster) = request.app_data::<web::Data<Cluster>>() {
        probe_full_shards(cluster, &state).await;
        if let Some(reason) = cluster.degraded() {
            return Err(HttpError::unavailable(reason));
        }
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// Outbox shards that refused a commit as full count as drained once they hold fewer events than then.
async fn probe_full_shards(cluster: &Cluster, state: &AppState) {
    let full = cluster.full_shards();
    if full.is_empty() {
        return;
    }
    let shards: Vec<u32> = full.iter().map(|(shard, _)| *shard).collect();
    let Ok(Ok(lengths)) = tokio::time::timeout(STORE_PROBE_TIMEOUT, state.store.outbox_lengths(&shards)).await else {
        return;
    };
    for ((shard, refused_at), now) in full.iter().zip(lengths) {
        if now < *refused_at {
            cluster.shard_drained(*shard);
        }
    }
}
