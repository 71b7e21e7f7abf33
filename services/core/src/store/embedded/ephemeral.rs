//! Short-lived records of the embedded store: keys recorded once with a TTL and remembered values (hit counts per
//! window are in memory, `windows`; their key format is kept here, with the rest).
//!
//! Records live in `ephemeral` (key -> (expires at, value)), values in `remembered` (key ->
//! (expires at, text)), all with one expiry index, `ephemeral_expiry` ((expires at, key) -> ()). Expiry is judged
//! by the caller's `now`; every write also prunes a few entries that expired
//! by then, so the table holds about what is live, without a sweeper.
//!
//! ```text
//! once\0{key}                          -> (now + ttl, 0)
//! value\0{key}                         -> (now + ttl, value)            in `remembered`
//! ```

use redb::{Database, ReadableDatabase, ReadableTable, WriteTransaction};

use super::tables::{EPHEMERAL, EPHEMERAL_EXPIRY, REMEMBERED};
use crate::clock::Millis;
use crate::store::StoreError;

/// Expired entries each write removes at most: more than it adds, so the table cannot grow past what is live.
const PRUNE_PER_WRITE: usize = 8;

pub fn once_key(key: &str) -> String {
    format!("once\0{key}")
}

/// The key of `key`'s count in the window `now` falls in, and when that window ends.
pub fn window_key(key: &str, window: Millis, now: Millis) -> (String, Millis) {
    let window = window.max(1);
    let end = crate::store::window_end(window, now);
    (format!("count\0{key}\0{window}\0{}", end - window), end)
}

/// The value stored under `stored_key` if it has not expired at `now`.
pub fn live_value<T>(table: &T, stored_key: &str, now: Millis) -> Result<Option<u64>, StoreError>
where
    T: ReadableTable<&'static str, (u64, u64)>,
{
    Ok(table.get(stored_key)?.map(|entry| entry.value()).filter(|(expires_at, _)| *expires_at > now).map(|(_, v)| v))
}

/// Records `key` until `now + ttl`; true when it was not recorded (or its record had expired) at `now`.
pub fn record_once(transaction: &WriteTransaction, key: &str, ttl: Millis, now: Millis) -> Result<bool, StoreError> {
    prune(transaction, now)?;
    let stored_key = once_key(key);
    let mut table = transaction.open_table(EPHEMERAL)?;
    if live_value(&table, &stored_key, now)?.is_some() {
        return Ok(false);
    }
    let expires_at = now.saturating_add(ttl.max(1));
    put(transaction, &mut table, &stored_key, expires_at, 0)?;
    Ok(true)
}

fn value_key(key: &str) -> String {
    format!("value\0{key}")
}

/// Keeps `value` under `key` until `now + ttl`.
pub fn remember(
    transaction: &WriteTransaction,
    key: &str,
    value: &str,
    ttl: Millis,
    now: Millis,
) -> Result<(), StoreError> {
    prune(transaction, now)?;
    let stored_key = value_key(key);
    let expires_at = now.saturating_add(ttl.max(1));
    let mut table = transaction.open_table(REMEMBERED)?;
    let mut expiry = transaction.open_table(EPHEMERAL_EXPIRY)?;
    if let Some(previous) = table.insert(stored_key.as_str(), (expires_at, value))? {
        let (previous_expiry, _) = previous.value();
        expiry.remove((previous_expiry, stored_key.as_str()))?;
    }
    expiry.insert((expires_at, stored_key.as_str()), ())?;
    Ok(())
}

/// The value remembered under `key`, if it lives at `now`.
pub fn recall(database: &Database, key: &str, now: Millis) -> Result<Option<String>, StoreError> {
    let transaction = database.begin_read()?;
    let table = transaction.open_table(REMEMBERED)?;
    let stored = table.get(value_key(key).as_str())?;
    Ok(stored.and_then(|entry| {
        let (expires_at, value) = entry.value();
        (expires_at > now).then(|| value.to_owned())
    }))
}

fn put(
    transaction: &WriteTransaction,
    table: &mut redb::Table<&str, (u64, u64)>,
    stored_key: &str,
    expires_at: Millis,
    value: u64,
) -> Result<(), StoreError> {
    let mut expiry = transaction.open_table(EPHEMERAL_EXPIRY)?;
    if let Some(previous) = table.insert(stored_key, (expires_at, value))? {
        let (previous_expiry, _) = previous.value();
        expiry.remove((previous_expiry, stored_key))?;
    }
    expiry.insert((expires_at, stored_key), ())?;
    Ok(())
}

/// Removes up to [`PRUNE_PER_WRITE`] entries that expired at `now`, oldest first.
fn prune(transaction: &WriteTransaction, now: Millis) -> Result<(), StoreError> {
    let mut expiry = transaction.open_table(EPHEMERAL_EXPIRY)?;
    let mut expired = Vec::new();
    for entry in expiry.range((0, "")..(now.saturating_add(1), ""))?.take(PRUNE_PER_WRITE) {
        let (key, _) = entry?;
        let (expires_at, stored_key) = key.value();
        expired.push((expires_at, stored_key.to_owned()));
    }
    if expired.is_empty() {
        return Ok(());
    }
    let mut table = transaction.open_table(EPHEMERAL)?;
    let mut values = transaction.open_table(REMEMBERED)?;
    for (expires_at, stored_key) in expired {
        expiry.remove((expires_at, stored_key.as_str()))?;
        if stored_key.starts_with("value\0") {
            values.remove(stored_key.as_str())?;
        } else {
            table.remove(stored_key.as_str())?;
        }
    }
    Ok(())
}
