//! Time as the domain sees it: milliseconds since the UNIX epoch, read in one place.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = u64;

/// The current wall-clock time. Logic code never calls this: shells read it and pass `now` in.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as Millis).unwrap_or(0)
}
