//! DMAcc MO 2.0 (spec 11.2, D.2.3): one DM server account: identity, provisioned MOIDs, notification secret, push.
//!
//! ```text
//! {"ServerID": "dms1.example.com", "Name": "Example DM",
//!  "Permissions": {"devinfo": {"MOID": "urn:oma:mo:oma-dm-devinfo:1.2"}, "all": {"MOID": "*"}},
//!  "AuthNoti": {"AuthType": 0, "AuthSecret": "s3cr3t"},
//!  "Push": {"GCM": {"SenderID": "4815162342", "RegURL": "https://dm.example.com/gcm/reg",
//!                   "UnRegURL": "https://dm.example.com/gcm/unreg", "RegParams": "tenant=7"}}}
//! ```
//!
//! `Permissions` is sent only in the bootstrap and never exposed by the client (11.2),
//! so it is optional when reading and [`DmAccount::check_bootstrap`] requires it.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::{Interior, MoDataWriter, MoError, impl_management_object};

const SERVER_ID: &str = "ServerID";
const NAME: &str = "Name";
const PERMISSIONS: &str = "Permissions";
const MOID: &str = "MOID";
const AUTH_NOTI: &str = "AuthNoti";
const AUTH_TYPE: &str = "AuthType";
const AUTH_SECRET: &str = "AuthSecret";
const PUSH: &str = "Push";
const GCM: &str = "GCM";
const SENDER_ID: &str = "SenderID";
const REG_URL: &str = "RegURL";
const UNREG_URL: &str = "UnRegURL";
const REG_PARAMS: &str = "RegParams";
const EXT: &str = "Ext";

const CHILDREN: [&str; 5] = [SERVER_ID, NAME, PERMISSIONS, AUTH_NOTI, PUSH];

/// What `application/x-www-form-urlencoded` keeps of a RegId: RFC 3986 unreserved.
const FORM_VALUE_ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// One DMAcc instance: the account of one DM server on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmAccount {
    /// `ServerID`: the server identifier, unique within the client.
    pub server_id: String,
    /// `Name`: user-displayable server name.
    pub name: String,
    /// `Permissions/<x>`, by node name: the MOIDs this server may manage.
    /// Empty when read from a client, which never exposes them.
    pub permissions: BTreeMap<String, Permission>,
    /// `AuthNoti`: how Package#0 from this server is authenticated.
    pub notification_auth: Option<NotificationAuth>,
    /// `Push`: push mechanisms for delivering Package#0.
    pub push: Option<Push>,
}

/// `Permissions/<x>`: one MOID the server may manage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Permission {
    /// `MOID`: an MOID, or `*` for every MOID the client supports.
    pub moid: String,
}

impl Permission {
    /// A permission for `moid` (`*` for all).
    pub fn new(moid: impl Into<String>) -> Self {
        Permission { moid: moid.into() }
    }

    /// True when this permission covers `moid`.
    pub fn covers(&self, moid: &str) -> bool {
        self.moid == "*" || self.moid == moid
    }
}

/// `AuthNoti`: the SHA256-DIGEST secret for Package#0. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationAuth {
    /// `AuthType`.
    pub auth_type: NotificationAuthType,
    /// `AuthSecret`: hashed before the package for SHA256-DIGEST.
    pub secret: String,
}

impl fmt::Debug for NotificationAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationAuth")
            .field("auth_type", &self.auth_type)
            .field("secret", &format_args!("<{} bytes hidden>", self.secret.len()))
            .finish()
    }
}

/// `AuthNoti/AuthType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotificationAuthType {
    /// `0`: SHA256 digest (RFC 6234), the SHA256-DIGEST option of Package#0.
    Sha256Digest,
    /// A value this version of the spec does not define, kept so the account still
    /// reads; a notification cannot be authenticated with it.
    Unknown(i64),
}

impl NotificationAuthType {
    /// The `int` node value.
    pub fn value(self) -> i64 {
        match self {
            NotificationAuthType::Sha256Digest => 0,
            NotificationAuthType::Unknown(value) => value,
        }
    }

    /// The type for an `int` node value.
    pub fn from_value(value: i64) -> Self {
        match value {
            0 => NotificationAuthType::Sha256Digest,
            other => NotificationAuthType::Unknown(other),
        }
    }
}

/// `Push`: placeholder for push mechanisms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    /// `Push/GCM` (D.2.3).
    pub gcm: Option<GcmPush>,
    /// `Push/Ext`: vendor extensions, as sent.
    pub extensions: Option<Map<String, Value>>,
    /// `Push/...`: other standardized mechanisms this crate does not model, as sent.
    pub other_mechanisms: Map<String, Value>,
}

/// `Push/GCM` (D.2.3): where the client registers its GCM RegId with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcmPush {
    /// `SenderID`: the GCM sender ID of the service.
    pub sender_id: String,
    /// `RegURL`: where the client POSTs its RegId after a GCM Register event.
    pub registration_url: String,
    /// `UnRegURL`: where the client POSTs after a GCM UnRegister event.
    pub unregistration_url: String,
    /// `RegParams`: extra parameters, already encoded as a URI query component.
    /// The node is required but may be empty; an empty value reads as `None`
    /// and `None` is written as `""`.
    pub registration_parameters: Option<String>,
    /// `Push/GCM/Ext`: vendor extensions, as sent.
    pub extensions: Option<Map<String, Value>>,
}

impl GcmPush {
    /// The `application/x-www-form-urlencoded;charset=UTF-8` body the client POSTs to
    /// `RegURL` or `UnRegURL` (D.2.4): the key `RegId`, then `RegParams` if any.
    ///
    /// ```text
    /// RegId=APA91bH%3Ax7&tenant=7
    /// ```
    pub fn registration_body(&self, registration_id: &str) -> String {
        let mut body = format!("RegId={}", utf8_percent_encode(registration_id, FORM_VALUE_ENCODE));
        let extra = self.registration_parameters.as_deref().unwrap_or_default().trim_start_matches(['?', '&']);
        if !extra.is_empty() {
            body.push('&');
            body.push_str(extra);
        }
        body
    }

    fn to_mo_data(&self) -> Value {
        MoDataWriter::default()
            .chr(SENDER_ID, &self.sender_id)
            .chr(REG_URL, &self.registration_url)
            .chr(UNREG_URL, &self.unregistration_url)
            .chr(REG_PARAMS, self.registration_parameters.as_deref().unwrap_or_default())
            .optional_subtree(EXT, self.extensions.as_ref())
            .finish()
    }

    fn from_interior(node: &Interior<'_>) -> Result<Self, MoError> {
        Ok(GcmPush {
            sender_id: node.required_chr(SENDER_ID)?,
            registration_url: node.required_chr(REG_URL)?,
            unregistration_url: node.required_chr(UNREG_URL)?,
            // Lenient: "MAY contain" in D.2.3, so a missing node is read as empty.
            registration_parameters: node.chr(REG_PARAMS)?.filter(|parameters| !parameters.is_empty()),
            extensions: node.subtree(EXT)?,
        })
    }
}

impl Push {
    fn to_mo_data(&self) -> Value {
        let mut node = self.other_mechanisms.clone();
        if let Some(gcm) = &self.gcm {
            node.insert(GCM.to_owned(), gcm.to_mo_data());
        }
        if let Some(extensions) = &self.extensions {
            node.insert(EXT.to_owned(), Value::Object(extensions.clone()));
        }
        Value::Object(node)
    }

    fn from_interior(node: &Interior<'_>) -> Result<Self, MoError> {
        let gcm = node.interior(GCM)?.map(|gcm| GcmPush::from_interior(&gcm)).transpose()?;
        let other_mechanisms = node
            .children()
            .filter(|(name, _)| name.as_str() != GCM && name.as_str() != EXT)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(Push { gcm, extensions: node.subtree(EXT)?, other_mechanisms })
    }
}

impl DmAccount {
    /// `urn:oma:mo:oma-dm-dmacc:2.0`
    pub const MOID: &'static str = "urn:oma:mo:oma-dm-dmacc:2.0";

    /// True when the account was provisioned with `moid` (or `*`): the client then
    /// lists that MOID in MOS and accepts delegation for it (11.3).
    pub fn permits_moid(&self, moid: &str) -> bool {
        self.permissions.values().any(|permission| permission.covers(moid))
    }

    /// Checks what a bootstrap (8, 11.2) must carry beyond what reading requires:
    /// at least one `Permissions/<x>`, none with an empty MOID.
    pub fn check_bootstrap(&self) -> Result<(), MoError> {
        if self.permissions.is_empty() {
            return Err(MoError::MissingNode { path: format!("DMAcc/{PERMISSIONS}/<x>") });
        }
        if let Some((name, _)) = self.permissions.iter().find(|(_, permission)| permission.moid.is_empty()) {
            return Err(MoError::InvalidValue {
                path: format!("DMAcc/{PERMISSIONS}/{name}/{MOID}"),
                value: String::new(),
                reason: "a permission needs an MOID or \"*\"",
            });
        }
        Ok(())
    }

    /// The MOData object of this account; `Permissions` only when there are any.
    pub fn to_mo_data(&self) -> Value {
        let permissions = (!self.permissions.is_empty()).then(|| {
            let groups = self
                .permissions
                .iter()
                .map(|(name, permission)| (name.clone(), MoDataWriter::default().chr(MOID, &permission.moid).finish()))
                .collect();
            Value::Object(groups)
        });
        let notification_auth = self.notification_auth.as_ref().map(|auth| {
            MoDataWriter::default().int(AUTH_TYPE, auth.auth_type.value()).chr(AUTH_SECRET, &auth.secret).finish()
        });
        MoDataWriter::default()
            .chr(SERVER_ID, &self.server_id)
            .chr(NAME, &self.name)
            .optional_interior(PERMISSIONS, permissions)
            .optional_interior(AUTH_NOTI, notification_auth)
            .optional_interior(PUSH, self.push.as_ref().map(Push::to_mo_data))
            .finish()
    }

    /// Reads one account from its MOData.
    pub fn from_mo_data(mo_data: &Value) -> Result<Self, MoError> {
        let root = Interior::instance_root(mo_data, "DMAcc", &CHILDREN)?;
        let server_id = root.required_chr(SERVER_ID)?;
        let name = root.required_chr(NAME)?;
        let mut permissions = BTreeMap::new();
        if let Some(groups) = root.interior(PERMISSIONS)? {
            for (name, group) in groups.children() {
                let group = groups.as_interior(name, group)?;
                permissions.insert(name.clone(), Permission { moid: group.required_chr(MOID)? });
            }
        }
        let notification_auth = match root.interior(AUTH_NOTI)? {
            Some(auth) => Some(NotificationAuth {
                auth_type: NotificationAuthType::from_value(auth.required_int(AUTH_TYPE)?),
                secret: auth.required_chr(AUTH_SECRET)?,
            }),
            None => None,
        };
        let push = root.interior(PUSH)?.map(|push| Push::from_interior(&push)).transpose()?;
        Ok(DmAccount { server_id, name, permissions, notification_auth, push })
    }
}

impl_management_object!(DmAccount);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn registration_body_encodes_the_reg_id_and_appends_parameters() {
        let gcm = GcmPush {
            sender_id: "1".into(),
            registration_url: "https://dm.example.com/reg".into(),
            unregistration_url: "https://dm.example.com/unreg".into(),
            registration_parameters: Some("?tenant=7&x=y".into()),
            extensions: None,
        };
        assert_eq!(gcm.registration_body("APA91b:H x/7"), "RegId=APA91b%3AH%20x%2F7&tenant=7&x=y");
        let bare = GcmPush { registration_parameters: None, ..gcm };
        assert_eq!(bare.registration_body("abc"), "RegId=abc");
    }

    #[test]
    fn secret_is_not_printed_by_debug() {
        let auth = NotificationAuth { auth_type: NotificationAuthType::Sha256Digest, secret: "hunter2".into() };
        let printed = format!("{auth:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("<7 bytes hidden>"), "{printed}");
    }

    #[test]
    fn auth_type_values() {
        assert_eq!(NotificationAuthType::from_value(0), NotificationAuthType::Sha256Digest);
        assert_eq!(NotificationAuthType::from_value(3), NotificationAuthType::Unknown(3));
        assert_eq!(NotificationAuthType::Unknown(3).value(), 3);
        assert_eq!(NotificationAuthType::Sha256Digest.value(), 0);
    }

    #[test]
    fn permission_group_without_moid_is_an_error() {
        let mo_data = json!({"ServerID": "a", "Name": "A", "Permissions": {"1": {}}});
        assert_eq!(
            DmAccount::from_mo_data(&mo_data),
            Err(MoError::MissingNode { path: "DMAcc/Permissions/1/MOID".into() })
        );
    }
}
