//! A DM session from the device's side (5.2): Package#1, then each Package#2 executed command by command in
//! order and answered with a Package#3 at the CONT URL, until END.
//!
//! A Package#2 is read leniently: a malformed command is answered 400, an unknown one 501, and the others run.
//! GET data goes in an Appendix E multipart Package#3. Generic Alerts raised during the session (EXEC without a
//! ServerURI) go in the next Package#3; their statuses come back as the Package#2's `AlertStatus`.

use std::time::{Duration, Instant};

use omadm_proto::command::CommandName;
use omadm_proto::multipart::{GetResultPart, MultipartError, derive_boundary, encode_response};
use omadm_proto::package::media::{INITIATION_JSON, REQUEST_JSON, is_media_type};
use omadm_proto::package::{
    Alert, AlertItem, InitiationPackage, LenientRequestPackage, PackageError, ParseLimits, RequestPackage,
    ResponsePackage,
};
use omadm_proto::status::StatusCode;
use reqwest::Method;
use tracing::Instrument as _;

use crate::command::{CommandContext, CommandOutcome, execute};
use crate::device::Device;
use crate::transport::{HttpReply, Transport, TransportError};

/// A session that has not ended after this many Package#2 is abandoned (a server looping on CONT).
pub const MAX_PACKAGES_PER_SESSION: usize = 1000;

/// What the device opens the session with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionRequest {
    /// Send `MOS` (the notification carried REQ-MOS, or the device wants to).
    pub request_mos: bool,
    /// Client-initiated Generic Alerts for the Package#1.
    pub alerts: Vec<AlertItem>,
}

impl SessionRequest {
    /// The session a valid Package#0 asks for: MOS when it carried REQ-MOS.
    pub fn for_notification(notification: &crate::notification::AcceptedNotification) -> SessionRequest {
        SessionRequest { request_mos: notification.request_mos, alerts: Vec::new() }
    }
}

/// The status the device gave one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandReport {
    /// `None` for a command that could not be parsed.
    pub command: Option<CommandName>,
    pub status: StatusCode,
}

/// What happened in a session that ended with END.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionReport {
    /// Package#2 received.
    pub packages: usize,
    /// Every command answered, in order (END not counted).
    pub commands: Vec<CommandReport>,
    /// The `AlertStatus` of every Package#2, in order.
    pub alert_statuses: Vec<StatusCode>,
    /// Duration of each HTTP exchange (Package#1 -> #2, Package#3 -> #2).
    pub exchange_durations: Vec<Duration>,
}

/// Why a session did not reach END.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the server answered HTTP {status}: {reason}")]
    Refused { status: u16, reason: String },
    #[error("the server's Package#2 is unreadable: {0}")]
    BadPackage(#[from] PackageError),
    #[error("cannot encode the Package#3: {0}")]
    Encode(#[from] MultipartError),
    #[error("the Package#2 neither ends the session nor names a CONT URL")]
    NoContinuation,
    #[error("the session did not end within {MAX_PACKAGES_PER_SESSION} packages")]
    TooManyPackages,
}

/// Runs one whole session of `device` against its server.
pub async fn run_session(
    device: &mut Device,
    transport: &Transport,
    request: SessionRequest,
) -> Result<SessionReport, SessionError> {
    let span = tracing::info_span!("dm.session", device_id = %device.credentials.device_id, session_url = tracing::field::Empty);
    run_session_inner(device, transport, request).instrument(span).await
}

async fn run_session_inner(
    device: &mut Device,
    transport: &Transport,
    request: SessionRequest,
) -> Result<SessionReport, SessionError> {
    let mut report = SessionReport::default();
    let package1 = InitiationPackage {
        supported_objects: request.request_mos.then(|| device.supported_objects()),
        alert: (!request.alerts.is_empty()).then(|| Alert::new(request.alerts)),
    };
    let started = Instant::now();
    let reply = transport
        .send_authenticated(
            Method::POST,
            &device.account.package1_url.clone(),
            Some(INITIATION_JSON),
            None,
            package1.to_json_bytes()?,
        )
        .await?;
    report.exchange_durations.push(started.elapsed());
    let mut package2 = read_package2(reply)?;
    let mut session_url: Option<String> = None;
    loop {
        report.packages += 1;
        report.alert_statuses.extend(package2.alert_statuses.iter().copied());
        let mut context = CommandContext { device: &mut *device, transport };
        let answer = answer_package2(&mut context, &package2, &mut report).await;
        let Some((package3, parts, continue_at)) = answer else {
            tracing::debug!(packages = report.packages, "session ended");
            return Ok(report);
        };
        if continue_at.is_some() {
            session_url = continue_at;
            tracing::Span::current().record("session_url", session_url.as_deref());
        }
        if report.packages >= MAX_PACKAGES_PER_SESSION {
            return Err(SessionError::TooManyPackages);
        }
        let url = session_url.clone().ok_or(SessionError::NoContinuation)?;
        let encoded = encode_response(&package3, &parts, &derive_boundary(&parts))?;
        let started = Instant::now();
        let reply = transport.send_plain(Method::POST, &url, Some(&encoded.content_type), None, encoded.body).await?;
        report.exchange_durations.push(started.elapsed());
        package2 = read_package2(reply)?;
    }
}

/// Executes a Package#2 in order; `None` when it ends the session (END: nothing is answered), else the
/// Package#3, its GET parts and the CONT URL if the package named one.
pub async fn answer_package2(
    context: &mut CommandContext<'_>,
    package2: &LenientRequestPackage,
    report: &mut SessionReport,
) -> Option<(ResponsePackage, Vec<GetResultPart>, Option<String>)> {
    let mut statuses = Vec::with_capacity(package2.commands.len());
    let mut parts = Vec::new();
    let mut alerts = Vec::new();
    let mut continue_at = None;
    for (index, command) in package2.commands.iter().enumerate() {
        let (name, outcome) = match command {
            Ok(command) => (Some(command.command_name()), execute(context, command).await),
            Err(error) => {
                tracing::debug!(position = index + 1, %error, "bad command");
                (None, CommandOutcome::status(error.status_code()))
            }
        };
        tracing::debug!(
            position = index + 1,
            command = name.map_or("invalid", CommandName::as_str),
            status = u16::from(outcome.status.code),
            "command answered"
        );
        if outcome.ends_session {
            return None;
        }
        if outcome.continue_at.is_some() {
            continue_at = outcome.continue_at;
        }
        if let Some((content_type, body)) = outcome.part {
            parts.push(GetResultPart::new(index + 1, content_type, body));
        }
        alerts.extend(outcome.alerts);
        report.commands.push(CommandReport { command: name, status: outcome.status.code });
        statuses.push(outcome.status);
    }
    let package3 = ResponsePackage { statuses, alert: (!alerts.is_empty()).then(|| Alert::new(alerts)) };
    Some((package3, parts, continue_at))
}

/// A Package#2 from a 200 answer of the request media type; anything else is the server refusing.
fn read_package2(reply: HttpReply) -> Result<LenientRequestPackage, SessionError> {
    let is_package2 =
        reply.content_type.as_deref().is_some_and(|content_type| is_media_type(content_type, REQUEST_JSON));
    if reply.status != 200 || !is_package2 {
        let text = String::from_utf8_lossy(&reply.body);
        let reason = serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|body| body.get("error").and_then(|error| error.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect::<String>().replace('\n', " "));
        return Err(SessionError::Refused { status: reply.status, reason });
    }
    Ok(RequestPackage::parse_lenient(&reply.body, &ParseLimits::default())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use serde_json::json;

    fn lenient(value: serde_json::Value) -> LenientRequestPackage {
        RequestPackage::parse_lenient(&serde_json::to_vec(&value).unwrap(), &ParseLimits::default()).unwrap()
    }

    #[tokio::test]
    async fn bad_commands_get_400_unknown_501_and_the_rest_run() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let mut context = CommandContext { device: &mut device, transport: &transport };
        let package = lenient(json!({"CMD": [
            ["CONT", "http://h/dm/s/1"],
            ["GET"],
            ["PATCH", "x"],
            ["GET", "urn:oma:mo:oma-dm-devinfo:1.2//DevID"],
            ["DELETE", "urn:oma:mo:oma-dm-devinfo:1.2//*"]
        ], "AlertStatus": [200]}));
        let mut report = SessionReport::default();
        let (package3, parts, continue_at) = answer_package2(&mut context, &package, &mut report).await.unwrap();
        let codes: Vec<u16> = package3.statuses.iter().map(|status| status.code.into()).collect();
        assert_eq!(codes, vec![200, 400, 501, 200, 400]);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].position, 4);
        assert_eq!(continue_at.as_deref(), Some("http://h/dm/s/1"));
        assert_eq!(report.commands[2].command, None);
    }

    #[tokio::test]
    async fn end_is_not_answered() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let mut context = CommandContext { device: &mut device, transport: &transport };
        let package = lenient(json!({"CMD": [["DELETE", "urn:oma:mo:oma-dm-dmacc:2.0/dms1/Name"], ["END"]]}));
        let mut report = SessionReport::default();
        assert!(answer_package2(&mut context, &package, &mut report).await.is_none());
        assert_eq!(report.commands.len(), 1);
    }

    #[test]
    fn a_session_can_run_on_any_tokio_worker() {
        fn assert_send<T: Send>(_: &T) {}
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let session = run_session(&mut device, &transport, SessionRequest::default());
        assert_send(&session);
    }

    #[test]
    fn refusals_carry_the_servers_reason() {
        let reply =
            HttpReply { status: 410, content_type: None, body: br#"{"error": "session ended"}"#.to_vec().into() };
        let error = read_package2(reply).unwrap_err();
        assert_eq!(error.to_string(), "the server answered HTTP 410: session ended");
    }
}
