//! Registration with the DM server for push notifications (Appendix D.2.4): after the push service (GCM/FCM)
//! gives the device a RegID, the device POSTs it to the RegURL of its DMAcc Push/GCM; after the push service
//! unregisters it, to the UnRegURL.
//!
//! ```text
//! POST {RegURL}   Content-Type: application/x-www-form-urlencoded;charset=UTF-8   (HTTP auth as for Package#1)
//!                 RegId=cZ3f-9Qk%3AAPA91bH&{RegParams}
//!   -> 2xx: the server sends Package#0 to this RegID through the push service ({"SMS": "<base64>"}, D.2.5)
//! ```
//!
//! The account is the device's current server account (`device.account.server_id`); its DMAcc must carry
//! Push/GCM, which a client-initiated bootstrap installs when the server offers push.

use omadm_proto::mo::{DmAccount, GcmPush};
use omadm_proto::tree::DmmoDocument;
use reqwest::Method;
use serde_json::Value;

use crate::device::Device;
use crate::transport::{Transport, TransportError};

/// The content type of a registration (D.2.4).
pub const REGISTRATION_CONTENT_TYPE: &str = "application/x-www-form-urlencoded;charset=UTF-8";

/// Why a registration or unregistration did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PushRegistrationError {
    #[error("the DMAcc of server {0:?} has no Push/GCM node: the server offers no push registration")]
    NotOffered(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server answered the push {action} with HTTP {status}")]
    Refused { action: &'static str, status: u16 },
}

/// The Push/GCM node of the device's current server account, when it has one.
pub fn gcm_push(device: &Device) -> Option<GcmPush> {
    let instance = device.tree.instance(DmAccount::MOID, &device.account.server_id)?;
    let document = DmmoDocument::from_instance(instance);
    let account = DmAccount::from_mo_data(&Value::Object(document.mo_data)).ok()?;
    account.push?.gcm
}

/// POSTs `registration_id` to the account's RegURL, with the device's DM credentials.
pub async fn register(
    device: &Device,
    transport: &Transport,
    registration_id: &str,
) -> Result<(), PushRegistrationError> {
    let gcm = offered(device)?;
    post(transport, &gcm.registration_url, gcm.registration_body(registration_id), "registration").await
}

/// POSTs `registration_id` to the account's UnRegURL, with the device's DM credentials.
pub async fn unregister(
    device: &Device,
    transport: &Transport,
    registration_id: &str,
) -> Result<(), PushRegistrationError> {
    let gcm = offered(device)?;
    post(transport, &gcm.unregistration_url, gcm.registration_body(registration_id), "unregistration").await
}

fn offered(device: &Device) -> Result<GcmPush, PushRegistrationError> {
    gcm_push(device).ok_or_else(|| PushRegistrationError::NotOffered(device.account.server_id.clone()))
}

async fn post(
    transport: &Transport,
    url: &str,
    body: String,
    action: &'static str,
) -> Result<(), PushRegistrationError> {
    let reply = transport
        .send_authenticated(Method::POST, url, Some(REGISTRATION_CONTENT_TYPE), None, body.into_bytes())
        .await?;
    if !(200..300).contains(&reply.status) {
        return Err(PushRegistrationError::Refused { action, status: reply.status });
    }
    tracing::info!(device_id = %transport.credentials().device_id, url, action, "push {action} accepted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_without_push_gcm_is_told_so() {
        let device = crate::device::tests::sample_device();
        assert_eq!(gcm_push(&device), None);
        assert!(matches!(offered(&device), Err(PushRegistrationError::NotOffered(server)) if server == "dms1"));
    }
}
