//! Starting one device, pure: whether it is skipped, fails at once, or gets its commands, and which.
//!
//! A firmware update is two commands on the device's FUMO instance (the MIID its MOS list names):
//! `HGET <descriptor> urn:oma:mo:oma-fumo:1.0/<miid>/` writes the instance (PkgName, PkgVersion,
//! DownloadAndUpdate/PkgURL) from the campaign's descriptor in the repository, then
//! `EXEC urn:oma:mo:oma-fumo:1.0/<miid>/DownloadAndUpdate` starts it; the FUMO Generic Alert reports the result.

use omadm_core::campaign::{Action, Campaign};
use omadm_core::model::Device;
use omadm_proto::command::Command;
use omadm_proto::mo::{DevInfo, FirmwareUpdate};

/// What a start does with one device.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Nothing to do: `reason` says why (`already_on_version`, `not_matching`, `unknown_device`).
    Skip(&'static str),
    /// It cannot take the action (`no_fumo_instance`).
    Fail(&'static str),
    /// Queue these and wake it.
    Commands { commands: Vec<Command>, fumo_miid: Option<String> },
}

/// The command that reads the firmware version back (DevInfo FwV).
pub fn version_read() -> Command {
    let json = serde_json::json!(["GET", format!("{}//FwV", DevInfo::MOID)]);
    Command::from_json(&json).unwrap_or_else(|error| unreachable!("the FwV GET is well formed: {error}"))
}

/// The FUMO instance a device listed in its MOS, if any.
pub fn fumo_instance(device: &Device) -> Option<String> {
    device
        .supported_objects
        .iter()
        .find(|object| object.moid.as_str() == FirmwareUpdate::MOID)
        .and_then(|object| object.miids.first().cloned())
}

/// How `device` (None: deleted since it was selected) starts in `campaign`.
pub fn plan(campaign: &Campaign, device: Option<&Device>) -> Start {
    let Some(device) = device else { return Start::Skip("unknown_device") };
    if let Some(filter) = &campaign.spec.target.filter
        && !filter.device_filter().matches(device)
    {
        return Start::Skip("not_matching");
    }
    match &campaign.spec.action {
        Action::Firmware(firmware) => {
            if device.inventory.fwv.as_deref() == Some(firmware.version.as_str()) {
                return Start::Skip("already_on_version");
            }
            let Some(miid) = fumo_instance(device) else { return Start::Fail("no_fumo_instance") };
            let Some(descriptor) = &campaign.descriptor_url else { return Start::Fail("no_descriptor") };
            let moid = FirmwareUpdate::MOID;
            let commands = [
                serde_json::json!(["HGET", descriptor, format!("{moid}/{miid}/")]),
                serde_json::json!(["EXEC", format!("{moid}/{miid}/DownloadAndUpdate")]),
            ];
            match commands.iter().map(Command::from_json).collect::<Result<Vec<_>, _>>() {
                Ok(commands) => Start::Commands { commands, fumo_miid: Some(miid) },
                // A MIID the device listed that makes no valid address: it cannot be updated this way.
                Err(_) => Start::Fail("no_fumo_instance"),
            }
        }
        Action::Commands(_) => Start::Commands { commands: campaign.spec.commands(), fumo_miid: None },
    }
}
