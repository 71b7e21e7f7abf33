//! The operations endpoints every role serves on its ops listener, and the readiness roles report into.
//!
//! ```text
//! GET /healthz -> 200 {"status": "ok"}                      the process runs
//! GET /readyz  -> 200 {"status": "ready"} | 503 {"error": "shutting down"} / {"error": "<condition>: <reason>"}
//! GET /metrics -> text/plain; version=0.0.4                 every omadm_* metric, labels bounded
//! ```
//!
//! A role adds its own probes (the gateway asks the store and the cluster too); [`Readiness`] holds what every
//! role has: the shutdown flag ([`crate::shutdown::Phase::StopAccepting`] sets it) and named conditions a
//! component raises and clears by itself (`consumer: the bus does not answer`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{HttpResponse, web};
use omadm_core::metrics::metrics;

/// The Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the process accepts new work. Registered as `web::Data<Readiness>` on the listeners that answer
/// `/readyz`; shared by everything that stops the role or notices it cannot serve.
#[derive(Debug, Default)]
pub struct Readiness {
    shutting_down: AtomicBool,
    /// Raised conditions by name: the reason each one gives.
    conditions: Mutex<BTreeMap<&'static str, String>>,
}

impl Readiness {
    pub fn new() -> Self {
        Readiness::default()
    }

    /// From now on `/readyz` answers 503.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// `/readyz` answers 503 with `reason` until [`Readiness::clear`] of the same `condition`.
    pub fn raise(&self, condition: &'static str, reason: impl Into<String>) {
        self.lock().insert(condition, reason.into());
    }

    pub fn clear(&self, condition: &'static str) {
        self.lock().remove(condition);
    }

    /// Ready, or why not (the shutdown first, then the first raised condition by name).
    pub fn verdict(&self) -> Result<(), String> {
        if self.is_shutting_down() {
            return Err("shutting down".to_owned());
        }
        match self.lock().iter().next() {
            Some((condition, reason)) => Err(format!("{condition}: {reason}")),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        // A panic elsewhere while holding it left a whole map behind: still usable.
        self.conditions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `/metrics`: every metric of the process.
pub fn metrics_response() -> HttpResponse {
    HttpResponse::Ok().content_type(METRICS_CONTENT_TYPE).body(metrics().render())
}

/// `/healthz`: 200 while the process runs.
pub fn healthz_response() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `/readyz` from `readiness` alone: 200, or 503 with the reason as `{"error": ...}`.
pub fn readyz_response(readiness: &Readiness) -> HttpResponse {
    match readiness.verdict() {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(reason) => HttpResponse::ServiceUnavailable().json(serde_json::json!({"error": reason})),
    }
}

/// Registers `/metrics`, `/healthz` and `/readyz` (from `web::Data<Readiness>`) for a role without probes of
/// its own; the gateway registers its own `/readyz`, which adds the store and the cluster.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/metrics", web::get().to(|| async { metrics_response() }))
        .route("/healthz", web::get().to(|| async { healthz_response() }))
        .route("/readyz", web::get().to(|readiness: web::Data<Readiness>| async move { readyz_response(&readiness) }));
}

/// A running ops listener: one worker serving the routes a role registers, nothing else.
pub struct OpsServer {
    local_addr: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl OpsServer {
    /// Serves [`configure`]'s routes with `readiness`, for a role without probes of its own (campaigns,
    /// notifier), on `listener`, in the current actix system.
    pub fn start(listener: std::net::TcpListener, readiness: web::Data<Readiness>) -> std::io::Result<OpsServer> {
        OpsServer::start_with(listener, move |config| {
            config.app_data(readiness.clone());
            configure(config);
        })
    }

    /// Serves what `routes` registers (its routes and the app data they read) on `listener`; anything else
    /// gets a JSON 404. A scrape is one small request: one worker keeps the process's thread count down.
    pub fn start_with(
        listener: std::net::TcpListener,
        routes: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    ) -> std::io::Result<OpsServer> {
        let local_addr = listener.local_addr()?;
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().configure(routes.clone()).default_service(web::to(|| async {
                HttpResponse::NotFound().json(serde_json::json!({"error": "no such route"}))
            }))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%local_addr, "ops listener ready");
        Ok(OpsServer { local_addr, handle, task })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.local_addr
    }

    /// Stops it (the last step of a role's stop, so `/readyz` says 503 while the rest stops).
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if let Ok(Err(error)) = self.task.await {
            tracing::warn!(%error, "the ops listener did not stop cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_shutdown_make_the_verdict() {
        let readiness = Readiness::new();
        assert_eq!(readiness.verdict(), Ok(()));
        readiness.raise("consumer", "the bus does not answer");
        assert_eq!(readiness.verdict(), Err("consumer: the bus does not answer".to_owned()));
        readiness.clear("consumer");
        assert_eq!(readiness.verdict(), Ok(()));
        readiness.begin_shutdown();
        assert_eq!(readiness.verdict(), Err("shutting down".to_owned()));
    }
}
