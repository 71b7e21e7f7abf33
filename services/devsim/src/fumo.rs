//! The simulated firmware update: EXEC on a FUMO operation node is accepted (202); after the session the device
//! downloads the PkgURL, writes its progress to State, updates for --fw-duration-ms, succeeds or fails with
//! --fw-fail-rate, and reports the FUMO Generic Alert with the result code in a new session.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use omadm_client::device::{Device, ExecOutcome, ExecutableNode};
use omadm_client::transport::Transport;
use omadm_proto::mo::{DevInfo, FirmwareUpdate, FumoOperation, FumoResultCode, FumoState};
use omadm_proto::package::AlertItem;
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{LeafValue, Node};

/// The MIID of the FUMO instance every simulated device has.
pub const FUMO_MIID: &str = "fw";

/// How updates behave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FirmwareBehaviour {
    pub fail_rate: f64,
    pub duration: Duration,
    /// Report success but keep the old DevInfo FwV (a device whose update did not take).
    pub keep_version: bool,
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

/// An operation the server EXEC'd and the device has yet to run: (operation, the EXEC'd node).
pub type PendingUpdate = Arc<Mutex<Option<(FumoOperation, String)>>>;

/// The executable behind one FUMO operation node: accepts the EXEC (202, as FUMO devices do for long work) and
/// leaves the update to run after the session, so the session is not held open for minutes.
struct FirmwareNode {
    operation: FumoOperation,
    pending: PendingUpdate,
}

#[async_trait::async_trait]
impl ExecutableNode for FirmwareNode {
    async fn execute(&self, client_uri: &str) -> ExecOutcome {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some((self.operation, client_uri.to_owned()));
        ExecOutcome { status: StatusCode::ACCEPTED, alert: None }
    }
}

/// Gives `device` a FUMO instance (MIID `fw`, State Idle) and the executables behind its three operations;
/// returns where an EXEC'd operation waits to be run by [`run_update`].
pub fn install(device: &mut Device) -> Result<PendingUpdate, omadm_client::device::DeviceError> {
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
    let pending = PendingUpdate::default();
    for operation in [FumoOperation::Download, FumoOperation::Update, FumoOperation::DownloadAndUpdate] {
        let node = FirmwareNode { operation, pending: Arc::clone(&pending) };
        device.register_executable(
            format!("{}/{FUMO_MIID}/{}", FirmwareUpdate::MOID, operation.node_name()),
            Arc::new(node),
        );
    }
    Ok(pending)
}

/// The PkgURL under the operation's node of the device's FUMO instance, when set and not empty.
pub fn package_url(device: &Device, operation: FumoOperation) -> Option<String> {
    let instance = device.tree.instance(FirmwareUpdate::MOID, FUMO_MIID)?;
    match instance.get(&[operation.node_name(), "PkgURL"]) {
        Some(Node::Leaf(LeafValue::Chr(url))) if !url.trim().is_empty() => Some(url.trim().to_owned()),
        _ => None,
    }
}

/// The FUMO State of the device's instance (None without one).
pub fn state(device: &Device) -> Option<FumoState> {
    let instance = device.tree.instance(FirmwareUpdate::MOID, FUMO_MIID)?;
    match instance.get(&["State"]) {
        Some(Node::Leaf(LeafValue::Int(value))) => FumoState::from_value(*value),
        _ => None,
    }
}

fn set_state(device: &mut Device, state: FumoState) {
    if let Some(instance) = device.tree.instance_mut(FirmwareUpdate::MOID, FUMO_MIID)
        && let Err(error) = instance.set_leaf(&["State"], LeafValue::Int(state.value()))
    {
        tracing::warn!(%error, "cannot write the FUMO State");
    }
}

/// Runs an EXEC'd operation: downloads the PkgURL (Download, DownloadAndUpdate) with the device's credentials,
/// then updates for `behaviour.duration` and succeeds or fails by `behaviour.fail_rate`, writing each step to
/// State. Returns the result code and the Generic Alert reporting it.
pub async fn run_update(
    device: &mut Device,
    transport: &Transport,
    operation: FumoOperation,
    client_uri: &str,
    behaviour: FirmwareBehaviour,
) -> (FumoResultCode, AlertItem) {
    let code = update(device, transport, operation, behaviour).await;
    (code, result_alert(operation, client_uri, code))
}

async fn update(
    device: &mut Device,
    transport: &Transport,
    operation: FumoOperation,
    behaviour: FirmwareBehaviour,
) -> FumoResultCode {
    if operation != FumoOperation::Update {
        let Some(url) = package_url(device, operation) else {
            set_state(device, FumoState::DownloadFailed);
            return FumoResultCode::MALFORMED_URL;
        };
        set_state(device, FumoState::DownloadProgressing);
        match transport.send_authenticated(reqwest::Method::GET, &url, None, None, Vec::new()).await {
            Ok(reply) if (200..300).contains(&reply.status) => set_state(device, FumoState::DownloadComplete),
            Ok(reply) => {
                tracing::info!(%url, status = reply.status, "firmware download refused");
                set_state(device, FumoState::DownloadFailed);
                return FumoResultCode::DOWNLOAD_SERVER_ERROR;
            }
            Err(error) => {
                tracing::info!(%url, %error, "firmware download failed");
                set_state(device, FumoState::DownloadFailed);
                return FumoResultCode::DOWNLOAD_SERVER_UNAVAILABLE;
            }
        }
        if operation == FumoOperation::Download {
            set_state(device, FumoState::ReadyToUpdate);
            return FumoResultCode::SUCCESSFUL;
        }
    }
    set_state(device, FumoState::UpdateProgressing);
    tokio::time::sleep(behaviour.duration).await;
    let code = result_code(rand::random::<f64>(), behaviour.fail_rate);
    let end_state = if code == FumoResultCode::SUCCESSFUL {
        FumoState::UpdateSuccessfulNoData
    } else {
        FumoState::UpdateFailedNoData
    };
    set_state(device, end_state);
    if code == FumoResultCode::SUCCESSFUL && !behaviour.keep_version {
        install_version(device);
    }
    code
}

/// After a successful update the device runs the package's version: DevInfo FwV becomes the FUMO PkgVersion.
fn install_version(device: &mut Device) {
    let version = match device.tree.instance(FirmwareUpdate::MOID, FUMO_MIID).and_then(|fumo| fumo.get(&["PkgVersion"]))
    {
        Some(Node::Leaf(LeafValue::Chr(version))) if !version.trim().is_empty() => version.trim().to_owned(),
        _ => return,
    };
    if let Some(devinfo) = device.tree.instance_mut(DevInfo::MOID, "")
        && let Err(error) = devinfo.set_leaf(&["FwV"], LeafValue::Chr(version))
    {
        tracing::warn!(%error, "cannot write DevInfo FwV");
    }
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

    #[tokio::test]
    async fn an_exec_is_accepted_and_an_update_without_url_fails_with_411_in_state() {
        let devinfo = omadm_proto::mo::DevInfo {
            device_id: "u-1".into(),
            manufacturer: "m".into(),
            model: "x".into(),
            dm_client_version: "2.0".into(),
            language: "en".into(),
            device_type: "sim".into(),
            oem: "o".into(),
            firmware_version: "1".into(),
            software_version: "1".into(),
            hardware_version: "1".into(),
            bearer: None,
            extensions: None,
        };
        let account = omadm_client::device::ServerAccount {
            server_id: "omadm".into(),
            package1_url: "http://127.0.0.1:9/dm".into(),
        };
        let mut device = Device::new(devinfo, "pw", account).unwrap();
        let pending = install(&mut device).unwrap();
        assert_eq!(state(&device), Some(FumoState::Idle));
        assert_eq!(package_url(&device, FumoOperation::DownloadAndUpdate), None);
        let transport = Transport::new(device.credentials.clone()).unwrap();
        let behaviour = FirmwareBehaviour { fail_rate: 0.0, duration: Duration::from_millis(1), keep_version: false };
        let uri = "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate";
        let (code, alert) = run_update(&mut device, &transport, FumoOperation::DownloadAndUpdate, uri, behaviour).await;
        assert_eq!(code, FumoResultCode::MALFORMED_URL);
        assert_eq!(alert.source_uri.as_deref(), Some(uri));
        assert_eq!(state(&device), Some(FumoState::DownloadFailed));
        // Update needs no download: it runs and succeeds at fail rate 0.
        let (code, _) = run_update(&mut device, &transport, FumoOperation::Update, uri, behaviour).await;
        assert_eq!(code, FumoResultCode::SUCCESSFUL);
        assert_eq!(state(&device), Some(FumoState::UpdateSuccessfulNoData));
        assert!(pending.lock().unwrap().is_none());
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
