//! The embedded engine's inventory index ([`crate::store::index`]): each term's devices in id order, and how many
//! there are, kept in the write transaction of every device write and delete.
//!
//! ```text
//! device_terms       (term, device id) -> ()       walked in id order from a cursor
//! term_counts        term -> devices               picks a filter's rarest term; counts a one-term filter
//! terms_of_device    device id -> its terms (JSON) what a write leaves, without decoding the old record
//! ```
//!
//! A store written before the index existed (or by another [`INDEX_VERSION`]) gets it built when it is opened.

use std::collections::BTreeSet;
use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::tables::{DEVICE_TERMS, DEVICES, META, META_INDEX_VERSION, TERM_COUNTS, TERMS_OF_DEVICE, decode, encode};
use crate::model::{Device, DeviceFilter, DevicePage};
use crate::store::StoreError;
use crate::store::index::{INDEX_VERSION, device_terms, filter_terms, term_changes};

/// Moves `device` to the terms it has now.
pub fn index_device(transaction: &WriteTransaction, device: &Device) -> Result<(), StoreError> {
    let terms = device_terms(device);
    let mut terms_of_device = transaction.open_table(TERMS_OF_DEVICE)?;
    let stored: Option<BTreeSet<String>> = match terms_of_device.get(device.id.as_str())? {
        Some(stored) => Some(decode("terms_of_device", &device.id, stored.value())?),
        None => None,
    };
    // Most writes of a device (a session step's) leave its inventory and tags as they were: nothing to write.
    if stored.as_ref() == Some(&terms) {
        return Ok(());
    }
    let (left, joined) = term_changes(&stored.unwrap_or_default(), &terms);
    move_terms(transaction, &device.id, &left, &joined)?;
    terms_of_device.insert(device.id.as_str(), encode(&terms)?.as_slice())?;
    Ok(())
}

/// Removes a deleted device from every term it had.
pub fn unindex_device(transaction: &WriteTransaction, device_id: &str) -> Result<(), StoreError> {
    let before: Vec<String> = {
        let mut terms_of_device = transaction.open_table(TERMS_OF_DEVICE)?;
        let Some(stored) = terms_of_device.remove(device_id)? else { return Ok(()) };
        decode("terms_of_device", &device_id, stored.value())?
    };
    move_terms(transaction, device_id, &before, &[])
}

fn move_terms(
    transaction: &WriteTransaction,
    device_id: &str,
    left: &[String],
    joined: &[String],
) -> Result<(), StoreError> {
    let mut device_terms = transaction.open_table(DEVICE_TERMS)?;
    let mut counts = transaction.open_table(TERM_COUNTS)?;
    for term in left {
        if device_terms.remove((term.as_str(), device_id))?.is_some() {
            let count = counts.get(term.as_str())?.map_or(0, |count| count.value()).saturating_sub(1);
            if count == 0 {
                counts.remove(term.as_str())?;
            } else {
                counts.insert(term.as_str(), count)?;
            }
        }
    }
    for term in joined {
        if device_terms.insert((term.as_str(), device_id), ())?.is_none() {
            let count = counts.get(term.as_str())?.map_or(0, |count| count.value()).saturating_add(1);
            counts.insert(term.as_str(), count)?;
        }
    }
    Ok(())
}

/// Builds the index from the device records when the store holds none of this [`INDEX_VERSION`].
pub fn build_if_missing(transaction: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = transaction.open_table(META)?;
    if meta.get(META_INDEX_VERSION)?.map(|version| version.value()) == Some(INDEX_VERSION) {
        return Ok(());
    }
    transaction.open_table(DEVICE_TERMS)?.retain(|_, _| false)?;
    transaction.open_table(TERM_COUNTS)?.retain(|_, _| false)?;
    transaction.open_table(TERMS_OF_DEVICE)?.retain(|_, _| false)?;
    let devices = transaction.open_table(DEVICES)?;
    let mut built = 0u64;
    for entry in devices.iter()? {
        let (id, bytes) = entry?;
        let device: Device = decode("devices", &id.value(), bytes.value())?;
        index_device(transaction, &device)?;
        built += 1;
    }
    meta.insert(META_INDEX_VERSION, INDEX_VERSION)?;
    if built > 0 {
        tracing::info!(devices = built, version = INDEX_VERSION, "inventory index built");
    }
    Ok(())
}

/// The rarest of `terms` and its device count (0 for a term no device has).
fn rarest<T>(counts: &T, terms: &[String]) -> Result<Option<(String, u64)>, StoreError>
where
    T: ReadableTable<&'static str, u64>,
{
    let mut rarest: Option<(String, u64)> = None;
    for term in terms {
        let count = counts.get(term.as_str())?.map_or(0, |count| count.value());
        if rarest.as_ref().is_none_or(|(_, least)| count < *least) {
            rarest = Some((term.clone(), count));
        }
    }
    Ok(rarest)
}

/// A page of the devices that match `filter`, walking its rarest term's devices after `after`; None when the
/// filter has no term (the caller walks the registry).
pub fn list(
    database: &Database,
    filter: &DeviceFilter,
    after: Option<&str>,
    limit: usize,
    scan_budget: usize,
) -> Result<Option<DevicePage>, StoreError> {
    let terms = filter_terms(filter);
    let transaction = database.begin_read()?;
    let Some((term, count)) = rarest(&transaction.open_table(TERM_COUNTS)?, &terms)? else { return Ok(None) };
    if count == 0 {
        return Ok(Some(DevicePage::default()));
    }
    let device_terms = transaction.open_table(DEVICE_TERMS)?;
    let devices = transaction.open_table(DEVICES)?;
    let end = format!("{term}\0");
    let lower = match after {
        Some(after) => Bound::Excluded((term.as_str(), after)),
        None => Bound::Included((term.as_str(), "")),
    };
    let (limit, scan_budget) = (limit.max(1), scan_budget.max(1));
    let mut page = Vec::new();
    let mut last_scanned: Option<String> = None;
    for (scanned, entry) in
        device_terms.range::<(&str, &str)>((lower, Bound::Excluded((end.as_str(), ""))))?.enumerate()
    {
        if page.len() == limit || scanned == scan_budget {
            return Ok(Some(DevicePage { devices: page, next: last_scanned }));
        }
        let (key, _) = entry?;
        let (_, device_id) = key.value();
        last_scanned = Some(device_id.to_owned());
        let Some(bytes) = devices.get(device_id)? else { continue };
        let device: Device = decode("devices", &device_id, bytes.value())?;
        if filter.matches(&device) {
            page.push(device);
        }
    }
    Ok(Some(DevicePage { devices: page, next: None }))
}

/// How many devices match `filter`.
pub fn count(database: &Database, filter: &DeviceFilter) -> Result<u64, StoreError> {
    let terms = filter_terms(filter);
    let transaction = database.begin_read()?;
    let Some((term, count)) = rarest(&transaction.open_table(TERM_COUNTS)?, &terms)? else {
        return Ok(transaction.open_table(DEVICES)?.len()?);
    };
    if terms.len() == 1 || count == 0 {
        return Ok(count);
    }
    let device_terms = transaction.open_table(DEVICE_TERMS)?;
    let end = format!("{term}\0");
    let mut matching = 0;
    'devices: for entry in device_terms.range::<(&str, &str)>((term.as_str(), "")..(end.as_str(), ""))? {
        let (key, _) = entry?;
        let (_, device_id) = key.value();
        for other in terms.iter().filter(|other| **other != term) {
            if device_terms.get((other.as_str(), device_id))?.is_none() {
                continue 'devices;
            }
        }
        matching += 1;
    }
    Ok(matching)
}
