//! `POST /push/gcm/register` and `POST /push/gcm/unregister`: the RegURL and UnRegURL of the bootstrap's
//! DMAcc Push/GCM (Appendix D.2.4), where a device tells the server its push-service RegID.
//!
//! ```text
//! POST /push/gcm/register     Content-Type: application/x-www-form-urlencoded;charset=UTF-8
//!                             Authorization: (Basic or Digest, as for Package#1)   OMADM-DevID: IMEI:1
//!                             RegId=cZ3f-9Qk%3AAPA91bH&fleet=meters
//!   -> 204; the device record holds {registration_id, registered_at}; push.registered on the bus
//! POST /push/gcm/unregister   the same form
//!   -> 204; the RegID is cleared (push.unregistered), unless the device holds another one (then nothing changes)
//! ```
//!
//! "The same security as in DM-2 with the same credentials" (D.2.4): the request is authenticated by the very
//! function that authenticates a Package#1 (one verification, the same throttles, the same 401 and 429). The
//! other answers: 415 for another content type or charset, 400 for a form without one RegId or with one that
//! breaks the RegID rule (`omadm_core::model::check_push_registration_id`), 413 for a body over
//! [`MAX_FORM_BYTES`]. RegParams keys beside RegId are the server's own (it handed them out) and are ignored.
//!
//! The change is read and written under the device's lock, as a session step is, so a registration and a
//! Package#1 of one device never interleave on a node.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use omadm_core::clock::{self, Millis};
use omadm_core::metrics::metrics;
use omadm_core::model::{PushRegistration, check_push_registration_id};
use omadm_core::session::events::{PushRegistered, PushUnregistered, push_registered, push_unregistered};
use omadm_core::store::WriteBatch;
use omadm_proto::package::media::is_media_type;
use tracing::Instrument as _;

use super::EdgeShared;
use super::authenticate::authenticate;
use super::body::{content_type, optional_device_id_header, read_body};
use crate::HttpError;
use crate::error::store_failure;

/// Where devices register: the RegURL handed out is `{public_url}` followed by this.
pub const REGISTER_PATH: &str = "/push/gcm/register";
/// Where devices unregister: the UnRegURL handed out is `{public_url}` followed by this.
pub const UNREGISTER_PATH: &str = "/push/gcm/unregister";
/// The form's media type (D.2.4).
pub const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";
/// Largest form body read: a RegId of the longest allowed length, percent-encoded, and RegParams.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Register or unregister.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Register,
    Unregister,
}

impl Action {
    fn label(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Unregister => "unregister",
        }
    }
}

/// What a registration request does to the device's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Store this registration; `replaced` when another RegID was held.
    Store { registration: PushRegistration, replaced: bool },
    /// Clear the RegID the device holds.
    Clear,
    /// Nothing to write: the same RegID registered again, or an unregister with nothing registered.
    Unchanged,
    /// An unregister naming a RegID other than the one held: the held one is newer (the push service gave the
    /// device a new token and the old token's unregister came late) and stays.
    OtherRegistrationId,
}

impl Change {
    fn label(&self) -> &'static str {
        match self {
            Change::Store { .. } => "stored",
            Change::Clear => "cleared",
            Change::Unchanged => "unchanged",
            Change::OtherRegistrationId => "other_reg_id",
        }
    }
}

/// The change `action` with `registration_id` makes to a device that holds `current`, at `now`.
pub(crate) fn decide(current: Option<&PushRegistration>, action: Action, registration_id: &str, now: Millis) -> Change {
    match (action, current) {
        (Action::Register, Some(held)) if held.registration_id == registration_id => Change::Unchanged,
        (Action::Register, held) => Change::Store {
            registration: PushRegistration { registration_id: registration_id.to_owned(), registered_at: now },
            replaced: held.is_some(),
        },
        (Action::Unregister, None) => Change::Unchanged,
        (Action::Unregister, Some(held)) if held.registration_id == registration_id => Change::Clear,
        (Action::Unregister, Some(_)) => Change::OtherRegistrationId,
    }
}

/// The RegId of a D.2.4 form body; 400 unless it holds exactly one RegId that follows the RegID rule.
pub(crate) fn registration_id(body: &[u8]) -> Result<String, HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|error| HttpError::bad_request(format!("the body is not a URL-encoded form: {error}")))?;
    let mut ids = pairs.into_iter().filter(|(key, _)| key == "RegId").map(|(_, value)| value);
    let Some(id) = ids.next() else {
        return Err(HttpError::bad_request("the form has no RegId"));
    };
    if ids.next().is_some() {
        return Err(HttpError::bad_request("the form has more than one RegId"));
    }
    check_push_registration_id(&id).map_err(|error| HttpError::bad_request(error.to_string()))?;
    Ok(id)
}

/// 415 unless the body is declared `application/x-www-form-urlencoded`, in UTF-8 when a charset is named.
fn check_form_content_type(content_type: &str) -> Result<(), HttpError> {
    let refuse = || {
        HttpError::unsupported_media_type(format!(
            "a push registration must be sent as {FORM_MEDIA_TYPE};charset=UTF-8 (Appendix D.2.4)"
        ))
    };
    if !is_media_type(content_type, FORM_MEDIA_TYPE) {
        return Err(refuse());
    }
    for parameter in content_type.split(';').skip(1) {
        if let Some((name, value)) = parameter.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
            && !value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(refuse());
        }
    }
    Ok(())
}

/// `POST /push/gcm/register`.
pub(crate) async fn register(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    handle(shared, request, payload, Action::Register).await
}

/// `POST /push/gcm/unregister`.
pub(crate) async fn unregister(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    handle(shared, request, payload, Action::Unregister).await
}

async fn handle(
    shared: web::Data<EdgeShared>,
    request: HttpRequest,
    payload: web::Payload,
    action: Action,
) -> Result<HttpResponse, HttpError> {
    let span = tracing::info_span!("push.registration", action = action.label(), device_id = tracing::field::Empty);
    let answer: Result<HttpResponse, HttpError> = async {
        check_form_content_type(content_type(&request))?;
        let claimed = optional_device_id_header(&request)?;
        let device = authenticate(&shared, &request, claimed.as_deref()).await?;
        tracing::Span::current().record("device_id", device.id.as_str());
        let body = read_body(&request, payload, MAX_FORM_BYTES, shared.options.body_read_timeout).await?;
        let registration_id = registration_id(&body)?;
        let change = apply(&shared, &device.id, action, &registration_id).await?;
        super::wake_outbox_relay(&request);
        metrics().push_registrations.with_label_values(&[action.label(), change.label()]).inc();
        match &change {
            Change::OtherRegistrationId => {
                tracing::info!(outcome = change.label(), "unregister of a RegID the device no longer holds: kept")
            }
            _ => tracing::info!(outcome = change.label(), "push registration handled"),
        }
        Ok(HttpResponse::NoContent().finish())
    }
    .instrument(span)
    .await;
    if let Err(error) = &answer
        && error.status != StatusCode::UNAUTHORIZED
        && error.status.is_client_error()
    {
        metrics().push_registrations.with_label_values(&[action.label(), "refused"]).inc();
    }
    answer
}

/// Reads the device under its lock, decides, and writes the record with its event in one batch.
async fn apply(
    shared: &EdgeShared,
    device_id: &str,
    action: Action,
    registration_id: &str,
) -> Result<Change, HttpError> {
    let (_device_guard, mut device) = super::locked_device(shared, device_id).await?;
    let store = &shared.state.store;
    let now = clock::now_millis();
    let change = decide(device.push_registration.as_ref(), action, registration_id, now);
    let event = match &change {
        Change::Store { registration, replaced } => {
            device.push_registration = Some(registration.clone());
            push_registered(PushRegistered {
                device_id: device_id.to_owned(),
                replaced: *replaced,
                registered_at: registration.registered_at,
            })
        }
        Change::Clear => {
            device.push_registration = None;
            push_unregistered(PushUnregistered {
                device_id: device_id.to_owned(),
                by: "device".to_owned(),
                unregistered_at: now,
            })
        }
        Change::Unchanged | Change::OtherRegistrationId => return Ok(change),
    };
    device.updated_at = now;
    store
        .commit(WriteBatch { devices: vec![device], events: vec![event], ..WriteBatch::default() })
        .await
        .map_err(store_failure("commit"))?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn held(id: &str) -> PushRegistration {
        PushRegistration { registration_id: id.to_owned(), registered_at: 5 }
    }

    #[test]
    fn registering_stores_replaces_or_keeps_and_unregistering_clears_only_the_held_id() {
        let stored = |replaced| Change::Store { registration: held_at("new", 9), replaced };
        fn held_at(id: &str, at: Millis) -> PushRegistration {
            PushRegistration { registration_id: id.to_owned(), registered_at: at }
        }
        assert_eq!(decide(None, Action::Register, "new", 9), stored(false));
        assert_eq!(decide(Some(&held("old")), Action::Register, "new", 9), stored(true));
        assert_eq!(decide(Some(&held("new")), Action::Register, "new", 9), Change::Unchanged);
        assert_eq!(decide(Some(&held("new")), Action::Unregister, "new", 9), Change::Clear);
        assert_eq!(decide(Some(&held("newer")), Action::Unregister, "new", 9), Change::OtherRegistrationId);
        assert_eq!(decide(None, Action::Unregister, "new", 9), Change::Unchanged);
    }

    #[test]
    fn the_form_must_carry_one_valid_reg_id() {
        assert_eq!(registration_id(b"RegId=cZ3f-9Qk%3AAPA91bH&fleet=meters").unwrap(), "cZ3f-9Qk:APA91bH");
        assert_eq!(registration_id(b"tenant=7&RegId=abc").unwrap(), "abc");
        let long = format!("RegId={}", "t".repeat(omadm_core::model::MAX_PUSH_REGISTRATION_ID_BYTES + 1));
        for bad in [&b""[..], b"regid=abc", b"RegId=", b"RegId=a+b", b"RegId=a&RegId=b", b"RegId=%FF", long.as_bytes()]
        {
            let error = registration_id(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_a_utf8_form_is_accepted() {
        for good in [
            "application/x-www-form-urlencoded;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded; charset=\"utf-8\"",
        ] {
            assert!(check_form_content_type(good).is_ok(), "{good}");
        }
        for bad in ["", "application/json", "application/x-www-form-urlencoded;charset=ISO-8859-1", "text/plain"] {
            assert_eq!(check_form_content_type(bad).unwrap_err().status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
        }
    }
}
