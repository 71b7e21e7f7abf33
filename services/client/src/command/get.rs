//! GET (5.4.6): reads nodes of the tree as dmmo+json, honouring `lv` (levels) and `cv` (304 when the server's
//! cache validator is still current).

use omadm_proto::command::Get;
use omadm_proto::mo::Operation;
use omadm_proto::package::media::DMMO_JSON;
use omadm_proto::status::StatusCode;
use omadm_proto::tree::ReadOutcome;
use serde_json::Value;

use super::{CommandContext, CommandOutcome, ensure_default_instance};
use crate::access::check_operation;

/// 200 with one dmmo+json document (an array of them for a wildcard ClientURI), 304, 403 or 404/400.
pub async fn execute(context: &mut CommandContext<'_>, get: &Get) -> CommandOutcome {
    let uri = get.client_uri();
    ensure_default_instance(context, &uri.moid).await;
    let device = &*context.device;
    let nodes = match device.tree.read(uri) {
        Ok(ReadOutcome::NotModified) => return CommandOutcome::status(StatusCode::NOT_MODIFIED),
        Ok(ReadOutcome::Nodes(nodes)) => nodes,
        Err(error) => return CommandOutcome::status(error.status_code()),
    };
    for node in &nodes {
        if let Err(code) = check_operation(device, node.moid(), node.miid(), Operation::Read) {
            return CommandOutcome::status(code);
        }
    }
    let documents: Vec<Value> = nodes.iter().map(|node| node.to_dmmo(uri.query.level).to_json()).collect();
    let body = match (uri.has_wildcard(), documents.as_slice()) {
        (false, [single]) => single.clone(),
        _ => Value::Array(documents),
    };
    let Ok(bytes) = serde_json::to_vec(&body) else { return CommandOutcome::status(StatusCode::INTERNAL_ERROR) };
    let mut outcome = CommandOutcome::status(StatusCode::OK);
    outcome.part = Some((DMMO_JSON.to_owned(), bytes));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use omadm_proto::uri::ClientUri;

    async fn run(device: &mut crate::device::Device, uri: &str) -> CommandOutcome {
        let transport = offline_transport();
        let mut context = CommandContext { device, transport: &transport };
        execute(&mut context, &Get::new(ClientUri::parse(uri).unwrap())).await
    }

    #[tokio::test]
    async fn get_reads_a_leaf_an_instance_and_a_wildcard() {
        let mut device = crate::device::tests::sample_device();
        let leaf = run(&mut device, "urn:oma:mo:oma-dm-devinfo:1.2//FwV").await;
        assert_eq!(leaf.code(), StatusCode::OK);
        let (content_type, body) = leaf.part.unwrap();
        assert_eq!(content_type, DMMO_JSON);
        let document: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(document["MOData"]["FwV"], "1.0.0");
        let all = run(&mut device, "urn:oma:mo:oma-dm-dmacc:2.0/*/ServerID").await;
        let documents: Value = serde_json::from_slice(&all.part.unwrap().1).unwrap();
        assert_eq!(documents.as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn get_resolves_x_names_by_node_values() {
        let mut device = crate::device::tests::sample_device();
        let moid = "urn:oma:mo:example-sensors:1.0";
        device.store(moid, "left", serde_json::json!({"ID": "GPS", "Setting": "A1"})).unwrap();
        device.store(moid, "right", serde_json::json!({"ID": "Temperature", "Setting": "B2"})).unwrap();
        let outcome = run(&mut device, &format!("{moid}/(x)/Setting?nv=(x)/ID:Temperature")).await;
        let document: Value = serde_json::from_slice(&outcome.part.unwrap().1).unwrap();
        assert_eq!(document["MOData"]["Setting"], "B2");
        assert_eq!(document["MIID"], "right");
        let none = run(&mut device, &format!("{moid}/(x)/Setting?nv=(x)/ID:Pressure")).await;
        assert_eq!(none.code(), StatusCode::NOT_FOUND);
        // An empty mo-inst with two instances is ambiguous: 400.
        assert_eq!(run(&mut device, &format!("{moid}//ID")).await.code(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn get_with_a_current_validator_is_304_and_unknown_nodes_404() {
        let mut device = crate::device::tests::sample_device();
        let validator =
            device.tree.instance("urn:oma:mo:oma-dm-devinfo:1.2", "").unwrap().cache_validator().as_str().to_owned();
        let not_modified = run(&mut device, &format!("urn:oma:mo:oma-dm-devinfo:1.2//?cv={validator}")).await;
        assert_eq!(not_modified.code(), StatusCode::NOT_MODIFIED);
        assert!(not_modified.part.is_none());
        let stale = run(&mut device, "urn:oma:mo:oma-dm-devinfo:1.2//?cv=stale").await;
        assert_eq!(stale.code(), StatusCode::OK);
        assert_eq!(run(&mut device, "urn:oma:mo:oma-dm-devinfo:1.2//Nope").await.code(), StatusCode::NOT_FOUND);
        assert_eq!(run(&mut device, "urn:oma:mo:unknown:1.0//").await.code(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn get_with_lv_cuts_levels_and_without_read_right_is_403() {
        let mut device = crate::device::tests::sample_device();
        let cut = run(&mut device, "urn:oma:mo:oma-dm-dmacc:2.0/dms1/?lv=1").await;
        let document: Value = serde_json::from_slice(&cut.part.unwrap().1).unwrap();
        assert_eq!(document["MOData"]["Permissions"], serde_json::json!({}), "{document}");
        // Take the read right away from dms1 on its account.
        device
            .store(
                "urn:oma:mo:oma-dm-dmdac:1.0",
                crate::device::DMACC_PROTECTION_MIID,
                serde_json::json!({"MOID": "urn:oma:mo:oma-dm-dmacc:2.0",
                    "1": {"MIID": "dms1", "MAID": "serverid:dms1", "AccessRights": 4}}),
            )
            .unwrap();
        assert_eq!(run(&mut device, "urn:oma:mo:oma-dm-dmacc:2.0/dms1/").await.code(), StatusCode::FORBIDDEN);
    }
}
