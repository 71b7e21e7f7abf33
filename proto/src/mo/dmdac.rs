//! DMDAC MO 1.0 (spec 11.3): per-instance access rights of DM servers and local applications, and the check that uses them.
//!
//! The spec makes `<x>/MOID` both a `chr` leaf (the MOID the rights are for) and the
//! parent of the entries `<x>/MOID/<x>`. A JSON object member cannot be a string and
//! an object at once, so MOData carries the MOID leaf as a string and the entries
//! one level up, as siblings of `MOID` under the instance root:
//!
//! ```text
//! {"MOID": "urn:oma:mo:oma-fumo:1.0",
//!  "1": {"MIID": "fw", "MAID": "serverid:dms1", "AccessRights": 15},
//!  "2": {"MIID": "fw", "MAID": "*", "AccessRights": 1}}
//! ```
//!
//! A ClientURI written from the spec's path `<x>/MOID/<x>/AccessRights` therefore
//! drops the `MOID/` segment: `urn:oma:mo:oma-dm-dmdac:1.0/(x)/(y)/AccessRights`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use serde_json::{Map, Value};

use super::{Interior, MoDataWriter, MoError, impl_management_object};

const MOID: &str = "MOID";
const MIID: &str = "MIID";
const MAID: &str = "MAID";
const ACCESS_RIGHTS: &str = "AccessRights";

/// One DMDAC instance: the access rights to the instances of one MOID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationAccessControl {
    /// `<x>/MOID`: the MOID whose instances the entries govern.
    pub moid: String,
    /// `<x>/MOID/<x>`, by node name (carried next to `MOID`, see the module docs).
    /// A node name `MOID` cannot be carried and is not written.
    pub entries: BTreeMap<String, AccessControlEntry>,
}

/// `<x>/MOID/<x>`: the rights one management authority has on one MO instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessControlEntry {
    /// `MIID`: the MO instance.
    pub miid: String,
    /// `MAID`: who holds the rights.
    pub authority: ManagementAuthority,
    /// `AccessRights`: which rights.
    pub rights: AccessRights,
}

/// `MAID`: a DM server, a local application, or everyone.
///
/// ```text
/// serverid:dms1.example.com   appid:com.example.updater   *
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ManagementAuthority {
    /// `serverid:<ServerID>`: the DM server with that DMAcc `ServerID`.
    Server(String),
    /// `appid:<id>`: a local application.
    Application(String),
    /// `*`: every DM server and every local application.
    Everyone,
}

impl ManagementAuthority {
    /// Parses a MAID value; the prefix is matched without regard to case and the
    /// identifier after it must not be empty.
    pub fn parse(maid: &str) -> Option<Self> {
        if maid == "*" {
            return Some(ManagementAuthority::Everyone);
        }
        let (prefix, identifier) = maid.split_once(':')?;
        if identifier.is_empty() {
            return None;
        }
        if prefix.eq_ignore_ascii_case("serverid") {
            Some(ManagementAuthority::Server(identifier.to_owned()))
        } else if prefix.eq_ignore_ascii_case("appid") {
            Some(ManagementAuthority::Application(identifier.to_owned()))
        } else {
            None
        }
    }

    /// True when this authority is, or includes, the DM server `server_id`.
    pub fn includes_server(&self, server_id: &str) -> bool {
        match self {
            ManagementAuthority::Server(id) => id == server_id,
            ManagementAuthority::Application(_) => false,
            ManagementAuthority::Everyone => true,
        }
    }
}

impl fmt::Display for ManagementAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManagementAuthority::Server(id) => write!(f, "serverid:{id}"),
            ManagementAuthority::Application(id) => write!(f, "appid:{id}"),
            ManagementAuthority::Everyone => f.write_str("*"),
        }
    }
}

/// The `AccessRights` bit set (11.3): Read=1, Write=2, Execute=4, Delegate=8.
///
/// ```text
/// 15 = Read|Write|Execute|Delegate      3 = Read|Write      0 = none
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AccessRights(u8);

impl AccessRights {
    /// No rights.
    pub const NONE: AccessRights = AccessRights(0);
    /// 1: GET, HPUT, HPOST.
    pub const READ: AccessRights = AccessRights(1);
    /// 2: HGET, DELETE.
    pub const WRITE: AccessRights = AccessRights(2);
    /// 4: EXEC.
    pub const EXECUTE: AccessRights = AccessRights(4);
    /// 8: HGET that changes the DMDAC entries of the instance.
    pub const DELEGATE: AccessRights = AccessRights(8);
    /// All four.
    pub const ALL: AccessRights = AccessRights(15);

    /// The node value.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The rights in `bits`; bits above Delegate are dropped.
    pub const fn from_bits_truncate(bits: u8) -> Self {
        AccessRights(bits & AccessRights::ALL.0)
    }

    /// True when every right in `other` is in `self`.
    pub const fn contains(self, other: AccessRights) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when there is no right at all.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for AccessRights {
    type Output = AccessRights;
    fn bitor(self, other: AccessRights) -> AccessRights {
        AccessRights(self.0 | other.0)
    }
}

impl BitOrAssign for AccessRights {
    fn bitor_assign(&mut self, other: AccessRights) {
        self.0 |= other.0;
    }
}

impl fmt::Display for AccessRights {
    /// `Read|Write`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names = [
            (AccessRights::READ, "Read"),
            (AccessRights::WRITE, "Write"),
            (AccessRights::EXECUTE, "Execute"),
            (AccessRights::DELEGATE, "Delegate"),
        ];
        let mut separator = "";
        for (right, name) in names {
            if self.contains(right) {
                write!(f, "{separator}{name}")?;
                separator = "|";
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AccessRights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccessRights({} = {self})", self.0)
    }
}

/// The logical operations of 11.3, each needing one access right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GET, HPUT, HPOST: read the instance.
    Read,
    /// HGET, DELETE: change the instance.
    Write,
    /// EXEC.
    Execute,
    /// Change the DMDAC entries of the instance.
    Delegate,
}

impl Operation {
    /// The right this operation needs.
    pub fn required_right(self) -> AccessRights {
        match self {
            Operation::Read => AccessRights::READ,
            Operation::Write => AccessRights::WRITE,
            Operation::Execute => AccessRights::EXECUTE,
            Operation::Delegate => AccessRights::DELEGATE,
        }
    }

    /// The operation a DM command performs on an instance of `target_moid`, or
    /// `None` for commands that touch no MO instance (SHOW, CONT, END, DEFAULT).
    /// The name is matched without regard to case.
    ///
    /// HGET and DELETE aimed at the DMDAC MO itself change someone's access rights,
    /// so they are Delegate, checked against the instance the DMDAC entry governs.
    ///
    /// ```text
    /// ("GET", "urn:oma:mo:oma-dm-devinfo:1.2")   -> Some(Read)
    /// ("HGET", "urn:oma:mo:oma-dm-dmdac:1.0")    -> Some(Delegate)
    /// ("CONT", _)                                -> None
    /// ("PATCH", _)                               -> Err(UnknownCommand)   status 501
    /// ```
    pub fn for_command(command_name: &str, target_moid: &str) -> Result<Option<Operation>, MoError> {
        let targets_access_control = target_moid == DelegationAccessControl::MOID;
        let operation = match command_name.to_ascii_uppercase().as_str() {
            "GET" | "HPUT" | "HPOST" => Some(Operation::Read),
            "HGET" | "DELETE" if targets_access_control => Some(Operation::Delegate),
            "HGET" | "DELETE" => Some(Operation::Write),
            "EXEC" => Some(Operation::Execute),
            "SHOW" | "CONT" | "END" | "DEFAULT" => None,
            _ => return Err(MoError::UnknownCommand(command_name.to_owned())),
        };
        Ok(operation)
    }
}

/// True when the DMDAC instances grant the DM server `server_id` the right for
/// `operation` on the instance (`moid`, `miid`): the union of the rights of every
/// entry for that instance whose MAID is `serverid:<server_id>` or `*`.
///
/// Creator rights and clients without access control (every server may do
/// everything) are the caller's business.
pub fn permits(
    instances: &[DelegationAccessControl],
    server_id: &str,
    moid: &str,
    miid: &str,
    operation: Operation,
) -> bool {
    let mut rights = AccessRights::NONE;
    for instance in instances.iter().filter(|instance| instance.moid == moid) {
        rights |= instance.rights_of(server_id, miid);
    }
    rights.contains(operation.required_right())
}

impl DelegationAccessControl {
    /// `urn:oma:mo:oma-dm-dmdac:1.0`
    pub const MOID: &'static str = "urn:oma:mo:oma-dm-dmdac:1.0";

    /// The rights this instance gives the DM server `server_id` on the instance `miid`.
    pub fn rights_of(&self, server_id: &str, miid: &str) -> AccessRights {
        let mut rights = AccessRights::NONE;
        for entry in self.entries.values() {
            if entry.miid == miid && entry.authority.includes_server(server_id) {
                rights |= entry.rights;
            }
        }
        rights
    }

    /// The MOData object: `MOID` and the entries as its siblings (see the module docs).
    pub fn to_mo_data(&self) -> Value {
        let mut node = Map::new();
        for (name, entry) in self.entries.iter().filter(|(name, _)| name.as_str() != MOID) {
            let entry_node = MoDataWriter::default()
                .chr(MIID, &entry.miid)
                .chr(MAID, &entry.authority.to_string())
                .int(ACCESS_RIGHTS, i64::from(entry.rights.bits()))
                .finish();
            node.insert(name.clone(), entry_node);
        }
        node.insert(MOID.to_owned(), Value::from(self.moid.as_str()));
        Value::Object(node)
    }

    /// Reads one instance. Children other than `MOID` that are interior nodes are
    /// entries; unknown leaves are ignored. Rights bits above Delegate are dropped.
    pub fn from_mo_data(mo_data: &Value) -> Result<Self, MoError> {
        let root = Interior::instance_root(mo_data, "DMDAC", &[MOID])?;
        let moid = root.required_chr(MOID)?;
        let mut entries = BTreeMap::new();
        for (name, value) in root.children().filter(|(name, value)| name.as_str() != MOID && value.is_object()) {
            let entry = root.as_interior(name, value)?;
            let maid = entry.required_chr(MAID)?;
            let authority = ManagementAuthority::parse(&maid).ok_or_else(|| {
                entry.invalid(MAID, maid.clone(), "expected \"serverid:<id>\", \"appid:<id>\" or \"*\"")
            })?;
            let rights_value = entry.required_int(ACCESS_RIGHTS)?;
            if rights_value < 0 {
                return Err(entry.invalid(ACCESS_RIGHTS, rights_value.to_string(), "access rights cannot be negative"));
            }
            // Lenient: rights a later version may define are dropped, the known ones kept.
            let known_bits = rights_value & i64::from(AccessRights::ALL.bits());
            let rights = AccessRights::from_bits_truncate(u8::try_from(known_bits).unwrap_or_default());
            let miid = entry.required_chr(MIID)?;
            entries.insert(name.clone(), AccessControlEntry { miid, authority, rights });
        }
        Ok(DelegationAccessControl { moid, entries })
    }
}

impl_management_object!(DelegationAccessControl);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rights_are_a_bit_set_with_readable_names() {
        let read_write = AccessRights::READ | AccessRights::WRITE;
        assert_eq!(read_write.bits(), 3);
        assert!(read_write.contains(AccessRights::READ));
        assert!(!read_write.contains(AccessRights::EXECUTE));
        assert!(AccessRights::ALL.contains(read_write));
        assert_eq!(read_write.to_string(), "Read|Write");
        assert_eq!(AccessRights::ALL.to_string(), "Read|Write|Execute|Delegate");
        assert_eq!(AccessRights::NONE.to_string(), "none");
        assert_eq!(AccessRights::from_bits_truncate(0x1C), AccessRights::EXECUTE | AccessRights::DELEGATE);
        assert_eq!(format!("{:?}", AccessRights::EXECUTE), "AccessRights(4 = Execute)");
    }

    #[test]
    fn commands_map_to_the_operations_of_the_table() {
        let devinfo = "urn:oma:mo:oma-dm-devinfo:1.2";
        let cases = [
            ("GET", Some(Operation::Read)),
            ("hput", Some(Operation::Read)),
            ("HPOST", Some(Operation::Read)),
            ("HGET", Some(Operation::Write)),
            ("DELETE", Some(Operation::Write)),
            ("EXEC", Some(Operation::Execute)),
            ("SHOW", None),
            ("CONT", None),
            ("END", None),
            ("DEFAULT", None),
        ];
        for (command, expected) in cases {
            assert_eq!(Operation::for_command(command, devinfo), Ok(expected), "{command}");
        }
        let dmdac = DelegationAccessControl::MOID;
        assert_eq!(Operation::for_command("HGET", dmdac), Ok(Some(Operation::Delegate)));
        assert_eq!(Operation::for_command("DELETE", dmdac), Ok(Some(Operation::Delegate)));
        assert_eq!(Operation::for_command("GET", dmdac), Ok(Some(Operation::Read)));
        let unknown = Operation::for_command("REPLACE", devinfo).unwrap_err();
        assert_eq!(unknown, MoError::UnknownCommand("REPLACE".into()));
        assert_eq!(unknown.status_code(), 501);
        assert_eq!(Operation::Delegate.required_right(), AccessRights::DELEGATE);
    }

    #[test]
    fn maid_forms() {
        assert_eq!(ManagementAuthority::parse("serverid:dms1"), Some(ManagementAuthority::Server("dms1".into())));
        assert_eq!(ManagementAuthority::parse("ServerID:dms1"), Some(ManagementAuthority::Server("dms1".into())));
        assert_eq!(
            ManagementAuthority::parse("appid:com.example:x"),
            Some(ManagementAuthority::Application("com.example:x".into()))
        );
        assert_eq!(ManagementAuthority::parse("*"), Some(ManagementAuthority::Everyone));
        assert_eq!(ManagementAuthority::parse("serverid:"), None);
        assert_eq!(ManagementAuthority::parse("dms1"), None);
        assert_eq!(ManagementAuthority::parse("user:bob"), None);
        assert_eq!(ManagementAuthority::Application("a".into()).to_string(), "appid:a");
        assert!(!ManagementAuthority::Application("dms1".into()).includes_server("dms1"));
    }

    #[test]
    fn bad_entries_are_typed_errors() {
        let bad_maid = json!({"MOID": "urn:x:1", "1": {"MIID": "a", "MAID": "dms1", "AccessRights": 1}});
        assert_eq!(
            DelegationAccessControl::from_mo_data(&bad_maid),
            Err(MoError::InvalidValue {
                path: "DMDAC/1/MAID".into(),
                value: "dms1".into(),
                reason: "expected \"serverid:<id>\", \"appid:<id>\" or \"*\""
            })
        );
        let negative = json!({"MOID": "urn:x:1", "1": {"MIID": "a", "MAID": "*", "AccessRights": -1}});
        assert!(matches!(
            DelegationAccessControl::from_mo_data(&negative),
            Err(MoError::InvalidValue { path, .. }) if path == "DMDAC/1/AccessRights"
        ));
        let no_moid = json!({"1": {"MIID": "a", "MAID": "*", "AccessRights": 1}});
        assert_eq!(
            DelegationAccessControl::from_mo_data(&no_moid),
            Err(MoError::MissingNode { path: "DMDAC/MOID".into() })
        );
    }
}
