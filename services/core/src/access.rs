//! Access control (11.3): whether a device would refuse a command from this server, judged by the DMDAC rights it showed us. Pure.
//!
//! ```text
//! mirror DMDAC  {"MOID": "urn:oma:mo:oma-fumo:1.0", "1": {"MIID": "fw", "MAID": "serverid:dms1", "AccessRights": 1}}
//! GET  urn:oma:mo:oma-fumo:1.0/fw/State                 allowed  (Read)
//! EXEC urn:oma:mo:oma-fumo:1.0/fw/Update                refused  "... grants serverid:dms1 Read ..., EXEC needs Execute"
//! HGET https://.../acl urn:oma:mo:oma-dm-dmdac:1.0/f/1  refused  delegation needs Delegate on fumo/fw
//! ```
//!
//! How the mirror is read (decisions where 11.3 leaves room):
//! - No DMDAC instance in the mirror: a client without access control grants
//!   every server everything (11.3), and we know of no restriction, so
//!   nothing is refused.
//! - A command on an MO that no DMDAC instance governs is not refused: the
//!   client shows a server the DMDAC of the MOs it may delegate, so the rights
//!   on other MOs are not visible to us and the device decides.
//! - A command on a governed MO needs the right of 11.3 (Read, Write,
//!   Execute) on the addressed instance, the union over every entry for
//!   `serverid:<our id>` or `*`. When the instance cannot be told (x-name,
//!   wildcard, several instances), one permitted instance suffices.
//! - HGET or DELETE aimed at the DMDAC MO is delegation and needs Delegate on
//!   the instance the addressed entry governs (any instance of the governed
//!   MO for a new entry). A DMDAC instance the mirror does not show is one
//!   the device would not let us change: it shows every MO we may delegate.
//! - Creator rights are not modelled: the device lists them in DMDAC too.
//! - Unreadable DMDAC documents are skipped: the device remains the judge.

use omadm_proto::command::Command;
use omadm_proto::mo::{AccessRights, DelegationAccessControl, Operation, permits};
use omadm_proto::tree::DmmoDocument;
use omadm_proto::uri::{ClientUri, InstanceSelector, NodeSelector};
use serde_json::Value;

use crate::model::MirrorRecord;

/// Why the device would refuse a command. The API answers 403 with this as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    #[error(
        "the device's DMDAC grants serverid:{server_id} {granted} on {moid} instance {miid:?}, and {command} needs {needed}"
    )]
    MissingRight {
        command: &'static str,
        server_id: String,
        moid: String,
        miid: String,
        needed: AccessRights,
        granted: AccessRights,
    },
    #[error(
        "the device's DMDAC grants serverid:{server_id} {needed} on no instance of {moid} that {command} addresses"
    )]
    NoInstancePermitted { command: &'static str, server_id: String, moid: String, needed: AccessRights },
    #[error(
        "{command} on {target} changes access rights, and the device's DMDAC shows serverid:{server_id} no Delegate right for it"
    )]
    NoDelegateRight { command: &'static str, server_id: String, target: String },
}

impl AccessRefusal {
    /// 403 Forbidden, at the API as in Appendix C.
    pub fn http_status(&self) -> u16 {
        403
    }
}

/// The DMDAC rights a device showed us, read once from its mirror and checked against any number of commands.
#[derive(Debug, Clone)]
pub struct AccessControl<'m> {
    mirror: &'m MirrorRecord,
    /// (DMDAC MIID, instance), in mirror order.
    instances: Vec<(String, DelegationAccessControl)>,
}

/// The stored documents of the mirror (a JSON list, or one document).
fn mirror_documents(mirror: &MirrorRecord) -> &[Value] {
    match &mirror.tree {
        Value::Array(documents) => documents.as_slice(),
        document @ Value::Object(_) => std::slice::from_ref(document),
        _ => &[],
    }
}

/// The mirror's documents of `moid`, parsed; unreadable ones skipped.
fn documents_of<'a>(mirror: &'a MirrorRecord, moid: &'a str) -> impl Iterator<Item = DmmoDocument> + 'a {
    mirror_documents(mirror)
        .iter()
        .filter(move |document| document.get("MOID").and_then(Value::as_str) == Some(moid))
        .filter_map(|document| DmmoDocument::from_json(document).ok())
}

impl<'m> AccessControl<'m> {
    /// Reads the DMDAC instances of the mirror (only those documents are parsed).
    pub fn from_mirror(mirror: &'m MirrorRecord) -> Self {
        let instances = documents_of(mirror, DelegationAccessControl::MOID)
            .filter_map(|document| {
                let instance = document.to_instance(&Default::default()).ok()?;
                let access = DelegationAccessControl::from_mo_data(&instance.root().to_json()).ok()?;
                Some((instance.miid().to_owned(), access))
            })
            .collect();
        AccessControl { mirror, instances }
    }

    /// True when the mirror shows any DMDAC instance, i.e. the device has access control.
    pub fn is_known(&self) -> bool {
        !self.instances.is_empty()
    }

    /// Ok when the device would let `server_id` run `command`, as far as its DMDAC shows.
    pub fn check(&self, server_id: &str, command: &Command) -> Result<(), AccessRefusal> {
        if !self.is_known() {
            return Ok(());
        }
        let targets: Vec<&ClientUri> = match command {
            Command::Get(get) => vec![get.client_uri()],
            Command::Hput(hput) | Command::Hpost(hput) => hput.client_uris().iter().collect(),
            Command::Delete(delete) => vec![delete.client_uri()],
            Command::Exec(exec) => vec![exec.client_uri()],
            // Without a ClientURI the client picks where to store: no instance of ours to judge.
            Command::Hget(hget) => hget.client_uri().into_iter().collect(),
            Command::Show(_) | Command::Cont(_) | Command::End | Command::Default(_) => Vec::new(),
        };
        for target in targets {
            let Ok(Some(operation)) = Operation::for_command(command.name(), &target.moid) else { continue };
            match operation {
                Operation::Delegate => self.check_delegation(server_id, command.name(), target)?,
                _ => self.check_instance_right(server_id, command.name(), target, operation)?,
            }
        }
        Ok(())
    }

    fn granted(&self, server_id: &str, moid: &str, miid: &str) -> AccessRights {
        let mut rights = AccessRights::NONE;
        for (_, access) in self.instances.iter().filter(|(_, access)| access.moid == moid) {
            rights |= access.rights_of(server_id, miid);
        }
        rights
    }

    fn governed(&self) -> Vec<&DelegationAccessControl> {
        self.instances.iter().map(|(_, access)| access).collect()
    }

    fn check_instance_right(
        &self,
        server_id: &str,
        command: &'static str,
        target: &ClientUri,
        operation: Operation,
    ) -> Result<(), AccessRefusal> {
        let moid = target.moid.as_str();
        let governing: Vec<DelegationAccessControl> =
            self.instances.iter().filter(|(_, access)| access.moid == moid).map(|(_, access)| access.clone()).collect();
        if governing.is_empty() {
            return Ok(());
        }
        let needed = operation.required_right();
        if let Some(miid) = self.addressed_miid(target) {
            if permits(&governing, server_id, moid, &miid, operation) {
                return Ok(());
            }
            let granted = self.granted(server_id, moid, &miid);
            return Err(AccessRefusal::MissingRight {
                command,
                server_id: server_id.to_owned(),
                moid: moid.to_owned(),
                miid,
                needed,
                granted,
            });
        }
        let any_permitted = governing
            .iter()
            .flat_map(|access| access.entries.values())
            .any(|entry| permits(&governing, server_id, moid, &entry.miid, operation));
        if any_permitted {
            return Ok(());
        }
        Err(AccessRefusal::NoInstancePermitted {
            command,
            server_id: server_id.to_owned(),
            moid: moid.to_owned(),
            needed,
        })
    }

    /// HGET or DELETE on a DMDAC node: Delegate on the instance the entry governs.
    fn check_delegation(
        &self,
        server_id: &str,
        command: &'static str,
        target: &ClientUri,
    ) -> Result<(), AccessRefusal> {
        let refusal =
            || AccessRefusal::NoDelegateRight { command, server_id: server_id.to_owned(), target: target.to_string() };
        let candidates: Vec<&DelegationAccessControl> = match &target.instance {
            InstanceSelector::Miid(miid) => {
                self.instances.iter().filter(|(known, _)| known == miid).map(|(_, access)| access).collect()
            }
            InstanceSelector::Sole => match self.instances.as_slice() {
                [(_, only)] => vec![only],
                _ => Vec::new(),
            },
            InstanceSelector::XName(_) | InstanceSelector::Wildcard => self.governed(),
        };
        let all: Vec<DelegationAccessControl> = self.instances.iter().map(|(_, access)| access.clone()).collect();
        let entry_name = match target.path.first() {
            Some(NodeSelector::Name(name)) => Some(name.as_str()),
            _ => None,
        };
        let permitted = candidates.iter().any(|access| {
            match entry_name.and_then(|name| access.entries.get(name)) {
                Some(entry) => permits(&all, server_id, &access.moid, &entry.miid, Operation::Delegate),
                // A new entry (or the whole instance): Delegate on some instance of the governed MO.
                None => all
                    .iter()
                    .filter(|other| other.moid == access.moid)
                    .flat_map(|other| other.entries.values())
                    .any(|entry| permits(&all, server_id, &access.moid, &entry.miid, Operation::Delegate)),
            }
        });
        if permitted { Ok(()) } else { Err(refusal()) }
    }

    /// The one instance `target` addresses: its MIID, or the MO's sole instance in the mirror.
    fn addressed_miid(&self, target: &ClientUri) -> Option<String> {
        match &target.instance {
            InstanceSelector::Miid(miid) => Some(miid.clone()),
            InstanceSelector::Sole => {
                let mut miids =
                    documents_of(self.mirror, &target.moid).map(|document| document.effective_miid().to_owned());
                match (miids.next(), miids.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
            InstanceSelector::XName(_) | InstanceSelector::Wildcard => None,
        }
    }
}

/// Checks one command against the mirror; see [`AccessControl::check`].
pub fn check_command(mirror: &MirrorRecord, server_id: &str, command: &Command) -> Result<(), AccessRefusal> {
    AccessControl::from_mirror(mirror).check(server_id, command)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DMDAC: &str = "urn:oma:mo:oma-dm-dmdac:1.0";
    const FUMO: &str = "urn:oma:mo:oma-fumo:1.0";

    fn mirror() -> MirrorRecord {
        let tree = json!([
            {"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "", "MOData": {"DevID": "IMEI:1"}},
            {"MOID": FUMO, "MIID": "fw", "MOData": {"State": 10}},
            {"MOID": FUMO, "MIID": "fw2", "MOData": {"State": 10}},
            {"MOID": "urn:oma:mo:oma-scomo:1.0", "MIID": "", "MOData": {"Inventory": {}}},
            {"MOID": DMDAC, "MIID": "fumoacl", "MOData": {
                "MOID": FUMO,
                "1": {"MIID": "fw", "MAID": "serverid:dms1", "AccessRights": 1},
                "2": {"MIID": "fw", "MAID": "*", "AccessRights": 4},
                "3": {"MIID": "fw2", "MAID": "serverid:dms1", "AccessRights": 11}}},
            {"MOID": DMDAC, "MIID": "scomoacl", "MOData": {
                "MOID": "urn:oma:mo:oma-scomo:1.0",
                "1": {"MIID": "", "MAID": "serverid:dms1", "AccessRights": 3}}},
            {"MOID": DMDAC, "MIID": "broken", "MOData": {"1": {"MIID": "x"}}}
        ]);
        MirrorRecord { tree, validators: Default::default(), updated_at: 0 }
    }

    fn check(server: &str, wire: serde_json::Value) -> Result<(), AccessRefusal> {
        let command = Command::from_json(&wire).unwrap();
        check_command(&mirror(), server, &command)
    }

    #[test]
    fn without_any_dmdac_every_command_is_allowed() {
        let mirror = MirrorRecord { tree: json!([{"MOID": FUMO, "MIID": "fw", "MOData": {}}]), ..Default::default() };
        let control = AccessControl::from_mirror(&mirror);
        assert!(!control.is_known());
        let delete = Command::from_json(&json!(["DELETE", "urn:oma:mo:oma-fumo:1.0/fw/State"])).unwrap();
        assert_eq!(control.check("anyone", &delete), Ok(()));
        assert!(!AccessControl::from_mirror(&MirrorRecord::default()).is_known());
    }

    #[test]
    fn rights_on_a_governed_instance_are_the_union_for_our_server_id_and_star() {
        assert!(AccessControl::from_mirror(&mirror()).is_known());
        assert_eq!(check("dms1", json!(["GET", "urn:oma:mo:oma-fumo:1.0/fw/State"])), Ok(()));
        assert_eq!(check("dms1", json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])), Ok(()), "Execute from *");
        assert_eq!(check("dms2", json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])), Ok(()));
        let refusal = check("dms1", json!(["DELETE", "urn:oma:mo:oma-fumo:1.0/fw/State"])).unwrap_err();
        assert_eq!(
            refusal,
            AccessRefusal::MissingRight {
                command: "DELETE",
                server_id: "dms1".to_owned(),
                moid: FUMO.to_owned(),
                miid: "fw".to_owned(),
                needed: AccessRights::WRITE,
                granted: AccessRights::READ | AccessRights::EXECUTE,
            }
        );
        assert_eq!(
            refusal.to_string(),
            "the device's DMDAC grants serverid:dms1 Read|Execute on urn:oma:mo:oma-fumo:1.0 instance \"fw\", and DELETE needs Write"
        );
        assert_eq!(refusal.http_status(), 403);
        assert!(check("dms2", json!(["GET", "urn:oma:mo:oma-fumo:1.0/fw/State"])).is_err());
        assert!(check("dms1", json!(["GET", "urn:oma:mo:oma-fumo:1.0/fw3/State"])).is_err(), "no entry, no right");
        assert_eq!(
            check("dms1", json!(["HGET", "https://dm.example.com/repo/x", "urn:oma:mo:oma-fumo:1.0/fw2/PkgName"])),
            Ok(())
        );
    }

    #[test]
    fn sole_instances_resolve_through_the_mirror_and_unresolvable_ones_need_one_permitted_instance() {
        assert_eq!(check("dms1", json!(["DELETE", "urn:oma:mo:oma-scomo:1.0//Inventory"])), Ok(()));
        assert!(check("dms2", json!(["GET", "urn:oma:mo:oma-scomo:1.0//Inventory"])).is_err());
        assert_eq!(check("dms1", json!(["GET", "urn:oma:mo:oma-fumo:1.0/*/State"])), Ok(()));
        assert_eq!(
            check("dms1", json!(["GET", "urn:oma:mo:oma-fumo:1.0//State"])),
            Ok(()),
            "two instances: any permitted"
        );
        let refusal = check("dms2", json!(["GET", "urn:oma:mo:oma-fumo:1.0/*/State"])).unwrap_err();
        assert!(matches!(refusal, AccessRefusal::NoInstancePermitted { needed, .. } if needed == AccessRights::READ));
    }

    #[test]
    fn ungoverned_mos_and_commands_without_targets_are_not_refused() {
        assert_eq!(check("dms2", json!(["DELETE", "urn:oma:mo:oma-dm-devinfo:1.2//Ext/X"])), Ok(()));
        assert_eq!(check("dms2", json!(["HGET", "https://dm.example.com/repo/new_mo"])), Ok(()));
        assert_eq!(check("dms2", json!(["SHOW", "https://dm.example.com/ui/1"])), Ok(()));
        assert_eq!(check("dms2", json!(["DEFAULT", "https://dm.example.com/d", FUMO])), Ok(()));
        assert_eq!(check("dms2", json!(["HPUT", "https://dm.example.com/repo/up"])), Ok(()));
    }

    #[test]
    fn every_client_uri_of_an_hput_is_checked() {
        let wire =
            json!(["HPUT", "https://dm.example.com/up", "urn:oma:mo:oma-fumo:1.0/fw2/", "urn:oma:mo:oma-fumo:1.0/fw/"]);
        assert_eq!(check("dms1", wire.clone()), Ok(()));
        assert!(check("dms3", wire).is_err());
    }

    #[test]
    fn delegation_by_hget_to_dmdac_needs_delegate_on_the_governed_instance() {
        let hget = |target: &str| json!(["HGET", "https://dm.example.com/repo/acl", target]);
        // Entry 1 governs fumo/fw, where dms1 has Read only.
        let refusal = check("dms1", hget("urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/1/AccessRights")).unwrap_err();
        assert_eq!(
            refusal,
            AccessRefusal::NoDelegateRight {
                command: "HGET",
                server_id: "dms1".to_owned(),
                target: "urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/1/AccessRights".to_owned(),
            }
        );
        // Entry 3 governs fumo/fw2, where dms1 has Delegate (11 = Read|Write|Delegate).
        assert_eq!(check("dms1", hget("urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/3")), Ok(()));
        // A new entry: Delegate on some FUMO instance suffices; the device checks the data.
        assert_eq!(check("dms1", hget("urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/9")), Ok(()));
        assert!(check("dms2", hget("urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/9")).is_err());
        // SCOMO: dms1 has Read|Write but no Delegate.
        assert!(check("dms1", hget("urn:oma:mo:oma-dm-dmdac:1.0/scomoacl/1")).is_err());
        // A DMDAC instance the device does not show us is one we may not change.
        assert!(check("dms1", hget("urn:oma:mo:oma-dm-dmdac:1.0/otheracl/1")).is_err());
        assert_eq!(check("dms1", json!(["DELETE", "urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/3"])), Ok(()));
        assert!(check("dms1", json!(["DELETE", "urn:oma:mo:oma-dm-dmdac:1.0/fumoacl/1"])).is_err());
    }
}
