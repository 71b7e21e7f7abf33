//! A Generic Alert received from a device, with the status the server answered.

use omadm_proto::package::AlertItem;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Per-device, increasing from 1.
    pub id: u64,
    pub device_id: String,
    pub session_id: String,
    pub received_at: Millis,
    pub item: AlertItem,
    /// 200/202, or 415 for an unsupported MIMEType (5.3).
    pub status: u16,
}
