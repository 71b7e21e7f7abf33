//! `GET /bootstrap?DevID=..&MCC=..&MNC=..`: client-initiated bootstrap (8.2, docs/protocol-decisions.md "Other gaps").
//!
//! Served only to an authenticated device (same HTTP auth as Package#1), as
//! `application/dmmo+json`:
//!
//! ```text
//! {"MO": [{"MOID": "urn:oma:mo:oma-dm-dmacc:2.0", "MIID": "dms1", "MOData": {"ServerID": "dms1",
//!          "Name": "omadm", "Permissions": {"1": {"MOID": "*"}},
//!          "AuthNoti": {"AuthType": 0, "AuthSecret": "9f2c..."}}}],
//!  "CMD": [["DEFAULT", "https://dm.example.com/repo/defaults/scomo", "urn:oma:mo:oma-scomo:1.0"]]}
//! ```
//!
//! `MO` lists dmmo+json documents (7.5) and `CMD` DEFAULT commands in the
//! Package#2 array form, so a client reads both with the parsers it has. The
//! AuthSecret signs this device's Package#0; a device without one gets a
//! fresh random secret, stored before the answer leaves.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock;
use omadm_core::store::WriteBatch;
use omadm_proto::command::Command;
use omadm_proto::mo::{DmAccount, ManagementObject as _, NotificationAuth, NotificationAuthType, Permission, Push};
use omadm_proto::package::media::DMMO_JSON;
use rand::Rng as _;
use serde::Deserialize;
use tracing::Instrument as _;

use super::EdgeShared;
use super::authenticate::authenticate;
use super::body::{check_device_id, optional_device_id_header};
use crate::error::store_failure;
use crate::{BootstrapConfig, HttpError};

#[derive(Debug, Deserialize)]
struct BootstrapQuery {
    #[serde(rename = "DevID")]
    device_id: Option<String>,
    #[serde(rename = "MCC")]
    mcc: Option<String>,
    #[serde(rename = "MNC")]
    mnc: Option<String>,
}

pub(crate) async fn bootstrap(shared: web::Data<EdgeShared>, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let query = web::Query::<BootstrapQuery>::from_query(request.query_string())
        .map_err(|error| HttpError::bad_request(format!("invalid bootstrap query: {error}")))?
        .into_inner();
    let device_id = query.device_id.ok_or_else(|| HttpError::bad_request("the DevID query parameter is required"))?;
    check_device_id(&device_id)?;
    let span = tracing::info_span!(
        "bootstrap",
        device_id = %device_id,
        mcc = query.mcc.as_deref().unwrap_or("-1"),
        mnc = query.mnc.as_deref().unwrap_or("-1"),
    );
    async move {
        if optional_device_id_header(&request)?.is_some_and(|header| header != device_id) {
            return Err(HttpError::bad_request("OMADM-DevID and DevID name different devices"));
        }
        authenticate(&shared, &request, Some(&device_id)).await?;
        let secret = notification_secret(&shared, &device_id).await?;
        let config = &shared.state.config;
        let document = bootstrap_document(&config.bootstrap, &config.public_url, secret).map_err(|reason| {
            tracing::error!(%reason, "bootstrap is misconfigured");
            HttpError::new(StatusCode::SERVICE_UNAVAILABLE, format!("bootstrap is not available: {reason}"))
        })?;
        tracing::info!("bootstrap served");
        Ok(HttpResponse::Ok().content_type(DMMO_JSON).json(document))
    }
    .instrument(span)
    .await
}

/// The device's AuthNoti secret, generated and stored when it has none.
async fn notification_secret(shared: &EdgeShared, device_id: &str) -> Result<String, HttpError> {
    let (_device_guard, mut device) = super::locked_device(shared, device_id).await?;
    let store = &shared.state.store;
    if let Some(secret) = &device.auth_secret {
        return Ok(secret.clone());
    }
    let secret = hex::encode(rand::rng().random::<[u8; 32]>());
    device.auth_secret = Some(secret.clone());
    device.updated_at = clock::now_millis();
    store
        .commit(WriteBatch { devices: vec![device], ..WriteBatch::default() })
        .await
        .map_err(store_failure("commit"))?;
    Ok(secret)
}

/// The bootstrap document for a device whose AuthNoti secret is `secret`, from a server at `public_url` (its
/// Push/GCM URLs are the routes mounted there); the reason when the configuration cannot make a valid one.
pub(crate) fn bootstrap_document(
    config: &BootstrapConfig,
    public_url: &str,
    secret: String,
) -> Result<serde_json::Value, String> {
    let permissions: BTreeMap<String, Permission> = config
        .permitted_moids
        .iter()
        .enumerate()
        .map(|(index, moid)| ((index + 1).to_string(), Permission::new(moid.clone())))
        .collect();
    let account = DmAccount {
        server_id: config.server_id.clone(),
        name: config.server_name.clone(),
        permissions,
        notification_auth: Some(NotificationAuth { auth_type: NotificationAuthType::Sha256Digest, secret }),
        push: config.gcm.as_ref().map(|offer| Push {
            gcm: Some(offer.gcm_push(public_url)),
            extensions: None,
            other_mechanisms: serde_json::Map::new(),
        }),
    };
    account.check_bootstrap().map_err(|error| error.to_string())?;
    let defaults = config
        .defaults
        .iter()
        .map(|(server_uri, moid)| {
            let raw = serde_json::json!(["DEFAULT", server_uri, moid]);
            Command::from_json(&raw).map_err(|error| format!("DEFAULT {server_uri} {moid}: {error}")).and_then(
                |command| match command {
                    Command::Default(_) => Ok(command),
                    _ => Err("not a DEFAULT command".to_owned()),
                },
            )
        })
        .collect::<Result<Vec<Command>, String>>()?;
    Ok(serde_json::json!({
        "MO": [account.to_dmmo_document(&config.server_id)],
        "CMD": defaults,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GcmOffer;
    use omadm_proto::mo::{GcmPush, ManagementObject};

    const PUBLIC_URL: &str = "https://dm.example.com";

    fn config() -> BootstrapConfig {
        BootstrapConfig {
            server_id: "dms1".into(),
            server_name: "omadm".into(),
            permitted_moids: vec!["*".into(), "urn:oma:mo:oma-dm-devinfo:1.2".into()],
            defaults: vec![("https://dm.example.com/repo/scomo".into(), "urn:oma:mo:oma-scomo:1.0".into())],
            gcm: None,
        }
    }

    #[test]
    fn document_carries_the_account_and_the_defaults() {
        let document = bootstrap_document(&config(), PUBLIC_URL, "s3cr3t".into()).unwrap();
        let account = DmAccount::from_dmmo_document(&document["MO"][0]).unwrap();
        assert_eq!(document["MO"][0]["MIID"], "dms1");
        assert_eq!(account.server_id, "dms1");
        assert_eq!(account.name, "omadm");
        assert!(account.permits_moid("urn:oma:mo:anything:1.0"));
        assert_eq!(account.permissions.len(), 2);
        assert_eq!(account.notification_auth.unwrap().secret, "s3cr3t");
        assert_eq!(
            document["CMD"],
            serde_json::json!([["DEFAULT", "https://dm.example.com/repo/scomo", "urn:oma:mo:oma-scomo:1.0"]])
        );
    }

    #[test]
    fn push_configuration_is_offered_when_set() {
        assert!(
            bootstrap_document(&config(), PUBLIC_URL, "s".into()).unwrap()["MO"][0]["MOData"].get("Push").is_none()
        );
        let gcm = GcmPush {
            sender_id: "1234567890".into(),
            registration_url: "https://dm.example.com/push/gcm/register".into(),
            unregistration_url: "https://dm.example.com/push/gcm/unregister".into(),
            registration_parameters: Some("fleet=meters".into()),
            extensions: None,
        };
        let offer = GcmOffer { sender_id: "1234567890".into(), registration_parameters: Some("fleet=meters".into()) };
        let with_push = BootstrapConfig { gcm: Some(offer), ..config() };
        let document = bootstrap_document(&with_push, PUBLIC_URL, "s".into()).unwrap();
        let account = DmAccount::from_dmmo_document(&document["MO"][0]).unwrap();
        assert_eq!(account.push.and_then(|push| push.gcm), Some(gcm));
        assert_eq!(document["MO"][0]["MOData"]["Push"]["GCM"]["SenderID"], "1234567890");
    }

    #[test]
    fn misconfiguration_is_reported_not_served() {
        let mut no_permissions = config();
        no_permissions.permitted_moids.clear();
        assert!(bootstrap_document(&no_permissions, PUBLIC_URL, "s".into()).unwrap_err().contains("Permissions"));
        let mut bad_default = config();
        bad_default.defaults = vec![("not a uri".into(), "urn:oma:mo:oma-scomo:1.0".into())];
        assert!(bootstrap_document(&bad_default, PUBLIC_URL, "s".into()).unwrap_err().starts_with("DEFAULT"));
    }
}
