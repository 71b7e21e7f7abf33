//! The Redis key names of the store; the layout is described in docs/store.md and docs/cluster.md.
//!
//! Every key of one device carries the hash tag `{device id}`, so on Redis
//! Cluster one device's keys share a slot and one Lua script can update them
//! all. Keys of one outbox shard carry the shard's tag: `{outbox}` on a
//! standalone server (one shard), on Redis Cluster a tag of the shard's own
//! slot ([`super::slot::tag_of_slot`]), so a device's events and its state
//! are in the same slot. The few global keys (device index, repository,
//! membership) are written in steps of their own.

use super::slot::{self, SLOTS};

/// Builds the key names under one prefix (a deployment, or one test).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    cluster: bool,
}

impl Keys {
    /// `cluster`: one outbox shard per hash slot (Redis Cluster) rather than one.
    pub fn new(prefix: &str, cluster: bool) -> Self {
        Keys { prefix: prefix.to_owned(), cluster }
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    fn device_key(&self, device_id: &str, what: &str) -> String {
        format!("{}:{{{device_id}}}:{what}", self.prefix)
    }

    /// STRING: the device record (JSON).
    pub fn device(&self, device_id: &str) -> String {
        self.device_key(device_id, "device")
    }
    /// HASH: command id -> command record (JSON).
    pub fn commands(&self, device_id: &str) -> String {
        self.device_key(device_id, "commands")
    }
    /// ZSET: ids of every command record, scored by id (listing order).
    pub fn command_ids(&self, device_id: &str) -> String {
        self.device_key(device_id, "command-ids")
    }
    /// ZSET: ids of queued commands, scored by id (queue order).
    pub fn queued(&self, device_id: &str) -> String {
        self.device_key(device_id, "queued")
    }
    /// SET: ids of commands not final (queued or sent); SCARD is the pending count.
    pub fn pending(&self, device_id: &str) -> String {
        self.device_key(device_id, "pending")
    }
    /// STRING counter: the last command id handed out (INCRBY); kept when the device is deleted.
    pub fn last_command_id(&self, device_id: &str) -> String {
        self.device_key(device_id, "last-command-id")
    }
    /// HASH: session id -> state (JSON) of the device's open sessions.
    pub fn sessions(&self, device_id: &str) -> String {
        self.device_key(device_id, "sessions")
    }
    /// HASH: session id -> summary (JSON) of the device's ended sessions.
    pub fn history(&self, device_id: &str) -> String {
        self.device_key(device_id, "history")
    }
    /// ZSET: ended session ids scored by started_at (newest first with ZREVRANGE).
    pub fn history_order(&self, device_id: &str) -> String {
        self.device_key(device_id, "history-order")
    }
    /// STRING: the final state (JSON) of the device's latest ended session, when its batch carried it.
    pub fn ended(&self, device_id: &str) -> String {
        self.device_key(device_id, "ended")
    }
    /// STRING: the inventory index terms the device is found by (JSON array), so a write knows what it leaves.
    pub fn device_terms(&self, device_id: &str) -> String {
        self.device_key(device_id, "terms")
    }
    /// STRING: the device's MO mirror (JSON).
    pub fn mirror(&self, device_id: &str) -> String {
        self.device_key(device_id, "mirror")
    }
    /// ZSET: alerts (JSON members) scored by alert id.
    pub fn alerts(&self, device_id: &str) -> String {
        self.device_key(device_id, "alerts")
    }
    /// STRING counter: the highest alert id committed; kept when the device is deleted.
    pub fn last_alert_id(&self, device_id: &str) -> String {
        self.device_key(device_id, "last-alert-id")
    }
    /// STRING with PXAT (the record's expiry): one notification record (JSON). Under the device's tag, so it
    /// is written in the same script as the request's or outcome's event.
    pub fn notification(&self, device_id: &str, request_id: &str) -> String {
        self.device_key(device_id, &format!("notification:{request_id}"))
    }
    /// STRING with PXAT (the record's expiry): the device id of a notification request, to find its record.
    /// No hash tag: on Redis Cluster it is written in the batch's global step.
    pub fn notification_device(&self, request_id: &str) -> String {
        format!("{}:notification-device:{request_id}", self.prefix)
    }
    /// STRING with PXAT (the report's time plus the notification retention): the delivery report (JSON) of a
    /// request, apart from its record so that the dispatcher's writes of the record cannot lose it; read with it.
    pub fn notification_delivery(&self, device_id: &str, request_id: &str) -> String {
        self.device_key(device_id, &format!("notification-delivery:{request_id}"))
    }
    /// HASH `request_id`, `at`: the device's most recently sent request and when it was sent; it expires with
    /// that request's record.
    pub fn latest_notification(&self, device_id: &str) -> String {
        self.device_key(device_id, "notification-latest")
    }

    /// STRING with PX: the id of the node holding the device's session lease, while the lease runs.
    pub fn lease(&self, device_id: &str) -> String {
        self.device_key(device_id, "lease")
    }
    /// HASH, never expires: `epoch` (the fencing epoch, HINCRBY at each grant to a new holder) and
    /// `holder` (the node the last grant went to; removed on release). Fences are checked against it.
    pub fn fencing(&self, device_id: &str) -> String {
        self.device_key(device_id, "fencing")
    }

    /// How many outbox shards there are: one per hash slot on Redis Cluster, else one.
    pub fn shards(&self) -> u32 {
        if self.cluster { u32::from(SLOTS) } else { 1 }
    }
    /// The shard of a device's events and of its entry in the open-sessions index: its slot on Redis Cluster.
    /// HASH: record key -> record (JSON, its revision left at 0) of one collection of a scope (`model::Record`);
    /// the scope is the hash tag, as a device id is.
    pub fn record_values(&self, scope: &str, collection: &str) -> String {
        self.device_key(scope, &format!("rec:{collection}"))
    }
    /// HASH: record key -> its revision (HINCRBY at every write).
    pub fn record_revisions(&self, scope: &str, collection: &str) -> String {
        self.device_key(scope, &format!("rec-rev:{collection}"))
    }
    /// HASH: record key -> its labels (a JSON array), what a replacement moves it out of.
    pub fn record_labels_of(&self, scope: &str, collection: &str) -> String {
        self.device_key(scope, &format!("rec-labels:{collection}"))
    }
    /// ZSET (scores 0, by key): every record key of the collection; ZCARD is its count.
    pub fn record_keys(&self, scope: &str, collection: &str) -> String {
        self.device_key(scope, &format!("rec-keys:{collection}"))
    }
    /// Prefix of the ZSETs (scores 0, by key) of each label's record keys: `<prefix><label>`. The collection's
    /// length comes first, so collection `a:b` with label `c` and collection `a` with label `b:c` differ.
    pub fn record_label_prefix(&self, scope: &str, collection: &str) -> String {
        self.device_key(scope, &format!("rec-label:{}:{collection}:", collection.len()))
    }
    pub fn record_label(&self, scope: &str, collection: &str, label: &str) -> String {
        format!("{}{label}", self.record_label_prefix(scope, collection))
    }
    pub fn shard_of_device(&self, device_id: &str) -> u32 {
        if self.cluster { u32::from(slot::key_slot(self.device(device_id).as_bytes())) } else { 0 }
    }
    fn shard_key(&self, shard: u32, what: &str) -> String {
        let tag = if self.cluster { slot::tag_of_slot(u16::try_from(shard).unwrap_or(0) % SLOTS) } else { "outbox" };
        format!("{}:{{{tag}}}:{what}", self.prefix)
    }
    /// HASH: event id -> event (JSON) waiting in the shard for the Bus.
    pub fn outbox_events(&self, shard: u32) -> String {
        self.shard_key(shard, "outbox-events")
    }
    /// ZSET: the shard's waiting event ids scored by their sequence (commit order).
    pub fn outbox_order(&self, shard: u32) -> String {
        self.shard_key(shard, "outbox-order")
    }
    /// STRING counter: the shard's last outbox sequence number.
    pub fn outbox_sequence(&self, shard: u32) -> String {
        self.shard_key(shard, "outbox-sequence")
    }
    /// ZSET: the shard's scheduled event ids scored by when they are due (`WriteBatch::scheduled`).
    pub fn scheduled_order(&self, shard: u32) -> String {
        self.shard_key(shard, "scheduled-order")
    }
    /// HASH: scheduled event id -> event (JSON), until it is released into the shard's outbox.
    pub fn scheduled_events(&self, shard: u32) -> String {
        self.shard_key(shard, "scheduled-events")
    }
    /// SET: ids of the shard's devices that have open sessions (for `open_sessions`).
    pub fn open_devices(&self, shard: u32) -> String {
        self.shard_key(shard, "open-devices")
    }

    /// ZSET: every device id with score 0, paged in id order with ZRANGEBYLEX.
    pub fn device_index(&self) -> String {
        format!("{}:devices", self.prefix)
    }
    /// ZSET: the ids (score 0) of every device an inventory index term (`store::index`) finds, paged in id
    /// order with ZRANGEBYLEX. No hash tag: on Redis Cluster each term is in a slot of its own.
    pub fn term(&self, term: &str) -> String {
        format!("{}{term}", self.term_prefix())
    }
    /// What [`Keys::term`] puts before the term: `commit.lua` builds the keys of the terms a device leaves.
    pub fn term_prefix(&self) -> String {
        format!("{}:term:", self.prefix)
    }
    /// STRING: the index version (`store::index::INDEX_VERSION`) the terms were built with.
    pub fn index_version(&self) -> String {
        format!("{}:index-version", self.prefix)
    }
    /// HASH of the upload quotas (one slot, `{uploads}`): `size:<path>` and `owner:<path>` of each device
    /// upload, `bytes:<device id>` and `items:<device id>` of each device's uploads, `total` of all.
    pub fn upload_usage(&self) -> String {
        format!("{}:{{uploads}}:usage", self.prefix)
    }
    /// STRING: one Data Repository item (JSON).
    pub fn content(&self, path: &str) -> String {
        format!("{}:content:{path}", self.prefix)
    }
    /// ZSET: live node ids scored by the time their heartbeat expires.
    pub fn nodes(&self) -> String {
        format!("{}:{{cluster}}:nodes", self.prefix)
    }
    /// HASH: node id -> internal URL.
    pub fn node_urls(&self) -> String {
        format!("{}:{{cluster}}:node-urls", self.prefix)
    }
    /// STRING with PX: when the record of `key` expires (ms, by the callers' clock); see `Store::record_once`.
    /// No hash tag: on Redis Cluster each such key is in a slot of its own.
    pub fn once(&self, key: &str) -> String {
        format!("{}:once:{key}", self.prefix)
    }
    /// STRING counter (INCR, no expiry): `Store::next_sequence`'s counter `key`.
    pub fn sequence(&self, key: &str) -> String {
        format!("{}:sequence:{key}", self.prefix)
    }
    /// HASH with PX (`tokens`, `at`): the token bucket `key` of `Store::take_rate_token`. No hash tag.
    pub fn rate_bucket(&self, key: &str) -> String {
        format!("{}:rate:{key}", self.prefix)
    }
    /// STRING with PX: `Store::remember`'s value of `key`, after its expiry time and a newline. No hash tag.
    pub fn remembered(&self, key: &str) -> String {
        format!("{}:remembered:{key}", self.prefix)
    }
    /// STRING counter with PX: the hits of `key` in the window of `window` ms that starts at `start`.
    pub fn window_count(&self, key: &str, window: u64, start: u64) -> String {
        format!("{}:count:{key}:{window}:{start}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::slot::key_slot;

    #[test]
    fn a_device_keys_and_its_outbox_share_a_slot() {
        let keys = Keys::new("omadm", true);
        for device_id in ["IMEI:1", "IMEI:10", "dev-x", "a:b:c"] {
            let slot = key_slot(keys.device(device_id).as_bytes());
            for key in [
                keys.commands(device_id),
                keys.queued(device_id),
                keys.sessions(device_id),
                keys.lease(device_id),
                keys.fencing(device_id),
                keys.outbox_events(keys.shard_of_device(device_id)),
                keys.outbox_order(keys.shard_of_device(device_id)),
                keys.open_devices(keys.shard_of_device(device_id)),
            ] {
                assert_eq!(key_slot(key.as_bytes()), slot, "{key}");
            }
            assert_eq!(keys.shard_of_device(device_id), u32::from(slot));
        }
        assert_eq!(key_slot(keys.nodes().as_bytes()), key_slot(keys.node_urls().as_bytes()));
    }

    #[test]
    fn standalone_has_one_shard() {
        let keys = Keys::new("omadm", false);
        assert_eq!(keys.shards(), 1);
        assert_eq!(keys.shard_of_device("IMEI:1"), 0);
        assert_eq!(keys.outbox_order(0), "omadm:{outbox}:outbox-order");
    }
}
