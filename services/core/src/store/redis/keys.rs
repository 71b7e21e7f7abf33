//! The Redis key names of the store; the layout is described in docs/store.md ("Redis engine").
//!
//! Every key of one device carries the hash tag `{device id}`, so on Redis
//! Cluster one device's keys share a slot and a per-device MULTI stays in one
//! slot. Keys that are not per device (the device index, session lookups, the
//! repository, the outbox) carry no device tag.

/// Builds the key names under one prefix (a deployment, or one test).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_owned() }
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
    /// SET: ids of the device's open sessions.
    pub fn open_sessions_of_device(&self, device_id: &str) -> String {
        self.device_key(device_id, "open-sessions")
    }
    /// HASH: session id -> summary (JSON) of the device's ended sessions.
    pub fn history(&self, device_id: &str) -> String {
        self.device_key(device_id, "history")
    }
    /// ZSET: ended session ids scored by started_at (newest first with ZREVRANGE).
    pub fn history_order(&self, device_id: &str) -> String {
        self.device_key(device_id, "history-order")
    }
    /// STRING: id of the device's latest ended session whose final state is kept.
    pub fn last_ended(&self, device_id: &str) -> String {
        self.device_key(device_id, "last-ended")
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

    /// ZSET: every device id with score 0, paged in id order with ZRANGEBYLEX.
    pub fn device_index(&self) -> String {
        format!("{}:devices", self.prefix)
    }
    /// HASH: session id -> open session state (JSON), for lookups by session id and the expiry sweep.
    pub fn open_sessions(&self) -> String {
        format!("{}:open-sessions", self.prefix)
    }
    /// HASH: session id -> final state (JSON) of each device's latest ended session.
    pub fn ended_sessions(&self) -> String {
        format!("{}:ended-sessions", self.prefix)
    }
    /// STRING: one Data Repository item (JSON).
    pub fn content(&self, path: &str) -> String {
        format!("{}:content:{path}", self.prefix)
    }
    /// HASH: event id -> event (JSON) waiting for the Bus.
    pub fn outbox_events(&self) -> String {
        format!("{}:outbox:events", self.prefix)
    }
    /// ZSET: waiting event ids scored by their outbox sequence (commit order).
    pub fn outbox_order(&self) -> String {
        format!("{}:outbox:order", self.prefix)
    }
    /// STRING counter: the last outbox sequence number.
    pub fn outbox_sequence(&self) -> String {
        format!("{}:outbox:sequence", self.prefix)
    }
}
