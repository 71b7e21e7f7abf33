//! Waiting in async tests for a condition to become true, with a deadline and a message naming what never came.

use std::time::{Duration, Instant};

/// Polls `condition` (every 10 ms) until it holds; panics with `what` once `within` has passed.
pub async fn eventually(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < within, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
