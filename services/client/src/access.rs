//! Access control of 11.3: whether the current server may run a command on an MO instance, from the DMDAC
//! instances of the tree, with creator rights and the Delegate right for changes to DMDAC itself.
//!
//! Decisions where 11.3 leaves room: an MOID no DMDAC instance governs is open to every server (a device
//! without access control for that MO); the DMDAC MO itself is governed through the instances it names, so
//! changing a DMDAC instance needs Delegate on every instance its entries (old and new) name.

use omadm_proto::mo::{DelegationAccessControl, Operation, permits};
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{DmmoDocument, ManagementTree};
use serde_json::Value;

use crate::device::Device;

/// Every DMDAC instance of the tree that reads as one.
pub fn access_control_instances(tree: &ManagementTree) -> Vec<DelegationAccessControl> {
    tree.instances_of(DelegationAccessControl::MOID)
        .filter_map(|instance| {
            let document = DmmoDocument::from_instance(instance);
            DelegationAccessControl::from_mo_data(&Value::Object(document.mo_data)).ok()
        })
        .collect()
}

/// Ok when the current server may perform `operation` on (`moid`, `miid`); 403 otherwise.
pub fn check_operation(device: &Device, moid: &str, miid: &str, operation: Operation) -> Result<(), StatusCode> {
    if !device.access_control || device.created_by_current_server(moid, miid) {
        return Ok(());
    }
    let instances = access_control_instances(&device.tree);
    if !instances.iter().any(|instance| instance.moid == moid) {
        return Ok(());
    }
    if permits(&instances, &device.account.server_id, moid, miid, operation) {
        Ok(())
    } else {
        Err(StatusCode::FORBIDDEN)
    }
}

/// Ok when the current server may run `command_name` on (`moid`, `miid`). A command on a DMDAC instance needs
/// Delegate on every instance the DMDAC instance governs (its current entries).
pub fn check_command(device: &Device, command_name: &str, moid: &str, miid: &str) -> Result<(), StatusCode> {
    let operation = match Operation::for_command(command_name, moid) {
        Ok(Some(operation)) => operation,
        Ok(None) => return Ok(()),
        Err(error) => return Err(error.status_code()),
    };
    if operation != Operation::Delegate {
        return check_operation(device, moid, miid, operation);
    }
    let Some(instance) = device.tree.instance(moid, miid) else { return Ok(()) };
    let document = DmmoDocument::from_instance(instance);
    match DelegationAccessControl::from_mo_data(&Value::Object(document.mo_data)) {
        Ok(existing) => check_delegation(device, &existing),
        Err(_) => Ok(()),
    }
}

/// Ok when the current server holds Delegate on every instance `access_control` names.
pub fn check_delegation(device: &Device, access_control: &DelegationAccessControl) -> Result<(), StatusCode> {
    for entry in access_control.entries.values() {
        check_operation(device, &access_control.moid, &entry.miid, Operation::Delegate)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::tests::sample_device;
    use omadm_proto::mo::{AccessControlEntry, AccessRights, DmAccount, ManagementAuthority};
    use std::collections::BTreeMap;

    #[test]
    fn the_new_device_protects_its_account() {
        let device = sample_device();
        assert_eq!(check_command(&device, "GET", DmAccount::MOID, "dms1"), Ok(()));
        assert_eq!(check_command(&device, "HGET", DmAccount::MOID, "dms1"), Err(StatusCode::FORBIDDEN));
        assert_eq!(check_command(&device, "EXEC", DmAccount::MOID, "dms1"), Err(StatusCode::FORBIDDEN));
        // Ungoverned MOs are open; SHOW touches no instance.
        assert_eq!(check_command(&device, "DELETE", "urn:oma:mo:other:1.0", "x"), Ok(()));
        assert_eq!(check_command(&device, "SHOW", DmAccount::MOID, "dms1"), Ok(()));
        assert_eq!(check_command(&device, "PATCH", DmAccount::MOID, "dms1"), Err(StatusCode::NOT_IMPLEMENTED));
    }

    #[test]
    fn creators_get_full_rights_and_access_control_can_be_off() {
        let mut device = sample_device();
        device.record_creator(DmAccount::MOID, "dms1");
        assert_eq!(check_command(&device, "HGET", DmAccount::MOID, "dms1"), Ok(()));
        let mut device = sample_device();
        device.access_control = false;
        assert_eq!(check_command(&device, "DELETE", DmAccount::MOID, "dms1"), Ok(()));
    }

    #[test]
    fn changing_dmdac_needs_delegate_on_the_governed_instances() {
        let mut device = sample_device();
        assert_eq!(
            check_command(&device, "DELETE", DelegationAccessControl::MOID, crate::device::DMACC_PROTECTION_MIID),
            Err(StatusCode::FORBIDDEN)
        );
        let grant = DelegationAccessControl {
            moid: DmAccount::MOID.to_owned(),
            entries: BTreeMap::from([(
                "1".to_owned(),
                AccessControlEntry {
                    miid: "dms1".to_owned(),
                    authority: ManagementAuthority::Server("dms1".to_owned()),
                    rights: AccessRights::DELEGATE,
                },
            )]),
        };
        device.store(DelegationAccessControl::MOID, "grant", grant.to_mo_data()).unwrap();
        assert_eq!(
            check_command(&device, "DELETE", DelegationAccessControl::MOID, crate::device::DMACC_PROTECTION_MIID),
            Ok(())
        );
        assert_eq!(check_delegation(&device, &grant), Ok(()));
    }
}
