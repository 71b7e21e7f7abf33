//! Records of roles in the embedded store ([`crate::model::Record`]): the records, each label's members and
//! counts, written in the batch's write transaction and read on snapshots.
//!
//! ```text
//! records               (scope, collection, key)          -> Record (JSON, its revision and labels included)
//! record_labels         (scope, collection, label, key)   -> ()
//! record_label_counts   (scope, collection, label)        -> records carrying it
//! record_counts         (scope, collection)               -> records
//! ```

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::tables::{decode, encode};
use crate::model::{Record, RecordCounts, RecordWrite};
use crate::store::StoreError;

pub const RECORDS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("records");
pub const RECORD_LABELS: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("record_labels");
pub const RECORD_LABEL_COUNTS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("record_label_counts");
pub const RECORD_COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("record_counts");

/// Creates the tables (so reads of a new store find them).
pub fn create_tables(transaction: &WriteTransaction) -> Result<(), StoreError> {
    transaction.open_table(RECORDS)?;
    transaction.open_table(RECORD_LABELS)?;
    transaction.open_table(RECORD_LABEL_COUNTS)?;
    transaction.open_table(RECORD_COUNTS)?;
    Ok(())
}

/// What a write needs of a stored record: its revision and labels (its value is skipped, not decoded).
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    labels: BTreeSet<String>,
    #[serde(default)]
    revision: u64,
}

fn head(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    scope: &str,
    collection: &str,
    key: &str,
) -> Result<Option<Head>, StoreError> {
    let Some(bytes) = table.get((scope, collection, key))? else { return Ok(None) };
    decode("records", &(scope, collection, key), bytes.value()).map(Some)
}

fn address(write: &RecordWrite) -> (&str, &str, &str) {
    match write {
        RecordWrite::Put(put) => (put.record.scope.as_str(), put.record.collection.as_str(), put.record.key.as_str()),
        RecordWrite::Delete { scope, collection, key } => (scope.as_str(), collection.as_str(), key.as_str()),
    }
}

/// A record's revision as the batch's earlier writes leave it: known, or the stored one plus blind puts.
#[derive(Clone, Copy)]
enum Planned {
    Known(u64),
    /// Puts without an expected revision so far, the stored revision not read yet.
    Blind(u64),
}

/// The conflict of the first put whose expected revision does not hold, checked before anything is written.
/// Several puts of one record in a batch are judged in order, each against the revision the earlier ones leave;
/// a put without an expectation reads nothing.
pub fn conflict(transaction: &WriteTransaction, writes: &[RecordWrite]) -> Result<Option<StoreError>, StoreError> {
    if writes.is_empty() {
        return Ok(None);
    }
    let table = transaction.open_table(RECORDS)?;
    let mut planned: HashMap<(&str, &str, &str), Planned> = HashMap::new();
    for write in writes {
        let address = address(write);
        let (scope, collection, key) = address;
        let next = match write {
            RecordWrite::Put(put) => match put.expected_revision {
                None => match planned.get(&address) {
                    Some(Planned::Known(revision)) => Planned::Known(revision + 1),
                    Some(Planned::Blind(puts)) => Planned::Blind(puts + 1),
                    None => Planned::Blind(1),
                },
                Some(expected) => {
                    let current = match planned.get(&address) {
                        Some(Planned::Known(revision)) => *revision,
                        blind => {
                            let puts = match blind {
                                Some(Planned::Blind(puts)) => *puts,
                                _ => 0,
                            };
                            head(&table, scope, collection, key)?.map_or(0, |head| head.revision) + puts
                        }
                    };
                    if expected != current {
                        return Ok(Some(StoreError::Conflict {
                            scope: scope.to_owned(),
                            collection: collection.to_owned(),
                            key: key.to_owned(),
                        }));
                    }
                    Planned::Known(current + 1)
                }
            },
            RecordWrite::Delete { .. } => Planned::Known(0),
        };
        planned.insert(address, next);
    }
    Ok(None)
}

/// Applies `writes` in order (their revisions checked by [`conflict`] first). The tables are opened once and
/// the counters moved once per label at the end: a page of new records costs one counter write per label.
pub fn apply(transaction: &WriteTransaction, writes: &[RecordWrite]) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let mut records = transaction.open_table(RECORDS)?;
    let mut labels = transaction.open_table(RECORD_LABELS)?;
    let mut label_deltas: HashMap<(&str, &str, String), i64> = HashMap::new();
    let mut count_deltas: HashMap<(&str, &str), i64> = HashMap::new();
    for write in writes {
        let (scope, collection, key) = address(write);
        let previous = head(&records, scope, collection, key)?;
        let (old_revision, old_labels) = match previous {
            Some(head) => (Some(head.revision), head.labels),
            None => (None, BTreeSet::new()),
        };
        let empty = BTreeSet::new();
        let new_labels = match write {
            RecordWrite::Put(put) => &put.record.labels,
            RecordWrite::Delete { .. } => &empty,
        };
        for label in old_labels.difference(new_labels) {
            labels.remove((scope, collection, label.as_str(), key))?;
            *label_deltas.entry((scope, collection, label.clone())).or_default() -= 1;
        }
        for label in new_labels.difference(&old_labels) {
            labels.insert((scope, collection, label.as_str(), key), ())?;
            *label_deltas.entry((scope, collection, label.clone())).or_default() += 1;
        }
        match write {
            RecordWrite::Put(put) => {
                let mut record = put.record.clone();
                record.revision = old_revision.unwrap_or(0) + 1;
                records.insert((scope, collection, key), encode(&record)?.as_slice())?;
                if old_revision.is_none() {
                    *count_deltas.entry((scope, collection)).or_default() += 1;
                }
            }
            RecordWrite::Delete { .. } => {
                if old_revision.is_some() {
                    records.remove((scope, collection, key))?;
                    *count_deltas.entry((scope, collection)).or_default() -= 1;
                }
            }
        }
    }
    let mut label_counts = transaction.open_table(RECORD_LABEL_COUNTS)?;
    for ((scope, collection, label), delta) in label_deltas {
        add_count(&mut label_counts, (scope, collection, label.as_str()), delta)?;
    }
    let mut counts = transaction.open_table(RECORD_COUNTS)?;
    for ((scope, collection), delta) in count_deltas {
        let current = counts.get((scope, collection))?.map_or(0, |count| count.value());
        match current.saturating_add_signed(delta) {
            0 => {
                counts.remove((scope, collection))?;
            }
            next => {
                counts.insert((scope, collection), next)?;
            }
        }
    }
    Ok(())
}

fn add_count(
    table: &mut redb::Table<(&str, &str, &str), u64>,
    key: (&str, &str, &str),
    delta: i64,
) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    let current = table.get(key)?.map_or(0, |count| count.value());
    let next = current.saturating_add_signed(delta);
    if next == 0 {
        table.remove(key)?;
    } else {
        table.insert(key, next)?;
    }
    Ok(())
}

pub fn get(
    database: &Database,
    scope: &str,
    collection: &str,
    keys: &[String],
) -> Result<Vec<Option<Record>>, StoreError> {
    let transaction = database.begin_read()?;
    let table = transaction.open_table(RECORDS)?;
    keys.iter()
        .map(|key| match table.get((scope, collection, key.as_str()))? {
            Some(bytes) => decode("records", &(scope, collection, key), bytes.value()).map(Some),
            None => Ok(None),
        })
        .collect()
}

pub fn list(
    database: &Database,
    scope: &str,
    collection: &str,
    label: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Record>, StoreError> {
    let transaction = database.begin_read()?;
    let table = transaction.open_table(RECORDS)?;
    let mut page = Vec::new();
    if limit == 0 {
        return Ok(page);
    }
    match label {
        None => {
            let start = match after {
                Some(after) => Bound::Excluded((scope, collection, after)),
                None => Bound::Included((scope, collection, "")),
            };
            for entry in table.range::<(&str, &str, &str)>((start, Bound::Unbounded))? {
                let (key, bytes) = entry?;
                let (entry_scope, entry_collection, _) = key.value();
                if entry_scope != scope || entry_collection != collection {
                    break;
                }
                page.push(decode("records", &key.value(), bytes.value())?);
                if page.len() >= limit {
                    break;
                }
            }
        }
        Some(label) => {
            let labels = transaction.open_table(RECORD_LABELS)?;
            let start = match after {
                Some(after) => Bound::Excluded((scope, collection, label, after)),
                None => Bound::Included((scope, collection, label, "")),
            };
            for entry in labels.range::<(&str, &str, &str, &str)>((start, Bound::Unbounded))? {
                let (entry, _) = entry?;
                let (entry_scope, entry_collection, entry_label, key) = entry.value();
                if entry_scope != scope || entry_collection != collection || entry_label != label {
                    break;
                }
                // The label and the record are written in one transaction: a member without its record is corrupt.
                let bytes = table
                    .get((scope, collection, key))?
                    .ok_or_else(|| StoreError::Corrupt(format!("label {label} of {collection}/{key} has no record")))?;
                page.push(decode("records", &(scope, collection, key), bytes.value())?);
                if page.len() >= limit {
                    break;
                }
            }
        }
    }
    Ok(page)
}

pub fn count(
    database: &Database,
    scope: &str,
    collection: &str,
    labels: &[String],
) -> Result<RecordCounts, StoreError> {
    let transaction = database.begin_read()?;
    let counts = transaction.open_table(RECORD_COUNTS)?;
    let label_counts = transaction.open_table(RECORD_LABEL_COUNTS)?;
    let total = counts.get((scope, collection))?.map_or(0, |count| count.value());
    let labels = labels
        .iter()
        .map(|label| Ok(label_counts.get((scope, collection, label.as_str()))?.map_or(0, |count| count.value())))
        .collect::<Result<Vec<u64>, StoreError>>()?;
    Ok(RecordCounts { total, labels })
}
