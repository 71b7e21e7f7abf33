//! The simulated firmware update: EXEC on a FUMO operation node takes --fw-duration-ms, succeeds or fails with
//! --fw-fail-rate, and reports the FUMO Generic Alert with the result code.

use std::sync::Arc;
use std::time::Duration;

use omadm_client::device::{Device, ExecOutcome, ExecutableNode};
use omadm_proto::mo::{FirmwareUpdate, FumoOperation, FumoResultCode, FumoState};
use omadm_proto::package::AlertItem;
use omadm_proto::status::StatusCode;

use crate::report::Collector;

/// The MIID of the FUMO instance every simulated device has.
pub const FUMO_MIID: &str = "fw";

/// How updates behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirmwareBehaviour {
    pub fail_rate: f64,
    pub duration: Duration,
}

/// The result code of an update given a uniform draw in [0, 1): failure (410) below the fail rate.
pub fn result_code(draw: f64, fail_rate: f64) -> FumoResultCode {
    if draw < fail_rate { FumoResultCode::UPDATE_FAILED } else { FumoResultCode::SUCCESSFUL }
}

/// The Generic Alert reporting the end of `operation` on the node `client_uri` (FUMO 1.0: AlertType of the
/// operation, SourceURI the EXEC'd node, Data the result code).
pub fn result_alert(operation: FumoOperation, client_uri: &str, code: FumoResultCode) -> AlertItem {
    let mut alert = AlertItem::new(operation.alert_type());
    alert.source_uri = Some(client_uri.to_owned());
    alert.data = Some(serde_json::json!(code.0));
    alert
}

struct FirmwareNode {
    operation: FumoOperation,
    behaviour: FirmwareBehaviour,
    collector: Arc<Collector>,
}

#[async_trait::async_trait]
impl ExecutableNode for FirmwareNode {
    async fn execute(&self, client_uri: &str) -> ExecOutcome {
        tokio::time::sleep(self.behaviour.duration).await;
        let code = result_code(rand::random::<f64>(), self.behaviour.fail_rate);
        self.collector.record_firmware(code == FumoResultCode::SUCCESSFUL);
        ExecOutcome { status: StatusCode::OK, alert: Some(result_alert(self.operation, client_uri, code)) }
    }
}

/// Gives `device` a FUMO instance (MIID `fw`, State Idle) and the executables behind its three operations.
pub fn install(
    device: &mut Device,
    behaviour: FirmwareBehaviour,
    collector: &Arc<Collector>,
) -> Result<(), omadm_client::device::DeviceError> {
    let instance = FirmwareUpdate {
        package_name: None,
        package_version: None,
        download_url: None,
        update_package: None,
        download_and_update_url: None,
        state: FumoState::Idle,
        extensions: None,
    };
    device.store(FirmwareUpdate::MOID, FUMO_MIID, instance.to_mo_data())?;
    for operation in [FumoOperation::Download, FumoOperation::Update, FumoOperation::DownloadAndUpdate] {
        let node = FirmwareNode { operation, behaviour, collector: Arc::clone(collector) };
        device.register_executable(
            format!("{}/{FUMO_MIID}/{}", FirmwareUpdate::MOID, operation.node_name()),
            Arc::new(node),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rate_decides_the_result_code() {
        assert_eq!(result_code(0.05, 0.1), FumoResultCode::UPDATE_FAILED);
        assert_eq!(result_code(0.1, 0.1), FumoResultCode::SUCCESSFUL);
        assert_eq!(result_code(0.0, 0.0), FumoResultCode::SUCCESSFUL);
        assert_eq!(result_code(0.999, 1.0), FumoResultCode::UPDATE_FAILED);
    }

    #[test]
    fn the_alert_carries_type_source_and_code() {
        let uri = "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate";
        let alert = result_alert(FumoOperation::DownloadAndUpdate, uri, FumoResultCode::UPDATE_FAILED);
        assert_eq!(alert.alert_type, omadm_proto::mo::ALERT_TYPE_DOWNLOAD_AND_UPDATE);
        assert_eq!(alert.source_uri.as_deref(), Some(uri));
        let data = alert.data.unwrap();
        assert_eq!(FumoResultCode::from_alert_data(&data).unwrap(), FumoResultCode::UPDATE_FAILED);
    }
}
