//! Registers the fleet through the operator API (PUT /api/v1/devices/{id}) with bounded concurrency.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::profile::FleetProfile;
use crate::report::Collector;

/// Registers every device of `profile`; failures are counted in the collector as `register_<status>` or
/// `register_transport`. Returns how many failed.
pub async fn register_fleet(
    http: &reqwest::Client,
    server: &str,
    admin_token: &str,
    profile: &FleetProfile,
    concurrency: usize,
    notify_port: Option<u16>,
    collector: &Arc<Collector>,
) -> u64 {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let base = server.trim_end_matches('/').to_owned();
    let mut failed = 0;
    for index in 0..profile.devices {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let device_id = profile.device(index).device_id;
        let url = format!("{base}/api/v1/devices/{device_id}");
        // Each simulated device listens on its own loopback address, as IP devices do on theirs.
        let notify_address =
            notify_port.map(|port| std::net::SocketAddr::from((crate::profile::notify_address(index), port)));
        let registration = serde_json::json!({
            "password": profile.password,
            "tags": { "source": "devsim" },
            "notify_address": notify_address,
        });
        let request = http.put(url).bearer_auth(admin_token).json(&registration);
        let collector = Arc::clone(collector);
        tasks.spawn(async move {
            let _permit = permit;
            let kind = match request.send().await {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("register_{}", response.status().as_u16())),
                Err(_) => Some("register_transport".to_owned()),
            };
            match kind {
                None => {
                    collector.record_registered();
                    false
                }
                Some(kind) => {
                    tracing::warn!(%device_id, %kind, "registration failed");
                    collector.record_error(&kind);
                    true
                }
            }
        });
        while let Some(done) = tasks.try_join_next() {
            failed += u64::from(done.unwrap_or(true));
        }
    }
    while let Some(done) = tasks.join_next().await {
        failed += u64::from(done.unwrap_or(true));
    }
    failed
}
