//! Store faults for tests: counts the calls of every Store method and makes the next ones fail, on core's one
//! Store wrapper (`omadm_core::store::interpose`).
//!
//! ```text
//! let store = omadm_testkit::store::with_faults(inner);
//! store.interposer().fail_next("commit", 2);      // the next two commits get StoreError::Unavailable
//! assert_eq!(store.interposer().calls("commit"), 3);
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use omadm_core::store::interpose::{Interpose, Interposed};
use omadm_core::store::{Store, StoreError};

/// Calls counted by method name; failures injected by method name.
#[derive(Debug, Default)]
pub struct Faults {
    calls: Mutex<BTreeMap<&'static str, u64>>,
    failures: Mutex<BTreeMap<&'static str, u64>>,
}

impl Faults {
    /// How many times `method` (a Store method's name, e.g. `"commit"`) was called, failed ones included.
    pub fn calls(&self, method: &str) -> u64 {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    /// The next `times` calls of `method` fail with `StoreError::Unavailable` without reaching the inner store.
    pub fn fail_next(&self, method: &'static str, times: u64) {
        *self.failures.lock().unwrap().entry(method).or_default() += times;
    }
}

impl Interpose for Faults {
    fn before(&self, method: &'static str) -> Result<(), StoreError> {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
        let mut failures = self.failures.lock().unwrap();
        match failures.get_mut(method) {
            Some(left) if *left > 0 => {
                *left -= 1;
                Err(StoreError::Unavailable(format!("injected failure of {method}")))
            }
            _ => Ok(()),
        }
    }
}

/// `inner` with [`Faults`] on the way to it.
pub fn with_faults(inner: Arc<dyn Store>) -> Arc<Interposed<Faults>> {
    Interposed::new(inner, Faults::default())
}
