//! The simulation shell: one lightweight tokio task per device (no thread per device), sessions bounded by a
//! fleet-wide semaphore, a UDP notification listener per device on its own loopback address, and progress output.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use omadm_client::device::{Device, DeviceError, ServerAccount};
use omadm_client::notification::{self, NotificationInbox, NotificationPolicy, UdpNotificationListener};
use omadm_client::retry::{RetryPolicy, ServerList, ServerSelection};
use omadm_client::session::{SessionError, SessionRequest, run_session};
use omadm_client::transport::Transport;
use omadm_proto::mo::DevInfo;
use omadm_proto::package::AlertItem;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::fumo::{self, FirmwareBehaviour, PendingUpdate};
use crate::profile::{DeviceSpec, FleetProfile, notify_address};
use crate::report::{Collector, Report, SessionOutcome};
use crate::schedule::Bounds;
use omadm_proto::mo::FumoResultCode;

/// The Generic Alert type of the random alerts devices send (a private type: servers store it as is).
pub const RANDOM_ALERT_TYPE: &str = "urn:oma:at:devsim:1.0:Random";

/// Everything a run needs besides the fleet.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Base URLs of the server (one, or the nodes of a cluster); device i's Package#1 goes to
    /// `<servers[i mod n]>/dm` and its requests fail over to the others.
    pub servers: Vec<String>,
    /// Stay on a server until it stops answering, or draw one per request.
    pub selection: ServerSelection,
    /// How each device retries a request (503/429 with Retry-After, no answer).
    pub retry: RetryPolicy,
    pub server_id: String,
    /// The AuthNoti secret Package#0 must be signed with; `None`: unsigned ones are taken.
    pub auth_secret: Option<String>,
    /// Name the devices that accepted a notification in the report.
    pub report_devices: bool,
    pub bounds: Bounds,
    pub concurrency: usize,
    /// `Some(port)`: each device listens for Package#0 on its loopback address at this port.
    pub notify_port: Option<u16>,
    pub firmware: FirmwareBehaviour,
    pub alert_rate: f64,
    /// Show progress (a bar on a terminal, plain lines otherwise).
    pub progress: bool,
}

/// State every device task shares.
struct Shared {
    config: RunConfig,
    http: reqwest::Client,
    sessions: Semaphore,
    collector: Arc<Collector>,
    started: Instant,
    stop: AtomicBool,
    /// Wakes the progress task at once when the run ends (a stored permit, so a wake-up is never missed).
    stopped: tokio::sync::Notify,
    /// Set on SIGTERM or SIGINT: devices waiting for notifications stop waiting (sessions in flight finish), so
    /// the run ends early with its report, as at the end of `--duration`.
    ending: tokio::sync::watch::Receiver<bool>,
}

/// A receiver that turns true on SIGTERM or SIGINT (never, where the signals cannot be listened for).
fn termination() -> tokio::sync::watch::Receiver<bool> {
    let (ending, ended) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("omadm-devsim: stopping: devices stop waiting for notifications");
        let _ = ending.send(true);
        // Keep the sender: a dropped one would read as a change to every receiver that waits later.
        std::future::pending::<()>().await;
    });
    ended
}

/// The error kind a failed session is counted under in the report.
pub fn error_kind(error: &SessionError) -> String {
    match error {
        SessionError::Transport(_) => "transport".to_owned(),
        SessionError::Refused { status, .. } => format!("http_{status}"),
        SessionError::BadPackage(_) => "bad_package".to_owned(),
        SessionError::Encode(_) => "encode".to_owned(),
        SessionError::NoContinuation => "no_continuation".to_owned(),
        SessionError::TooManyPackages => "too_many_packages".to_owned(),
    }
}

/// Builds the simulated device for `spec`, with its FUMO instance and where EXEC'd updates wait.
pub fn build_device(
    spec: &DeviceSpec,
    profile: &FleetProfile,
    config: &RunConfig,
) -> Result<(Device, PendingUpdate), DeviceError> {
    let devinfo = DevInfo {
        device_id: spec.device_id.clone(),
        manufacturer: profile.manufacturer.clone(),
        model: spec.model.clone(),
        dm_client_version: "2.0".into(),
        language: "en-US".into(),
        device_type: "simulated".into(),
        oem: profile.manufacturer.clone(),
        firmware_version: spec.fwv.clone(),
        software_version: spec.fwv.clone(),
        hardware_version: "sim".into(),
        bearer: None,
        extensions: None,
    };
    let server = crate::register::server_for(&config.servers, spec.index).map_or("", |server| server.as_str());
    let account = ServerAccount {
        server_id: config.server_id.clone(),
        package1_url: format!("{}/dm", server.trim_end_matches('/')),
    };
    let mut device = Device::new(devinfo, &profile.password, account)?;
    let pending = fumo::install(&mut device)?;
    Ok((device, pending))
}

/// Runs the fleet and returns the report (registration, if wanted, is done before by the caller).
pub async fn run(profile: FleetProfile, config: RunConfig, collector: Arc<Collector>) -> Report {
    let shared = Arc::new(Shared {
        // A device whose server vanished mid-request gives up on it after 30 s and retries elsewhere.
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new()),
        sessions: Semaphore::new(config.concurrency.max(1)),
        collector: Arc::clone(&collector),
        started: Instant::now(),
        stop: AtomicBool::new(false),
        stopped: tokio::sync::Notify::new(),
        ending: termination(),
        config,
    });
    let profile = Arc::new(profile);
    let progress = shared.config.progress.then(|| spawn_progress(Arc::clone(&shared), profile.devices));
    let mut devices = JoinSet::new();
    for index in 0..profile.devices {
        let spec = profile.device(index);
        let span = tracing::info_span!("devsim.device", device_id = %spec.device_id);
        devices.spawn(play_device(spec, Arc::clone(&profile), Arc::clone(&shared)).instrument(span));
    }
    while devices.join_next().await.is_some() {}
    let elapsed = shared.started.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    shared.stopped.notify_one();
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    collector.report(profile.devices, elapsed)
}

async fn play_device(spec: DeviceSpec, profile: Arc<FleetProfile>, shared: Arc<Shared>) {
    let (mut device, pending_update) = match build_device(&spec, &profile, &shared.config) {
        Ok(built) => built,
        Err(error) => {
            tracing::warn!(device_id = %spec.device_id, %error, "cannot build the device");
            shared.collector.record_session(SessionOutcome::Failed { kind: "device_setup".into() });
            return;
        }
    };
    let servers = Arc::new(ServerList::new(shared.config.servers.iter().cloned(), shared.config.selection));
    let transport = Transport::with_client(shared.http.clone(), device.credentials.clone())
        .with_retry_policy(shared.config.retry.clone())
        .with_servers(servers);
    let accounts =
        vec![notification::ServerAccount::new(shared.config.server_id.clone(), shared.config.auth_secret.clone())];
    let (inbox, mut accepted) = NotificationInbox::new(&spec.device_id, accounts, NotificationPolicy::default(), 4);
    let listener: Option<UdpNotificationListener> = match shared.config.notify_port {
        Some(port) => {
            let address = SocketAddr::new(notify_address(spec.index).into(), port);
            match inbox.listen_udp(address).await {
                Ok(listener) => Some(listener),
                Err(error) => {
                    tracing::warn!(device_id = %spec.device_id, %address, %error, "cannot listen for notifications");
                    shared.collector.record_error("notify_bind");
                    None
                }
            }
        }
        None => None,
    };
    if shared.config.notify_port.is_some() && shared.collector.record_listener_set_up() == u64::from(profile.devices) {
        // The one line a driver (a test, a script) waits for before it sends Package#0: UDP keeps nothing for a
        // socket that is not bound yet.
        eprintln!("omadm-devsim: {} devices listening for notifications", profile.devices);
    }
    let bounds = shared.config.bounds;
    tokio::time::sleep(bounds.first_start_offset(spec.index, profile.devices)).await;
    let mut own_sessions = 0;
    loop {
        let elapsed = shared.started.elapsed();
        if bounds.may_start_own_session(own_sessions, elapsed) {
            own_sessions += 1;
            // The first session announces the device's MOs, as a device does after boot.
            one_session(&mut device, &transport, &shared, own_sessions == 1, &pending_update).await;
            if own_sessions < bounds.sessions_per_device && !bounds.interval.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(bounds.interval) => {}
                    Some(notification) = accepted.recv(), if listener.is_some() => {
                        shared.collector.record_notification(&spec.device_id, shared.config.report_devices);
                        one_session(&mut device, &transport, &shared, notification.request_mos, &pending_update).await;
                    }
                }
            }
            continue;
        }
        // Own sessions done: wait for notifications until the deadline, if there is one and a listener.
        let (Some(duration), Some(_)) = (bounds.duration, listener.as_ref()) else { break };
        let Some(remaining) = duration.checked_sub(elapsed) else { break };
        let mut ending = shared.ending.clone();
        if *ending.borrow() {
            break;
        }
        let waited = tokio::select! {
            waited = tokio::time::timeout(remaining, accepted.recv()) => waited,
            _ = ending.changed() => break,
        };
        match waited {
            Ok(Some(notification)) => {
                shared.collector.record_notification(&spec.device_id, shared.config.report_devices);
                one_session(&mut device, &transport, &shared, notification.request_mos, &pending_update).await;
            }
            Ok(None) | Err(_) => break,
        }
    }
    if let Some(listener) = listener {
        listener.stop().await;
    }
    shared.collector.record_notification_drops(&inbox.counts());
    shared.collector.record_transport(transport.stats());
}

/// One session, then, while the server EXEC'd a firmware operation in it, the update and the session that
/// reports its result.
async fn one_session(
    device: &mut Device,
    transport: &Transport,
    shared: &Shared,
    request_mos: bool,
    pending_update: &PendingUpdate,
) {
    session(device, transport, shared, request_mos, Vec::new()).await;
    loop {
        let next = pending_update.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some((operation, client_uri)) = next else { return };
        let (code, alert) = fumo::run_update(device, transport, operation, &client_uri, shared.config.firmware).await;
        shared.collector.record_firmware(
            &device.credentials.device_id,
            code == FumoResultCode::SUCCESSFUL,
            shared.config.report_devices,
        );
        session(device, transport, shared, false, vec![alert]).await;
    }
}

async fn session(
    device: &mut Device,
    transport: &Transport,
    shared: &Shared,
    request_mos: bool,
    alerts: Vec<AlertItem>,
) {
    let Ok(_permit) = shared.sessions.acquire().await else { return };
    let mut request = SessionRequest { request_mos, alerts };
    if shared.config.alert_rate > 0.0 && rand::random::<f64>() < shared.config.alert_rate {
        let mut alert = AlertItem::new(RANDOM_ALERT_TYPE);
        alert.data = Some(serde_json::json!({ "value": rand::random::<u32>() }));
        request.alerts.push(alert);
    }
    let started = Instant::now();
    let outcome = match run_session(device, transport, request).await {
        Ok(report) => SessionOutcome::Ok {
            packages: report.packages as u64,
            statuses: report.commands.iter().map(|command| command.status.as_u16()).collect(),
            exchanges: report.exchange_durations,
            session: started.elapsed(),
        },
        Err(error) => {
            tracing::warn!(device_id = %device.credentials.device_id, %error, "session failed");
            shared.collector.record_failure_sample(&device.credentials.device_id, &error.to_string());
            SessionOutcome::Failed { kind: error_kind(&error) }
        }
    };
    shared.collector.record_session(outcome);
}

/// Progress until the run stops: a live bar on a terminal, a plain line every 5 s otherwise (both on stderr).
fn spawn_progress(shared: Arc<Shared>, devices: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let expected = u64::from(devices) * u64::from(shared.config.bounds.sessions_per_device);
        let terminal = std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(expected);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} sessions {per_sec} {msg}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        let period = if terminal { Duration::from_millis(200) } else { Duration::from_secs(5) };
        loop {
            let stopping = shared.stop.load(Ordering::Relaxed);
            let (ok, failed) = shared.collector.progress();
            match &bar {
                Some(bar) => {
                    bar.set_position(ok + failed);
                    bar.set_message(format!("failed {failed}"));
                }
                None => eprintln!(
                    "omadm-devsim: {:.0}s sessions ok {ok} failed {failed} of {expected}",
                    shared.started.elapsed().as_secs_f64()
                ),
            }
            if stopping {
                if let Some(bar) = &bar {
                    bar.finish();
                }
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = shared.stopped.notified() => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_are_bounded_names() {
        assert_eq!(error_kind(&SessionError::NoContinuation), "no_continuation");
        assert_eq!(error_kind(&SessionError::Refused { status: 401, reason: "x".into() }), "http_401");
        assert_eq!(error_kind(&SessionError::TooManyPackages), "too_many_packages");
    }
}
