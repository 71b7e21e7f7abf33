//! Bootstrap (8): provisions the DM account of a device, from the factory configuration or by asking the
//! server (client-initiated, 8.2: `GET {server}/bootstrap?DevID=&MCC=&MNC=` with HTTP authentication).
//!
//! Both read the same document, the one the server's /bootstrap answers (docs/device-edge.md):
//! `{"MO": [dmmo+json documents], "CMD": [["DEFAULT", ServerURI, MOID], ...]}`. The DMAcc among the MOs becomes
//! the device's server account; other MOs are stored as given; DEFAULT commands are remembered per MOID.

use omadm_proto::command::Command;
use omadm_proto::mo::{DmAccount, MoError};
use omadm_proto::package::media::{DMMO_JSON, is_media_type};
use omadm_proto::tree::{DmmoDocument, DmmoError};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::device::{Device, DeviceError};
use crate::transport::{Transport, TransportError};

/// Why a bootstrap failed; the device is unchanged unless the error says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("bootstrap document is not JSON: {0}")]
    Json(String),
    #[error("bootstrap document must be an object with \"MO\" (array) and optional \"CMD\" (array)")]
    Shape,
    #[error("bootstrap document has no DMAcc instance")]
    NoAccount,
    #[error("bootstrap MO: {0}")]
    Document(#[from] DmmoError),
    #[error("bootstrap DMAcc: {0}")]
    Account(#[from] MoError),
    #[error("bootstrap command {position}: only DEFAULT is allowed ({reason})")]
    Command { position: usize, reason: String },
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server answered the bootstrap with HTTP {status}")]
    Refused { status: u16 },
    #[error("the server answered the bootstrap with {0:?}, expected application/dmmo+json")]
    MediaType(Option<String>),
}

/// What a bootstrap installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapOutcome {
    /// The ServerID of the account now in use.
    pub server_id: String,
    /// MOIDs that got a DEFAULT.
    pub defaults: Vec<String>,
    /// Other MO instances stored, as `MOID/MIID`.
    pub instances: Vec<String>,
}

/// Installs a bootstrap document: checked whole first, so a bad document changes nothing.
pub fn install(device: &mut Device, document: &[u8]) -> Result<BootstrapOutcome, BootstrapError> {
    let value: Value = serde_json::from_slice(document).map_err(|error| BootstrapError::Json(error.to_string()))?;
    let mos = value.get("MO").and_then(Value::as_array).ok_or(BootstrapError::Shape)?;
    let commands = match value.get("CMD") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(commands)) => commands.clone(),
        Some(_) => return Err(BootstrapError::Shape),
    };
    let mut account = None;
    let mut others = Vec::new();
    for mo in mos {
        let document = DmmoDocument::from_json(mo)?;
        if document.moid == DmAccount::MOID {
            let parsed = DmAccount::from_mo_data(&Value::Object(document.mo_data.clone()))?;
            parsed.check_bootstrap()?;
            account = Some(parsed);
        } else {
            others.push(document);
        }
    }
    let account = account.ok_or(BootstrapError::NoAccount)?;
    let mut defaults = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        let position = index + 1;
        match Command::from_json(command) {
            Ok(Command::Default(default)) => defaults.push(default),
            Ok(other) => return Err(BootstrapError::Command { position, reason: format!("found {}", other.name()) }),
            Err(error) => return Err(BootstrapError::Command { position, reason: error.to_string() }),
        }
    }
    // Everything is readable: now change the device.
    device.install_account(&account)?;
    device.account.server_id = account.server_id.clone();
    let mut instances = Vec::new();
    for document in &others {
        device.tree.store_document(document)?;
        instances.push(format!("{}/{}", document.moid, document.effective_miid()));
    }
    let params = device.server_uri_params();
    let mut default_moids = Vec::new();
    for default in defaults {
        let moid = default.moid().as_str().to_owned();
        device.defaults.insert(moid.clone(), default.server_uri().substitute(&params));
        default_moids.push(moid);
    }
    Ok(BootstrapOutcome { server_id: account.server_id, defaults: default_moids, instances })
}

/// Client-initiated bootstrap (8.2) against `server_base` (e.g. `http://dm.example.com`); on success the device's
/// Package#1 URL becomes `{server_base}/dm`.
pub async fn client_initiated(
    device: &mut Device,
    transport: &Transport,
    server_base: &str,
) -> Result<BootstrapOutcome, BootstrapError> {
    let base = server_base.trim_end_matches('/');
    let mut url = Url::parse(&format!("{base}/bootstrap"))
        .map_err(|error| TransportError::InvalidUrl { url: base.to_owned(), reason: error.to_string() })?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("DevID", &device.credentials.device_id);
        query.append_pair("MCC", device.network.mcc.as_deref().unwrap_or("-1"));
        query.append_pair("MNC", device.network.mnc.as_deref().unwrap_or("-1"));
    }
    let reply = transport.send_authenticated(Method::GET, url.as_str(), None, Some(DMMO_JSON), Vec::new()).await?;
    if reply.status != 200 {
        return Err(BootstrapError::Refused { status: reply.status });
    }
    if !reply.content_type.as_deref().is_some_and(|content_type| is_media_type(content_type, DMMO_JSON)) {
        return Err(BootstrapError::MediaType(reply.content_type));
    }
    let outcome = install(device, &reply.body)?;
    device.account.package1_url = format!("{base}/dm");
    tracing::info!(device_id = %device.credentials.device_id, server_id = outcome.server_id, "bootstrapped");
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(moid_of_default: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "MO": [
                {"MOID": "urn:oma:mo:oma-dm-dmacc:2.0", "MIID": "factory",
                 "MOData": {"ServerID": "factory", "Name": "Factory server", "Permissions": {"1": {"MOID": "*"}},
                            "AuthNoti": {"AuthType": 0, "AuthSecret": "00ff"}}},
                {"MOID": "urn:oma:mo:example:1.0", "MIID": "x", "MOData": {"A": 1}}
            ],
            "CMD": [["DEFAULT", "http://h/repo/defaults/[DevID]", moid_of_default]]
        }))
        .unwrap()
    }

    #[test]
    fn factory_bootstrap_installs_account_mos_and_defaults() {
        let mut device = crate::device::tests::sample_device();
        let outcome = install(&mut device, &document("urn:oma:mo:oma-scomo:1.0")).unwrap();
        assert_eq!(outcome.server_id, "factory");
        assert_eq!(device.account.server_id, "factory");
        assert!(device.tree.instance(DmAccount::MOID, "factory").is_some());
        assert!(device.tree.instance("urn:oma:mo:example:1.0", "x").is_some());
        assert_eq!(device.defaults["urn:oma:mo:oma-scomo:1.0"], "http://h/repo/defaults/IMEI%3A4930051");
    }

    #[test]
    fn a_bad_document_changes_nothing() {
        let mut device = crate::device::tests::sample_device();
        assert!(matches!(install(&mut device, &document("not a moid")), Err(BootstrapError::Command { .. })));
        assert!(device.tree.instance(DmAccount::MOID, "factory").is_none());
        assert!(matches!(install(&mut device, b"[]"), Err(BootstrapError::Shape)));
        assert!(matches!(install(&mut device, br#"{"MO": []}"#), Err(BootstrapError::NoAccount)));
        let with_get = json!({"MO": [], "CMD": [["END"]]});
        assert!(install(&mut device, &serde_json::to_vec(&with_get).unwrap()).is_err());
        assert_eq!(device.account.server_id, "dms1");
    }
}
