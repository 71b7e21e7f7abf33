//! HGET (5.4.1): fetches data from the ServerURI and stores it at the ClientURI (200), or, without a ClientURI,
//! as a new MO instance whose address the 201 carries.
//!
//! `application/dmmo+json` bodies are MO data: a whole instance at an instance root, a node elsewhere. Any other
//! media type becomes one leaf (`chr` when UTF-8, `bin` otherwise) and cannot make an instance (415).

use omadm_proto::command::Hget;
use omadm_proto::mo::DelegationAccessControl;
use omadm_proto::package::CommandStatus;
use omadm_proto::package::media::{DMMO_JSON, is_media_type};
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{DmmoDocument, InteriorNode, LeafValue, MoInstance, Node};
use reqwest::Method;
use serde_json::Value;

use super::{CommandContext, CommandOutcome, Target, ensure_default_instance, status_for_http, target_of};
use crate::access::{check_command, check_delegation};
use crate::device::Device;

/// What HGET asks the repository for: MO data first, anything else after.
pub const HGET_ACCEPT: &str = "application/dmmo+json, */*;q=0.5";

/// 200 or 201 with the location; 404/415/500 for fetch failures, 400 for unreadable data, 403, 506.
pub async fn execute(context: &mut CommandContext<'_>, hget: &Hget) -> CommandOutcome {
    let target = match hget.client_uri() {
        Some(uri) => {
            ensure_default_instance(context, &uri.moid).await;
            match target_of(&context.device.tree, uri) {
                Ok(target) => Some(target),
                Err(code) => return CommandOutcome::status(code),
            }
        }
        None => None,
    };
    // Write on an existing instance; for a DMDAC instance, Delegate on every instance its current entries name.
    // The entries the new data would add are checked once the data is known.
    if let Some(target) = target.as_ref().filter(|target| target.instance_exists) {
        if let Err(code) = check_command(context.device, "HGET", &target.moid, &target.miid) {
            return CommandOutcome::status(code);
        }
    }
    let url = hget.server_uri().substitute(&context.device.server_uri_params());
    let reply = match context.transport.send_plain(Method::GET, &url, None, Some(HGET_ACCEPT), Vec::new()).await {
        Ok(reply) if (200..300).contains(&reply.status) => reply,
        Ok(reply) => return CommandOutcome::status(status_for_http(reply.status)),
        Err(error) => {
            tracing::warn!(url, %error, "HGET fetch failed");
            return CommandOutcome::status(StatusCode::INTERNAL_ERROR);
        }
    };
    let is_mo_data = reply.content_type.as_deref().is_some_and(|content_type| is_media_type(content_type, DMMO_JSON));
    let result = match target {
        Some(target) => {
            store_at(context.device, &target, is_mo_data, &reply.body).map(|()| CommandStatus::new(StatusCode::OK))
        }
        None => create_instance(context.device, is_mo_data, &reply.body),
    };
    match result {
        Ok(status) => CommandOutcome { status, ..CommandOutcome::status(StatusCode::OK) },
        Err(code) => CommandOutcome::status(code),
    }
}

/// Stores the fetched data at an address the server chose.
fn store_at(device: &mut Device, target: &Target, is_mo_data: bool, body: &[u8]) -> Result<(), StatusCode> {
    let limits = device.tree.limits();
    let node = if is_mo_data {
        let document = DmmoDocument::from_slice(body).map_err(|error| error.status_code())?;
        if target.path.is_empty() {
            if document.moid != target.moid {
                return Err(StatusCode::BAD_REQUEST);
            }
            check_access_control_change(device, &target.moid, &document)?;
            let placed = DmmoDocument { miid: Some(target.miid.clone()), client_uri: None, ..document };
            device.tree.store_document(&placed).map_err(|error| error.status_code())?;
            if !target.instance_exists {
                device.record_creator(&target.moid, &target.miid);
            }
            return Ok(());
        }
        if document.is_instance_root() {
            Node::Interior(
                InteriorNode::from_json_map(&document.mo_data, &limits).map_err(|error| error.status_code())?,
            )
        } else {
            document.to_node(&limits).map_err(|error| error.status_code())?.1
        }
    } else {
        if target.path.is_empty() {
            return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        match std::str::from_utf8(body) {
            Ok(text) => Node::Leaf(LeafValue::Chr(text.to_owned())),
            Err(_) => Node::Leaf(LeafValue::Bin(body.to_vec())),
        }
    };
    // The change is made on a copy of the instance, checked, then swapped in: a refused edit changes nothing.
    let mut changed = match device.tree.instance(&target.moid, &target.miid) {
        Some(instance) => instance.clone(),
        None => MoInstance::new(target.moid.clone(), target.miid.clone()).map_err(|error| error.status_code())?,
    };
    changed.set_node(&target.path, node).map_err(|error| error.status_code())?;
    if target.moid == DelegationAccessControl::MOID {
        check_access_control_change(device, &target.moid, &DmmoDocument::from_instance(&changed))?;
    }
    let previous = device.tree.remove_instance(&target.moid, &target.miid);
    if let Err(error) = device.tree.insert_instance(changed) {
        if let Some(previous) = previous {
            device.tree.insert_instance(previous).map_err(|error| error.status_code())?;
        }
        return Err(error.status_code());
    }
    if !target.instance_exists {
        device.record_creator(&target.moid, &target.miid);
    }
    Ok(())
}

/// Stores fetched MO data as a new instance: its own MIID when free, else one the device picks.
fn create_instance(device: &mut Device, is_mo_data: bool, body: &[u8]) -> Result<CommandStatus, StatusCode> {
    if !is_mo_data {
        return Err(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let document = DmmoDocument::from_slice(body).map_err(|error| error.status_code())?;
    if !document.is_instance_root() {
        return Err(StatusCode::BAD_REQUEST);
    }
    check_access_control_change(device, &document.moid, &document)?;
    let moid = document.moid.clone();
    let miid = match document.miid.as_deref() {
        Some(miid) if !miid.is_empty() && device.tree.instance(&moid, miid).is_none() => miid.to_owned(),
        _ => device.fresh_miid(&moid),
    };
    let placed = DmmoDocument { miid: Some(miid.clone()), client_uri: None, ..document };
    device.tree.store_document(&placed).map_err(|error| error.status_code())?;
    device.record_creator(&moid, &miid);
    Ok(CommandStatus::with_location(StatusCode::CREATED, format!("{moid}/{miid}/")))
}

/// HGET of a DMDAC instance hands out rights: the server needs Delegate on every instance the new entries name
/// (those the replaced instance named are checked before the fetch, through `check_command`).
fn check_access_control_change(device: &Device, moid: &str, document: &DmmoDocument) -> Result<(), StatusCode> {
    if moid != DelegationAccessControl::MOID {
        return Ok(());
    }
    let access_control = DelegationAccessControl::from_mo_data(&Value::Object(document.mo_data.clone()))
        .map_err(|error| error.status_code())?;
    check_delegation(device, &access_control)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bytes(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn target(device: &Device, uri: &str) -> Target {
        target_of(&device.tree, &omadm_proto::uri::ClientUri::parse(uri).unwrap()).unwrap()
    }

    #[test]
    fn store_at_an_instance_root_a_node_and_a_leaf() {
        let mut device = crate::device::tests::sample_device();
        let document = json!({"MOID": "urn:oma:mo:example:1.0", "MIID": "x", "MOData": {"A": 1}});
        let place = target(&device, "urn:oma:mo:example:1.0/cfg/");
        store_at(&mut device, &place, true, &bytes(document)).unwrap();
        assert!(device.tree.instance("urn:oma:mo:example:1.0", "cfg").is_some());
        assert!(device.created_by_current_server("urn:oma:mo:example:1.0", "cfg"));
        let place = target(&device, "urn:oma:mo:example:1.0/cfg/Note");
        store_at(&mut device, &place, false, b"hello").unwrap();
        let note = device.tree.instance("urn:oma:mo:example:1.0", "cfg").unwrap().get(&["Note"]).cloned();
        assert_eq!(note, Some(Node::Leaf(LeafValue::Chr("hello".into()))));
        let place = target(&device, "urn:oma:mo:example:1.0/cfg/");
        assert_eq!(store_at(&mut device, &place, false, b"x"), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert_eq!(store_at(&mut device, &place, true, b"{not json"), Err(StatusCode::BAD_REQUEST));
        let wrong_moid = json!({"MOID": "urn:oma:mo:other:1.0", "MOData": {}});
        assert_eq!(store_at(&mut device, &place, true, &bytes(wrong_moid)), Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn create_instance_picks_a_miid_and_refuses_delegation_without_the_right() {
        let mut device = crate::device::tests::sample_device();
        let document = json!({"MOID": "urn:oma:mo:example:1.0", "MOData": {"A": 1}});
        let status = create_instance(&mut device, true, &bytes(document.clone())).unwrap();
        assert_eq!(status, CommandStatus::with_location(StatusCode::CREATED, "urn:oma:mo:example:1.0/miid1/"));
        let status = create_instance(&mut device, true, &bytes(document)).unwrap();
        assert_eq!(status.location(), Some("urn:oma:mo:example:1.0/miid2/"));
        let grab = json!({"MOID": DelegationAccessControl::MOID, "MOData": {"MOID": "urn:oma:mo:oma-dm-dmacc:2.0",
            "1": {"MIID": "dms1", "MAID": "serverid:dms1", "AccessRights": 15}}});
        assert_eq!(create_instance(&mut device, true, &bytes(grab)), Err(StatusCode::FORBIDDEN));
        assert_eq!(create_instance(&mut device, false, b"x"), Err(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }

    #[test]
    fn a_node_edit_of_dmdac_that_grants_rights_is_refused_and_changes_nothing() {
        let mut device = crate::device::tests::sample_device();
        let miid = crate::device::DMACC_PROTECTION_MIID;
        let place = target(&device, &format!("{}/{miid}/1/AccessRights", DelegationAccessControl::MOID));
        let before = device.tree.instance(DelegationAccessControl::MOID, miid).cloned();
        assert_eq!(store_at(&mut device, &place, false, b"15"), Err(StatusCode::FORBIDDEN));
        assert_eq!(device.tree.instance(DelegationAccessControl::MOID, miid).cloned(), before);
        // Pointing the entry at another instance of the DMAcc MO needs Delegate there too: refused.
        let place = target(&device, &format!("{}/{miid}/1/MIID", DelegationAccessControl::MOID));
        assert_eq!(store_at(&mut device, &place, false, b"other"), Err(StatusCode::FORBIDDEN));
        assert_eq!(device.tree.instance(DelegationAccessControl::MOID, miid).cloned(), before);
    }

    #[test]
    fn a_creator_may_delegate_rights_on_its_instance() {
        let mut device = crate::device::tests::sample_device();
        let mine = json!({"MOID": "urn:oma:mo:example:1.0", "MIID": "mine", "MOData": {"A": 1}});
        create_instance(&mut device, true, &bytes(mine)).unwrap();
        let share = json!({"MOID": DelegationAccessControl::MOID, "MIID": "share", "MOData": {
            "MOID": "urn:oma:mo:example:1.0", "1": {"MIID": "mine", "MAID": "serverid:other", "AccessRights": 1}}});
        let status = create_instance(&mut device, true, &bytes(share)).unwrap();
        assert_eq!(status.location(), Some("urn:oma:mo:oma-dm-dmdac:1.0/share/"));
        // The MO is now governed: dms1 keeps full rights as creator, another server only reads.
        assert_eq!(check_command(&device, "DELETE", "urn:oma:mo:example:1.0", "mine"), Ok(()));
        device.account.server_id = "other".into();
        assert_eq!(check_command(&device, "GET", "urn:oma:mo:example:1.0", "mine"), Ok(()));
        assert_eq!(check_command(&device, "DELETE", "urn:oma:mo:example:1.0", "mine"), Err(StatusCode::FORBIDDEN));
    }

    #[test]
    fn the_device_full_limit_is_506() {
        let limits = omadm_proto::tree::TreeLimits { max_instances: 5, ..Default::default() };
        let mut device = crate::device::tests::sample_device();
        let mut small = omadm_proto::tree::ManagementTree::with_limits(limits);
        for instance in device.tree.instances() {
            small.insert_instance(instance.clone()).unwrap();
        }
        device.tree = small;
        let document = json!({"MOID": "urn:oma:mo:example:1.0", "MOData": {"A": 1}});
        assert!(create_instance(&mut device, true, &bytes(document.clone())).is_ok());
        assert_eq!(create_instance(&mut device, true, &bytes(document)), Err(StatusCode::DEVICE_FULL));
    }
}
