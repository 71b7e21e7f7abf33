//! Registers the fleet through the operator API (PUT /api/v1/devices/{id}) with bounded concurrency.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::profile::FleetProfile;
use crate::report::Collector;

/// What a registration tells the server about how to wake the device.
#[derive(Debug, Clone, Default)]
pub struct NotifyRegistration {
    /// `Some(port)`: the device's `notify_address` is its own loopback address at this port.
    pub port: Option<u16>,
    /// The device's AuthNoti secret, the server's key for signing its Package#0.
    pub auth_secret: Option<String>,
}

/// Registers every device of `profile`, device i through server i mod n of `servers` (any node of a cluster
/// serves the operator API), or the next one when that server does not answer; failures are counted in the collector as `register_<status>` or
/// `register_transport`. Returns how many failed.
pub async fn register_fleet(
    http: &reqwest::Client,
    servers: &[String],
    admin_token: &str,
    profile: &FleetProfile,
    concurrency: usize,
    notify: &NotifyRegistration,
    collector: &Arc<Collector>,
) -> u64 {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let bases: Vec<String> = servers.iter().map(|server| server.trim_end_matches('/').to_owned()).collect();
    let mut failed = 0;
    for index in 0..profile.devices {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let device_id = profile.device(index).device_id;
        if bases.is_empty() {
            break;
        }
        // Device i starts at server i mod n and tries the next ones when a server does not answer.
        let start = index as usize % bases.len();
        let urls: Vec<String> = (0..bases.len())
            .filter_map(|offset| bases.get((start + offset) % bases.len()))
            .map(|base| format!("{base}/api/v1/devices/{device_id}"))
            .collect();
        // Each simulated device listens on its own loopback address, as IP devices do on theirs.
        let notify_address =
            notify.port.map(|port| std::net::SocketAddr::from((crate::profile::notify_address(index), port)));
        let mut registration = serde_json::json!({
            "password": profile.password,
            "tags": { "source": "devsim" },
            "notify_address": notify_address,
        });
        if let (Some(secret), Some(fields)) = (&notify.auth_secret, registration.as_object_mut()) {
            fields.insert("auth_secret".to_owned(), secret.clone().into());
        }
        let http = http.clone();
        let admin_token = admin_token.to_owned();
        let collector = Arc::clone(collector);
        tasks.spawn(async move {
            let _permit = permit;
            let mut kind = Some("register_transport".to_owned());
            for url in urls {
                match http.put(url).bearer_auth(&admin_token).json(&registration).send().await {
                    Ok(response) if response.status().is_success() => kind = None,
                    Ok(response) => kind = Some(format!("register_{}", response.status().as_u16())),
                    Err(_) => continue,
                }
                break;
            }
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

/// The server device `index` starts with: server index mod n (`None` without servers).
pub fn server_for(servers: &[String], index: u32) -> Option<&String> {
    if servers.is_empty() {
        return None;
    }
    servers.get(index as usize % servers.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_spread_round_robin() {
        let servers = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let picked: Vec<&str> = (0..5).filter_map(|index| server_for(&servers, index)).map(String::as_str).collect();
        assert_eq!(picked, ["a", "b", "c", "a", "b"]);
        assert_eq!(server_for(&[], 3), None);
    }
}
