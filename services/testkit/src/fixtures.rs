//! Data the tests put in a Store or hand to a device: a sample DevInfo, a registered device, queued commands.
//!
//! ```text
//! omadm_testkit::fixtures::register(&*store, "IMEI:1", "s3cret").await;
//! omadm_testkit::fixtures::enqueue(&*store, "IMEI:1", json!([["GET", "./DevInfo/Mod"]])).await;
//! let devinfo = DevInfo { firmware_version: "2.0".into(), ..omadm_testkit::fixtures::devinfo("IMEI:1") };
//! ```

use omadm_core::auth::{DEFAULT_REALM, credentials_for};
use omadm_core::clock;
use omadm_core::model::{CommandOrigin, Device, NewCommand};
use omadm_core::store::{Store, WriteBatch};
use omadm_proto::command::Command;
use omadm_proto::mo::DevInfo;

/// The DevInfo of an `Example` `X1` meter on firmware 1.0.0, software 5.1, hardware rev B.
pub fn devinfo(device_id: &str) -> DevInfo {
    DevInfo {
        device_id: device_id.to_owned(),
        manufacturer: "Example".into(),
        model: "X1".into(),
        dm_client_version: "2.0".into(),
        language: "en-US".into(),
        device_type: "meter".into(),
        oem: "Example OEM".into(),
        firmware_version: "1.0.0".into(),
        software_version: "5.1".into(),
        hardware_version: "rev B".into(),
        bearer: None,
        extensions: None,
    }
}

/// Registers `device_id` with `password` in the default realm, as the operator API would.
pub async fn register(store: &dyn Store, device_id: &str, password: &str) {
    let device = Device::new(device_id, credentials_for(device_id, DEFAULT_REALM, password), clock::now_millis());
    store.commit(WriteBatch { devices: vec![device], ..WriteBatch::default() }).await.unwrap();
}

/// Queues `commands`, given in the Package#2 array form (`[["GET", uri], ...]`), as operator commands; returns
/// their ids.
pub async fn enqueue(store: &dyn Store, device_id: &str, commands: serde_json::Value) -> Vec<u64> {
    let commands = commands
        .as_array()
        .unwrap()
        .iter()
        .map(|command| NewCommand { command: Command::from_json(command).unwrap(), origin: CommandOrigin::Operator })
        .collect();
    store.enqueue_commands(device_id, commands, clock::now_millis()).await.unwrap()
}
