//! Records of a role's own (a campaign, a campaign's devices): JSON the store keeps under a scope and a
//! collection, found by key or by label, replaced only at the revision the writer read.
//!
//! A scope is the records' owner, such as a campaign id: on Redis Cluster all records of one scope, their labels
//! and the outbox events keyed by the scope share one slot, so a batch that writes them with their events is
//! atomic there too. Labels index records for paging and counting (a campaign's devices by state, by wave); the
//! store keeps each label's members and their count in the same write as the record.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub scope: String,
    pub collection: String,
    pub key: String,
    /// The labels it is found and counted by.
    #[serde(default)]
    pub labels: BTreeSet<String>,
    pub value: serde_json::Value,
    /// Set by the store: 1 when created, one more at each replacement. A writer passes the revision it read as
    /// [`RecordPut::expected_revision`], so of two writers that read the same revision only one wins.
    #[serde(default)]
    pub revision: u64,
}

/// A record to create or replace ([`crate::store::WriteBatch::records`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPut {
    /// Its `revision` is ignored: the store sets it.
    pub record: Record,
    /// `None`: write whatever is stored. `Some(0)`: only when no such record exists. `Some(n)`: only while the
    /// stored revision is n. Otherwise the batch fails with `StoreError::Conflict` and writes nothing.
    pub expected_revision: Option<u64>,
}

/// One change to the records.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordWrite {
    Put(RecordPut),
    /// Removes the record and its labels (nothing when there is none).
    Delete {
        scope: String,
        collection: String,
        key: String,
    },
}

impl RecordWrite {
    /// A put checked against the revision the writer read (0: the record must not exist).
    pub fn put(record: Record, expected_revision: Option<u64>) -> RecordWrite {
        RecordWrite::Put(RecordPut { record, expected_revision })
    }

    pub fn scope(&self) -> &str {
        match self {
            RecordWrite::Put(put) => &put.record.scope,
            RecordWrite::Delete { scope, .. } => scope,
        }
    }
}

/// What [`crate::store::Store::count_records`] tells of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records in the collection.
    pub total: u64,
    /// Records carrying each asked label, in the order asked.
    pub labels: Vec<u64>,
}
