//! Per-device async locks, so two packages (or a package and a bootstrap) of one device never load, step and commit at the same time.
//!
//! Two sessions of one device (a retried Package#1 while the old session is
//! still open) would otherwise read the same queue head and both send it.
//! The map holds weak references: a device's lock lives only while someone
//! holds or waits for it, so memory follows active devices, not the fleet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<LockMap>,
}

#[derive(Default)]
struct LockMap {
    by_key: HashMap<String, Weak<AsyncMutex<()>>>,
    /// Size after the last sweep of dead entries; the next sweep happens at twice that.
    swept_at: usize,
}

impl KeyedLocks {
    /// Waits for the lock of `key` and holds it until the guard is dropped.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = self.lock_for(key);
        lock.lock_owned().await
    }

    fn lock_for(&self, key: &str) -> Arc<AsyncMutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map itself is still usable.
        let mut map = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lock) = map.by_key.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(AsyncMutex::new(()));
        map.by_key.insert(key.to_owned(), Arc::downgrade(&lock));
        if map.by_key.len() > (map.swept_at * 2).max(1024) {
            map.by_key.retain(|_, weak| weak.strong_count() > 0);
            map.swept_at = map.by_key.len();
        }
        lock
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.locks.lock().map(|map| map.by_key.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_holder_per_key_and_other_keys_free() {
        let locks = Arc::new(KeyedLocks::default());
        let first = locks.lock("IMEI:1").await;
        // Another key is not blocked.
        let _other = tokio::time::timeout(Duration::from_millis(100), locks.lock("IMEI:2")).await.unwrap();
        // The same key waits until the first guard is dropped.
        assert!(tokio::time::timeout(Duration::from_millis(50), locks.lock("IMEI:1")).await.is_err());
        drop(first);
        let _again = tokio::time::timeout(Duration::from_millis(100), locks.lock("IMEI:1")).await.unwrap();
    }

    #[tokio::test]
    async fn dead_entries_are_swept() {
        let locks = KeyedLocks::default();
        for index in 0..3000 {
            drop(locks.lock(&format!("IMEI:{index}")).await);
        }
        assert!(locks.len() <= 2049, "{}", locks.len());
    }
}
