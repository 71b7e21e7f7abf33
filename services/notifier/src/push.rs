//! Package#0 through a push service over HTTP (Appendix D.2): one POST to the push gateway per notification,
//! the body rendered from a template, the package in its D.2.5 form (base64 under the key "SMS").
//!
//! ```text
//! send(Push { device_id: "IMEI:1", registration_id: "cZ3f..." }, package, id)
//!   -> POST {push_url}   Content-Type: application/json   {auth header}
//!        {"message":{"token":"cZ3f...","data":{"SMS":"IQAQA3NydkAA..."}}}     (the FCM HTTP v1 shape, by default)
//!   <- 2xx                                   sent
//!   <- 404, or errorCode "UNREGISTERED"      rejected; the RegID is cleared from the device record (push.unregistered)
//!   <- another 4xx but 401/403/408/429       rejected (the message itself): not tried again
//!   <- 401/403/408/429/5xx, no connection,   failed, may pass: tried again later (the notifier's retries)
//!      no answer in time
//! ```
//!
//! A RegID is cleared only on the answers that say the token is gone for good (FCM: 404 NOT_FOUND with
//! errorCode UNREGISTERED); a 400 may be this server's own template at fault, a 401/403 its credential, a 429 or
//! 5xx the gateway's load, so those keep the RegID. The device registers again with a fresh one (D.2.4).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use omadm_core::clock::now_millis;
use omadm_core::session::events::{PushUnregistered, push_unregistered};
use omadm_core::store::{Store, WriteBatch};
use omadm_proto::notification::encode_base64;
use tracing::Instrument as _;

use crate::NotifierError;
use crate::metrics::metrics;
use crate::plan::Destination;
use crate::rate::SharedRate;
use crate::settings::PushSettings;
use crate::transport::{Dispatch, Transport, TransportError};

/// The FCM HTTP v1 `messages:send` body: a data message to one registration token.
pub const DEFAULT_BODY_TEMPLATE: &str = r#"{"message":{"token":"{{RegID}}","data":{"SMS":"{{SMS}}"}}}"#;
/// Stands for the device's RegID in a template.
pub const REGISTRATION_ID_PLACEHOLDER: &str = "{{RegID}}";
/// Stands for the base64 Package#0 in a template.
pub const PACKAGE_PLACEHOLDER: &str = "{{SMS}}";
/// At most this much of a gateway's answer is read (for its error code and message).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// At most this much of a gateway's error message goes into the failure's reason.
const MAX_REASON_CHARS: usize = 300;

/// Why a body template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("it has no {0} placeholder")]
    MissingPlaceholder(&'static str),
    #[error("it does not render to JSON: {0}")]
    NotJson(String),
}

/// A push request body with placeholders, checked to render to JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate {
    text: String,
}

impl BodyTemplate {
    /// `text` when it holds both placeholders (inside JSON strings) and renders to valid JSON.
    pub fn new(text: &str) -> Result<BodyTemplate, TemplateError> {
        for placeholder in [REGISTRATION_ID_PLACEHOLDER, PACKAGE_PLACEHOLDER] {
            if !text.contains(placeholder) {
                return Err(TemplateError::MissingPlaceholder(placeholder));
            }
        }
        let template = BodyTemplate { text: text.to_owned() };
        serde_json::from_str::<serde_json::Value>(&template.render("x\"y", "IQ=="))
            .map_err(|error| TemplateError::NotJson(error.to_string()))?;
        Ok(template)
    }

    /// The body for `registration_id` and the base64 package `sms`, each escaped as the inside of a JSON string.
    pub fn render(&self, registration_id: &str, sms: &str) -> String {
        self.text
            .replace(REGISTRATION_ID_PLACEHOLDER, &json_string_contents(registration_id))
            .replace(PACKAGE_PLACEHOLDER, &json_string_contents(sms))
    }
}

/// `text` escaped for the inside of a JSON string (no surrounding quotes).
fn json_string_contents(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default().to_owned()
}

/// What a push gateway's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Accepted for delivery; FCM names the message (`projects/p/messages/0:1500...`).
    Accepted { message: Option<String> },
    /// The RegID is not (or no longer) registered: the device must register again.
    Unregistered { reason: String },
    /// Refused, or failed, for another reason.
    Refused { reason: String },
}

/// Reads the gateway's `status` and `body` (FCM v1: `{"name": ...}` on success; `{"error": {"code", "status",
/// "message", "details": [{"errorCode": "UNREGISTERED"}]}}` on failure).
pub fn read_answer(status: u16, body: &[u8]) -> Answer {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        let message = json.as_ref().and_then(|value| value.get("name")).and_then(|name| name.as_str());
        return Answer::Accepted { message: message.map(str::to_owned) };
    }
    let error = json.as_ref().and_then(|value| value.get("error"));
    let error_code = error
        .and_then(|error| error.get("details"))
        .and_then(|details| details.as_array())
        .and_then(|details| details.iter().find_map(|detail| detail.get("errorCode")?.as_str()));
    let said = error
        .and_then(|error| {
            let status = error.get("status").and_then(|status| status.as_str());
            let message = error.get("message").and_then(|message| message.as_str());
            match (error_code.or(status), message) {
                (Some(code), Some(message)) => Some(format!("{code}: {message}")),
                (Some(code), None) => Some(code.to_owned()),
                (None, Some(message)) => Some(message.to_owned()),
                (None, None) => None,
            }
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let said: String = said.chars().take(MAX_REASON_CHARS).collect();
    let reason = if said.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {said}") };
    if status == 404 || error_code == Some("UNREGISTERED") {
        Answer::Unregistered { reason }
    } else {
        Answer::Refused { reason }
    }
}

/// Whether a refusal with `status` is about the message itself, so that sending it again cannot help
/// ([`TransportError::Rejected`]): a 4xx other than 401/403 (this server's credential, which the operator can
/// renew), 408 and 429 (the gateway's load). Those and 5xx are [`TransportError::Send`], tried again later.
pub fn refuses_the_message(status: u16) -> bool {
    (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429)
}

/// The push transport: one HTTP client (connections kept) to one push gateway.
pub struct PushTransport {
    http: reqwest::Client,
    settings: PushSettings,
    /// Requests per second to the gateway for all replicas (`notifier:push:{url}`); `None`: no limit.
    rate: Option<SharedRate>,
    /// Where a RegID the gateway no longer knows is cleared.
    store: Arc<dyn Store>,
}

impl PushTransport {
    /// A client with the settings' timeout (connecting included) that follows no redirect (the auth header
    /// goes to the configured gateway only).
    pub fn new(settings: PushSettings, store: Arc<dyn Store>) -> Result<PushTransport, NotifierError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| {
                NotifierError::Transport(format!("cannot build the push gateway's HTTP client: {error}"))
            })?;
        let rate = SharedRate::new(store.clone(), "push", &settings.url, settings.rate);
        Ok(PushTransport { http, settings, store, rate })
    }

    /// The push gateway's URL.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// One POST; the answer read, at most [`MAX_ANSWER_BYTES`] of it.
    async fn post(&self, body: String) -> Result<(u16, Vec<u8>), String> {
        let mut request = self
            .http
            .post(&self.settings.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json; charset=UTF-8")
            .body(body);
        if let Some((name, value)) = &self.settings.auth_header {
            request = request.header(name.as_str(), value.as_str());
        }
        let described = |error: reqwest::Error| {
            if error.is_timeout() {
                format!("no answer within {} s", self.settings.timeout.as_secs())
            } else if error.is_connect() {
                format!("cannot connect: {}", error_chain(&error))
            } else {
                error_chain(&error)
            }
        };
        let mut response = request.send().await.map_err(described)?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(described)? {
            let room = MAX_ANSWER_BYTES.saturating_sub(answer.len());
            answer.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or_default());
            if answer.len() >= MAX_ANSWER_BYTES {
                break;
            }
        }
        Ok((status, answer))
    }

    /// Clears `registration_id` from the device's record, unless the device registered another one meanwhile.
    async fn clear_registration(&self, device_id: &str, registration_id: &str) {
        let cleared = async {
            let Some(mut device) = self.store.get_device(device_id).await? else { return Ok(false) };
            if device.push_registration.as_ref().is_none_or(|held| held.registration_id != registration_id) {
                return Ok(false);
            }
            let now = now_millis();
            device.push_registration = None;
            device.updated_at = now;
            let event = push_unregistered(PushUnregistered {
                device_id: device_id.to_owned(),
                by: "push_gateway".to_owned(),
                unregistered_at: now,
            });
            self.store
                .commit(WriteBatch { devices: vec![device], events: vec![event], ..WriteBatch::default() })
                .await?;
            Ok::<bool, omadm_core::store::StoreError>(true)
        };
        match cleared.await {
            Ok(true) => tracing::info!("the push gateway no longer knows the RegID: cleared from the device"),
            Ok(false) => {}
            // The next send gets the same answer and tries again.
            Err(error) => tracing::warn!(%error, "cannot clear the RegID the push gateway no longer knows"),
        }
    }
}

/// An error with its sources, which is where reqwest keeps the cause ("connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Transport for PushTransport {
    fn name(&self) -> &'static str {
        "push"
    }

    async fn send(
        &self,
        destination: &Destination,
        package: &[u8],
        dispatch: &Dispatch<'_>,
    ) -> Result<(), TransportError> {
        let notification_id = dispatch.notification_id;
        let Destination::Push { device_id, registration_id } = destination else {
            return Err(TransportError::Send {
                transport: "push",
                destination: format!("{destination:?}"),
                reason: "not a push destination".to_owned(),
            });
        };
        let failed = |reason: String| TransportError::Send {
            transport: "push",
            destination: format!("the RegID of {device_id}"),
            reason,
        };
        let rejected = |reason: String| TransportError::Rejected {
            transport: "push",
            destination: format!("the RegID of {device_id}"),
            reason,
        };
        let span =
            tracing::info_span!("push.send", device_id = %device_id, notification_id, gateway = %self.settings.url);
        async {
            if let Some(rate) = &self.rate {
                rate.wait_turn().await.map_err(failed)?;
            }
            let body = self.settings.body_template.render(registration_id, &encode_base64(package));
            let outcome = |label: &str| metrics().push_sends.with_label_values(&[label]).inc();
            let (status, answer) = match self.post(body).await {
                Ok(answered) => answered,
                Err(reason) => {
                    outcome(if reason.starts_with("no answer") { "timeout" } else { "error" });
                    tracing::warn!(%reason, "push gateway unavailable");
                    return Err(failed(reason));
                }
            };
            match read_answer(status, &answer) {
                Answer::Accepted { message } => {
                    outcome("accepted");
                    tracing::debug!(status, message = message.as_deref().unwrap_or(""), "push gateway accepted");
                    Ok(())
                }
                Answer::Unregistered { reason } => {
                    outcome("unregistered");
                    self.clear_registration(device_id, registration_id).await;
                    Err(rejected(format!("the RegID is not registered ({reason})")))
                }
                Answer::Refused { reason } if refuses_the_message(status) => {
                    outcome("refused");
                    Err(rejected(reason))
                }
                Answer::Refused { reason } => {
                    outcome("refused");
                    Err(failed(reason))
                }
            }
        }
        .instrument(span)
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_default_template_renders_the_fcm_v1_message_and_escapes_what_it_puts_in() {
        let template = BodyTemplate::new(DEFAULT_BODY_TEMPLATE).unwrap();
        let body: serde_json::Value = serde_json::from_str(&template.render("cZ3f:APA91", "IQAQA3NydkAA")).unwrap();
        assert_eq!(body, serde_json::json!({"message": {"token": "cZ3f:APA91", "data": {"SMS": "IQAQA3NydkAA"}}}));
        let odd: serde_json::Value = serde_json::from_str(&template.render("a\"b\\c", "x")).unwrap();
        assert_eq!(odd["message"]["token"], "a\"b\\c", "a quote in a RegID cannot break out of the string");
        let custom =
            BodyTemplate::new(r#"{"to":"{{RegID}}","priority":"high","data":{"SMS":"{{SMS}}","n":1}}"#).unwrap();
        assert_eq!(custom.render("t", "s"), r#"{"to":"t","priority":"high","data":{"SMS":"s","n":1}}"#);
    }

    #[test]
    fn templates_without_both_placeholders_or_not_json_are_refused() {
        assert_eq!(
            BodyTemplate::new(r#"{"token":"{{RegID}}"}"#),
            Err(TemplateError::MissingPlaceholder(PACKAGE_PLACEHOLDER))
        );
        assert_eq!(
            BodyTemplate::new(r#"{"SMS":"{{SMS}}"}"#),
            Err(TemplateError::MissingPlaceholder(REGISTRATION_ID_PLACEHOLDER))
        );
        assert!(matches!(BodyTemplate::new(r#"{"t":{{RegID}},"s":"{{SMS}}"}"#), Err(TemplateError::NotJson(_))));
    }

    #[test]
    fn answers_are_read_the_way_fcm_gives_them() {
        let accepted = read_answer(200, br#"{"name": "projects/p/messages/0:1"}"#);
        assert_eq!(accepted, Answer::Accepted { message: Some("projects/p/messages/0:1".to_owned()) });
        assert_eq!(read_answer(204, b""), Answer::Accepted { message: None });
        let unregistered = br#"{"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}}"#;
        assert_eq!(
            read_answer(404, unregistered),
            Answer::Unregistered { reason: "HTTP 404: UNREGISTERED: Requested entity was not found.".to_owned() }
        );
        let gone = read_answer(400, br#"{"error": {"code": 400, "details": [{"errorCode": "UNREGISTERED"}]}}"#);
        assert!(matches!(gone, Answer::Unregistered { .. }), "{gone:?}");
        assert!(matches!(read_answer(404, b"no such token"), Answer::Unregistered { .. }));
        let invalid = br#"{"error": {"code": 400, "message": "bad token", "status": "INVALID_ARGUMENT"}}"#;
        assert_eq!(
            read_answer(400, invalid),
            Answer::Refused { reason: "HTTP 400: INVALID_ARGUMENT: bad token".to_owned() }
        );
        assert_eq!(read_answer(503, b""), Answer::Refused { reason: "HTTP 503".to_owned() });
        let long = read_answer(500, "x".repeat(5000).as_bytes());
        assert!(matches!(long, Answer::Refused { reason } if reason.len() < 400), "reasons stay short");
    }

    #[test]
    fn only_refusals_of_the_message_itself_are_final() {
        for status in [400, 404, 410, 413] {
            assert!(refuses_the_message(status), "{status}");
        }
        for status in [401, 403, 408, 429, 500, 503, 302] {
            assert!(!refuses_the_message(status), "{status}");
        }
    }
}
