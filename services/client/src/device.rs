//! A managed device: its management tree, identity, credentials, server account and the hooks a device maker plugs in.
//!
//! The tree holds DevInfo, one DMAcc per server, DMDAC and SessionInfo
//! instances from the start; the rest arrives by HGET, DEFAULT or bootstrap.
//! Executable nodes (EXEC) and the browser (SHOW) are trait objects the
//! device maker provides; everything else is data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use omadm_proto::command::Moid;
use omadm_proto::mo::{
    AccessControlEntry, AccessRights, BearerType, DelegationAccessControl, DevInfo, DmAccount, ManagementAuthority,
    Permission, RoamingStatus, SessionInfo,
};
use omadm_proto::package::{AlertItem, SupportedObject};
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{DmmoDocument, DmmoError, ManagementTree};
use omadm_proto::uri::ServerUriParams;
use serde_json::{Value, json};

/// Why a device could not be built or changed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("management tree: {0}")]
    Tree(#[from] DmmoError),
    #[error("invalid server id {0:?}: it names the DMAcc instance, so it must be unreserved characters")]
    InvalidServerId(String),
}

/// The network the device is on, for ServerURI parameters (6.2); `None` is sent as `-1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkIdentity {
    /// Home Mobile Country Code.
    pub mcc: Option<String>,
    /// Home Mobile Network Code.
    pub mnc: Option<String>,
    /// Current Mobile Country Code.
    pub cmcc: Option<String>,
    /// Current Mobile Network Code.
    pub cmnc: Option<String>,
    /// Service Provider Name.
    pub sp_name: Option<String>,
}

/// What the device authenticates with: its DevID as the user name and a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub device_id: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("device_id", &self.device_id).field("password", &"<hidden>").finish()
    }
}

/// The DM server the device talks to: its ServerID (the DMAcc instance) and the URL Package#1 is posted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAccount {
    pub server_id: String,
    /// E.g. `http://dm.example.com/dm`.
    pub package1_url: String,
}

/// What an executable node did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutcome {
    /// The status of the EXEC command (200, 202, 500, an application code...).
    pub status: StatusCode,
    /// A Generic Alert to report, e.g. a FUMO result; posted to the EXEC's ServerURI when it has one,
    /// otherwise sent in the Package#3.
    pub alert: Option<AlertItem>,
}

/// A node a server may EXEC, provided by the device maker for one ClientURI.
#[async_trait::async_trait]
pub trait ExecutableNode: Send + Sync {
    /// Runs the operation; `client_uri` is the canonical address of the node. It may take time (a download,
    /// an update); the session waits for it, so long work belongs behind a 202 and a later alert.
    async fn execute(&self, client_uri: &str) -> ExecOutcome;
}

/// Opens a URL for the user (SHOW, 5.4.7). Called on a blocking thread and never waited on.
pub trait BrowserHook: Send + Sync {
    fn open(&self, url: &str);
}

/// A device: the tree, who it is, whom it talks to, and its plug-ins.
pub struct Device {
    /// The management tree; every command reads and writes it.
    pub tree: ManagementTree,
    pub credentials: Credentials,
    pub network: NetworkIdentity,
    pub account: ServerAccount,
    /// DEFAULT commands received: MOID -> the substituted URL to fetch the default instance from (10.1).
    pub defaults: BTreeMap<String, String>,
    /// When false every server may do everything (no 11.3 checks).
    pub access_control: bool,
    executables: BTreeMap<String, Arc<dyn ExecutableNode>>,
    browser: Option<Arc<dyn BrowserHook>>,
    /// (server id, MOID, MIID) of instances a server created: creators get full rights (11.3).
    created: BTreeSet<(String, String, String)>,
    next_miid: u64,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("device_id", &self.credentials.device_id)
            .field("account", &self.account)
            .field("instances", &self.tree.instance_count())
            .finish()
    }
}

/// The MIID of the DMDAC instance a new device uses to protect its DMAcc.
pub const DMACC_PROTECTION_MIID: &str = "dmacc";

impl Device {
    /// A device with DevInfo, SessionInfo (wireline), the DMAcc of `account` and a DMDAC instance that lets that
    /// server read, but not change, its own account. `devinfo.device_id` is the DevID and the user name.
    pub fn new(devinfo: DevInfo, password: &str, account: ServerAccount) -> Result<Device, DeviceError> {
        let credentials = Credentials { device_id: devinfo.device_id.clone(), password: password.to_owned() };
        let mut device = Device {
            tree: ManagementTree::new(),
            credentials,
            network: NetworkIdentity::default(),
            account: account.clone(),
            defaults: BTreeMap::new(),
            access_control: true,
            executables: BTreeMap::new(),
            browser: None,
            created: BTreeSet::new(),
            next_miid: 1,
        };
        device.store(DevInfo::MOID, "", devinfo.to_mo_data())?;
        let session_info = SessionInfo { bearer_type: BearerType::Wireline, roaming: RoamingStatus::Unknown };
        device.store(SessionInfo::MOID, "", session_info.to_mo_data())?;
        device.install_account(&DmAccount {
            server_id: account.server_id.clone(),
            name: account.server_id.clone(),
            permissions: BTreeMap::from([("1".to_owned(), Permission::new("*"))]),
            notification_auth: None,
            push: None,
        })?;
        let protection = DelegationAccessControl {
            moid: DmAccount::MOID.to_owned(),
            entries: BTreeMap::from([(
                "1".to_owned(),
                AccessControlEntry {
                    miid: account.server_id.clone(),
                    authority: ManagementAuthority::Server(account.server_id.clone()),
                    rights: AccessRights::READ,
                },
            )]),
        };
        device.store(DelegationAccessControl::MOID, DMACC_PROTECTION_MIID, protection.to_mo_data())?;
        Ok(device)
    }

    /// Adds or replaces a DMAcc instance, named by its ServerID.
    pub fn install_account(&mut self, account: &DmAccount) -> Result<(), DeviceError> {
        if account.server_id.is_empty()
            || !account.server_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(DeviceError::InvalidServerId(account.server_id.clone()));
        }
        self.store(DmAccount::MOID, &account.server_id, account.to_mo_data())
    }

    /// Stores a whole instance from its MOData (replacing one with the same MIID).
    pub fn store(&mut self, moid: &str, miid: &str, mo_data: Value) -> Result<(), DeviceError> {
        let document = DmmoDocument::from_json(&json!({"MOID": moid, "MIID": miid, "MOData": mo_data}))?;
        self.tree.store_document(&document)?;
        Ok(())
    }

    /// The values this device substitutes into ServerURIs.
    pub fn server_uri_params(&self) -> ServerUriParams {
        ServerUriParams {
            dev_id: Some(self.credentials.device_id.clone()),
            mnc: self.network.mnc.clone(),
            mcc: self.network.mcc.clone(),
            cmnc: self.network.cmnc.clone(),
            cmcc: self.network.cmcc.clone(),
            sp_name: self.network.sp_name.clone(),
        }
    }

    /// Registers the executable behind the node `client_uri` (canonical form `moid/miid/path`).
    pub fn register_executable(&mut self, client_uri: impl Into<String>, node: Arc<dyn ExecutableNode>) {
        self.executables.insert(client_uri.into(), node);
    }

    pub(crate) fn executable(&self, client_uri: &str) -> Option<Arc<dyn ExecutableNode>> {
        self.executables.get(client_uri).cloned()
    }

    /// Sets the browser SHOW opens URLs with; without one SHOW answers 406.
    pub fn set_browser(&mut self, browser: Arc<dyn BrowserHook>) {
        self.browser = Some(browser);
    }

    pub(crate) fn browser(&self) -> Option<Arc<dyn BrowserHook>> {
        self.browser.clone()
    }

    /// Records that the current server created this instance (full rights from then on).
    pub(crate) fn record_creator(&mut self, moid: &str, miid: &str) {
        self.created.insert((self.account.server_id.clone(), moid.to_owned(), miid.to_owned()));
    }

    /// True when the current server created this instance.
    pub fn created_by_current_server(&self, moid: &str, miid: &str) -> bool {
        self.created.contains(&(self.account.server_id.clone(), moid.to_owned(), miid.to_owned()))
    }

    /// A MIID not yet used by any instance of `moid`, for HGET without a ClientURI.
    pub(crate) fn fresh_miid(&mut self, moid: &str) -> String {
        loop {
            let candidate = format!("miid{}", self.next_miid);
            self.next_miid += 1;
            if self.tree.instance(moid, &candidate).is_none() {
                return candidate;
            }
        }
    }

    /// The `MOS` of a Package#1: every MOID with its instances.
    pub fn supported_objects(&self) -> Vec<SupportedObject> {
        let mut by_moid: BTreeMap<&str, SupportedObject> = BTreeMap::new();
        for instance in self.tree.instances() {
            let Ok(moid) = Moid::parse(instance.moid()) else { continue };
            let entry = by_moid.entry(instance.moid()).or_insert_with(|| SupportedObject {
                ddf: instance.ddf().map(str::to_owned),
                moid,
                miids: Vec::new(),
            });
            entry.miids.push(instance.miid().to_owned());
        }
        by_moid.into_values().collect()
    }

    /// The accounts Package#0 is checked against: every readable DMAcc instance with its AuthNoti secret.
    pub fn notification_accounts(&self) -> Vec<crate::notification::ServerAccount> {
        self.tree
            .instances_of(DmAccount::MOID)
            .filter_map(|instance| {
                let document = DmmoDocument::from_instance(instance);
                DmAccount::from_mo_data(&Value::Object(document.mo_data)).ok()
            })
            .map(|account| {
                let secret = account.notification_auth.map(|auth| auth.secret);
                crate::notification::ServerAccount::new(account.server_id, secret)
            })
            .collect()
    }

    /// The DevInfo of the tree, when it holds a readable one.
    pub fn devinfo(&self) -> Option<DevInfo> {
        let instance = self.tree.instance(DevInfo::MOID, "")?;
        let document = DmmoDocument::from_instance(instance);
        DevInfo::from_mo_data(&Value::Object(document.mo_data)).ok()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_devinfo(device_id: &str) -> DevInfo {
        omadm_testkit::fixtures::devinfo(device_id)
    }

    pub(crate) fn sample_device() -> Device {
        let account = ServerAccount { server_id: "dms1".into(), package1_url: "http://127.0.0.1:9/dm".into() };
        Device::new(sample_devinfo("IMEI:4930051"), "pw", account).unwrap()
    }

    #[test]
    fn a_new_device_has_the_standard_instances() {
        let device = sample_device();
        assert!(device.tree.instance(DevInfo::MOID, "").is_some());
        assert!(device.tree.instance(SessionInfo::MOID, "").is_some());
        assert!(device.tree.instance(DmAccount::MOID, "dms1").is_some());
        assert!(device.tree.instance(DelegationAccessControl::MOID, DMACC_PROTECTION_MIID).is_some());
        assert_eq!(device.devinfo().unwrap().device_id, "IMEI:4930051");
        let moids: Vec<String> = device.supported_objects().iter().map(|o| o.moid.as_str().to_owned()).collect();
        assert_eq!(moids.len(), 4);
        assert!(format!("{:?}", device.credentials).contains("<hidden>"));
    }

    #[test]
    fn server_uri_params_come_from_identity_and_network() {
        let mut device = sample_device();
        device.network.mcc = Some("240".into());
        let params = device.server_uri_params();
        assert_eq!(params.dev_id.as_deref(), Some("IMEI:4930051"));
        assert_eq!(params.mcc.as_deref(), Some("240"));
        assert_eq!(params.mnc, None);
    }

    #[test]
    fn fresh_miids_skip_used_ones() {
        let mut device = sample_device();
        device.store("urn:oma:mo:example:1.0", "miid1", json!({"A": 1})).unwrap();
        assert_eq!(device.fresh_miid("urn:oma:mo:example:1.0"), "miid2");
    }

    #[test]
    fn notification_accounts_carry_the_authnoti_secret() {
        let mut device = sample_device();
        let mut account = DmAccount {
            server_id: "dms2".into(),
            name: "second".into(),
            permissions: BTreeMap::from([("1".to_owned(), Permission::new("*"))]),
            notification_auth: None,
            push: None,
        };
        account.notification_auth = Some(omadm_proto::mo::NotificationAuth {
            auth_type: omadm_proto::mo::NotificationAuthType::Sha256Digest,
            secret: "00ff".into(),
        });
        device.install_account(&account).unwrap();
        let accounts = device.notification_accounts();
        let ids: Vec<(&str, Option<&str>)> =
            accounts.iter().map(|a| (a.server_id.as_str(), a.auth_secret.as_deref())).collect();
        assert_eq!(ids, vec![("dms1", None), ("dms2", Some("00ff"))]);
    }

    #[test]
    fn a_bad_server_id_is_refused() {
        let account = ServerAccount { server_id: "a b".into(), package1_url: "http://x/dm".into() };
        assert!(matches!(Device::new(sample_devinfo("d"), "pw", account), Err(DeviceError::InvalidServerId(_))));
    }
}
