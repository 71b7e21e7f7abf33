//! DELETE (5.4.4): removes a node, or a whole MO instance when the ClientURI names its root.

use omadm_proto::command::Delete;
use omadm_proto::mo::{DevInfo, SessionInfo};
use omadm_proto::status::StatusCode;

use super::{CommandContext, CommandOutcome, target_of};
use crate::access::check_command;

/// The device's own identity (DevInfo) and connection state (SessionInfo) are permanent: 405.
const PERMANENT_MOIDS: [&str; 2] = [DevInfo::MOID, SessionInfo::MOID];

/// 200, 404 when nothing is there, 405 for permanent MOs, 403 without the right.
pub fn execute(context: &mut CommandContext<'_>, delete: &Delete) -> CommandOutcome {
    let device = &mut *context.device;
    let target = match target_of(&device.tree, delete.client_uri()) {
        Ok(target) if target.exists => target,
        Ok(_) => return CommandOutcome::status(StatusCode::NOT_FOUND),
        Err(code) => return CommandOutcome::status(code),
    };
    if PERMANENT_MOIDS.contains(&target.moid.as_str()) {
        return CommandOutcome::status(StatusCode::COMMAND_NOT_ALLOWED);
    }
    if let Err(code) = check_command(device, "DELETE", &target.moid, &target.miid) {
        return CommandOutcome::status(code);
    }
    if target.path.is_empty() {
        device.tree.remove_instance(&target.moid, &target.miid);
        return CommandOutcome::status(StatusCode::OK);
    }
    let Some(instance) = device.tree.instance_mut(&target.moid, &target.miid) else {
        return CommandOutcome::status(StatusCode::NOT_FOUND);
    };
    match instance.delete_node(&target.path) {
        Ok(_) => CommandOutcome::status(StatusCode::OK),
        Err(error) => CommandOutcome::status(error.status_code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use omadm_proto::uri::ClientUri;

    fn run(device: &mut crate::device::Device, uri: &str) -> CommandOutcome {
        let transport = offline_transport();
        let mut context = CommandContext { device, transport: &transport };
        execute(&mut context, &Delete::new(ClientUri::parse(uri).unwrap()).unwrap())
    }

    #[test]
    fn delete_nodes_instances_and_refusals() {
        let mut device = crate::device::tests::sample_device();
        device.store("urn:oma:mo:example:1.0", "a", serde_json::json!({"X": {"Y": 1}, "Z": 2})).unwrap();
        assert_eq!(run(&mut device, "urn:oma:mo:example:1.0/a/X/Y").code(), StatusCode::OK);
        assert!(device.tree.instance("urn:oma:mo:example:1.0", "a").unwrap().get(&["X", "Y"]).is_none());
        assert_eq!(run(&mut device, "urn:oma:mo:example:1.0/a/X/Y").code(), StatusCode::NOT_FOUND);
        assert_eq!(run(&mut device, "urn:oma:mo:example:1.0/a/").code(), StatusCode::OK);
        assert!(device.tree.instance("urn:oma:mo:example:1.0", "a").is_none());
        assert_eq!(run(&mut device, "urn:oma:mo:oma-dm-devinfo:1.2//FwV").code(), StatusCode::COMMAND_NOT_ALLOWED);
        assert_eq!(run(&mut device, "urn:oma:mo:oma-dm-dmacc:2.0/dms1/").code(), StatusCode::FORBIDDEN);
        assert!(device.tree.instance("urn:oma:mo:oma-dm-dmacc:2.0", "dms1").is_some());
    }
}
