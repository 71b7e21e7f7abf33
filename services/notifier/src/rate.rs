//! Send rates per transport, shared by every notifier replica: a token bucket in the Store.
//!
//! ```text
//! transport.send -> SharedRate::wait_turn -> Store::take_rate_token(key, per_second, now)
//!                     0: go   |   n ms: sleep n ms, ask again
//! ```
//!
//! One bucket per rate key for the whole cluster (on Redis a hash; on the embedded store, which one process
//! holds, in memory), so two replicas on one SMSC account share its TPS instead of doubling it. A store that
//! cannot be asked fails the send as one that may pass (the notifier's retries try it again later): sending
//! past an operator's contracted rate would get the account throttled or barred.

use std::sync::Arc;
use std::time::Duration;

use omadm_core::clock::now_millis;
use omadm_core::store::Store;

use crate::metrics::metrics;

/// A shared rate of one transport (or one account of it).
pub struct SharedRate {
    store: Arc<dyn Store>,
    /// The bucket's key in the Store: `notifier:{transport}:{what the rate belongs to}`.
    key: String,
    per_second: u32,
    /// The transport's name, for the metric.
    transport: &'static str,
}

impl std::fmt::Debug for SharedRate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SharedRate").field("key", &self.key).field("per_second", &self.per_second).finish()
    }
}

impl SharedRate {
    /// `per_second` sends at most for `transport` over `owner` (an SMSC account, a push gateway); `None` for 0,
    /// no limit.
    pub fn new(store: Arc<dyn Store>, transport: &'static str, owner: &str, per_second: u32) -> Option<SharedRate> {
        (per_second > 0).then(|| SharedRate {
            store,
            key: format!("notifier:{transport}:{owner}"),
            per_second,
            transport,
        })
    }

    /// The Store key of the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Returns once a token is taken; `Err` with the reason when the store cannot be asked.
    pub async fn wait_turn(&self) -> Result<(), String> {
        loop {
            let wait = self
                .store
                .take_rate_token(&self.key, self.per_second, now_millis())
                .await
                .map_err(|error| format!("the shared send rate cannot be read: {error}"))?;
            if wait == 0 {
                return Ok(());
            }
            metrics().rate_wait_seconds.with_label_values(&[self.transport]).inc_by(wait as f64 / 1000.0);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }
}
