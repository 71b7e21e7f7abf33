//! The Store interposer of the fencing test: another node's load takes a device's lease over right before
//! this node's next commit of it, as happens when this node was presumed dead.

use std::sync::Mutex;

use async_trait::async_trait;
use omadm_core::cluster::LeaseRequest;
use omadm_core::store::interpose::Interpose;
use omadm_core::store::{SessionLoad, Store, StoreError, WriteBatch};

#[derive(Default)]
pub struct TakeOver {
    hook: Mutex<Option<(String, LeaseRequest)>>,
}

impl TakeOver {
    /// Right before the next fenced commit of `device_id`, `request` loads the device (and takes its lease).
    pub fn take_over_before_next_commit(&self, device_id: &str, request: LeaseRequest) {
        *self.hook.lock().unwrap() = Some((device_id.to_owned(), request));
    }
}

#[async_trait]
impl Interpose for TakeOver {
    async fn commit(&self, inner: &dyn Store, batch: WriteBatch) -> Result<(), StoreError> {
        let hook = {
            let mut hook = self.hook.lock().unwrap();
            let due = match (&*hook, &batch.fence) {
                (Some((device_id, _)), Some(fence)) => *device_id == fence.device_id,
                _ => false,
            };
            if due { hook.take() } else { None }
        };
        if let Some((device_id, request)) = hook {
            let taken = inner.load_session(&device_id, &[], 1, &request).await.unwrap();
            assert!(matches!(taken, SessionLoad::Loaded(_)), "the take-over did not get the lease: {taken:?}");
        }
        inner.commit(batch).await
    }
}
