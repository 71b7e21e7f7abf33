//! Criterion benches of one DM session package's hot path without sockets: decoding a Package#3, the pure session step, building and encoding a Package#2, and the embedded store's commit of a step's batch.

// Bench inputs are fixed: if building them fails the bench itself is wrong.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use omadm_core::clock::{Millis, now_millis};
use omadm_core::cluster::{Fence, LeaseRequest};
use omadm_core::model::{
    CommandOrigin, CommandRecord, CommandState, Device, Inventory, MirrorRecord, NewCommand, SentCommand, SessionState,
};
use omadm_core::session::{SessionConfig, SessionContext, SessionEvent, Step, step};
use omadm_core::store::{EmbeddedStore, SessionLoad, SessionSnapshot, Store, WriteBatch};
use omadm_proto::command::Command;
use omadm_proto::multipart::{GetResultPart, MultipartLimits, MultipartResponse, decode_response, derive_boundary};
use omadm_proto::package::{CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{ManagementTree, TreeLimits};
use serde_json::json;

const DEVICE_ID: &str = "IMEI:493005100592800";
const SESSION_ID: &str = "8f14e45fceea167a5a36dedd4bea2543";
const PUBLIC_URL: &str = "https://dm.example.com";
/// A fixed `now` for the pure benches, so every run steps the same inputs.
const NOW: Millis = 1_700_000_000_000;
const HOUR: Millis = 3_600_000;
const NODE_ID: &str = "bench-node";
const LEASE_TTL: Millis = 30_000;
/// The firmware version the mirror holds, and the one the Package#3's GET reports after an update.
const OLD_FIRMWARE: &str = "R12.3.0";
const NEW_FIRMWARE: &str = "R12.4.1";

/// `omadm serve`'s defaults (docs/configuration.md), so the step takes the branches a default server takes.
fn config() -> SessionConfig {
    SessionConfig {
        max_commands_per_package: 10,
        session_url_base: format!("{PUBLIC_URL}/dm/s/"),
        session_timeout: 300_000,
        inventory_max_age: 24 * HOUR,
        max_attempts: 5,
        supported_alert_mime_types: Vec::new(),
    }
}

fn command(wire: serde_json::Value) -> Command {
    Command::from_json(&wire).expect("bench command")
}

/// The three operator commands of a firmware campaign's session: read the version, clean up, update.
fn operator_commands() -> [Command; 3] {
    [
        command(json!(["GET", "urn:oma:mo:oma-dm-devinfo:1.2//FwV"])),
        command(json!(["DELETE", "urn:oma:mo:oma-scomo:1.0/SCOMO1/Download/Package1"])),
        command(json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/DownloadAndUpdate", "https://dm.example.com/alerts/fumo"])),
    ]
}

/// A device seen before: it listed its MOs once, and its inventory was read an hour before `now`, so
/// a session with nothing queued asks for nothing.
fn known_device(now: Millis) -> Device {
    let package1 = InitiationPackage::from_json(&json!({"MOS": [
        {"DDF": "http://www.vendor.com/DDF/devinfo1.2.ddf", "MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": [""]},
        {"MOID": "urn:oma:mo:oma-sessioninfomo:1.0", "MIID": [""]},
        {"DDF": "http://www.vendor.com/DDF/fumo1.0.ddf", "MOID": "urn:oma:mo:oma-fumo:1.0", "MIID": ["fw"]},
        {"MOID": "urn:oma:mo:oma-scomo:1.0", "MIID": ["SCOMO1"]}
    ]}))
    .expect("bench Package#1 with MOS");
    let credentials = omadm_core::auth::credentials_for(DEVICE_ID, "omadm", "secret");
    let mut device = Device::new(DEVICE_ID, credentials, now.saturating_sub(30 * 24 * HOUR));
    device.supported_objects = package1.supported_objects.unwrap_or_default();
    device.inventory = Inventory {
        man: Some("Acme".to_owned()),
        model: Some("Meter-9".to_owned()),
        dmv: Some("2.0".to_owned()),
        lang: Some("en-US".to_owned()),
        dev_type: Some("meter".to_owned()),
        oem: Some("Acme OEM".to_owned()),
        fwv: Some(OLD_FIRMWARE.to_owned()),
        swv: Some("5.1".to_owned()),
        hwv: Some("rev B".to_owned()),
        bearer: Some("mobile".to_owned()),
        roaming: Some(false),
        updated_at: Some(now.saturating_sub(HOUR)),
    };
    device.last_session_id = Some("previous-session".to_owned());
    device.updated_at = now.saturating_sub(HOUR);
    device
}

/// The mirror the inventory GETs left: DevInfo, SessionInfo and the FUMO instance, as the store keeps it.
fn known_mirror(now: Millis) -> MirrorRecord {
    let documents = json!([
        {"MOID": "urn:oma:mo:oma-dm-devinfo:1.2", "MIID": "", "MOData": {
            "DevID": DEVICE_ID, "Man": "Acme", "Mod": "Meter-9", "DmV": "2.0", "Lang": "en-US",
            "DevType": "meter", "OEM": "Acme OEM", "FwV": OLD_FIRMWARE, "SwV": "5.1", "HwV": "rev B"}},
        {"MOID": "urn:oma:mo:oma-sessioninfomo:1.0", "MIID": "", "MOData": {"CBT": 1, "ROAMING": 0}},
        {"MOID": "urn:oma:mo:oma-fumo:1.0", "MIID": "fw", "MOData": {
            "PkgName": "base", "PkgVersion": OLD_FIRMWARE, "State": 10,
            "Download": {"PkgURL": ""}, "Update": {}, "DownloadAndUpdate": {"PkgURL": ""}}}
    ]);
    let tree = ManagementTree::from_dmmo_json(&documents, TreeLimits::default()).expect("bench mirror tree");
    MirrorRecord { tree: tree.to_dmmo_json(), validators: Default::default(), updated_at: now.saturating_sub(HOUR) }
}

fn cont() -> Command {
    command(json!(["CONT", format!("{PUBLIC_URL}/dm/s/{SESSION_ID}")]))
}

/// The Package#2 a session with the operator commands queued opens with.
fn package2_commands() -> Vec<Command> {
    let mut commands = vec![cont()];
    commands.extend(operator_commands());
    commands
}

/// The device's answer to [`package2_commands`]: statuses for CONT and the three commands (EXEC accepted
/// for later), with the GET's value as an Appendix E part, as `(Content-Type, body)`.
fn package3_body() -> (String, Vec<u8>) {
    let statuses = [StatusCode::OK, StatusCode::OK, StatusCode::OK, StatusCode::ACCEPTED];
    let package = ResponsePackage::new(statuses.into_iter().map(CommandStatus::new).collect());
    let parts = vec![GetResultPart::new(2, "text/plain", NEW_FIRMWARE)];
    let encoded = omadm_proto::multipart::encode_response(&package, &parts, &derive_boundary(&parts))
        .expect("bench Package#3 encodes");
    (encoded.content_type, encoded.body)
}

fn decoded_package3() -> MultipartResponse {
    let (content_type, body) = package3_body();
    decode_response(&content_type, &body, &MultipartLimits::default()).expect("bench Package#3 decodes")
}

/// The record of a queued command once a Package#2 of `session_id` carried it.
fn sent_record(id: u64, command: Command, session_id: &str, now: Millis) -> CommandRecord {
    let new = NewCommand { command, origin: CommandOrigin::Operator, campaign_id: None };
    let mut record = CommandRecord::queued(DEVICE_ID, id, new, now.saturating_sub(HOUR));
    record.state = CommandState::Sent;
    record.attempts = 1;
    record.session_id = Some(session_id.to_owned());
    record.updated_at = now.saturating_sub(1_000);
    record
}

fn initiation_context(now: Millis) -> SessionContext {
    SessionContext {
        device: known_device(now),
        mirror: known_mirror(now),
        queued: Vec::new(),
        awaiting: Vec::new(),
        next_alert_id: 1,
        now,
    }
}

/// The session after its first Package#2 ([`package2_commands`]), and the context its Package#3 is stepped in:
/// nothing else queued, so the answer is END.
fn package3_context_and_state(now: Millis) -> (SessionContext, SessionState) {
    let records: Vec<CommandRecord> =
        (1u64..).zip(operator_commands()).map(|(id, command)| sent_record(id, command, SESSION_ID, now)).collect();
    let mut awaiting = vec![SentCommand { command_id: None, command: cont() }];
    awaiting.extend(
        records.iter().map(|record| SentCommand { command_id: Some(record.id), command: record.command.clone() }),
    );
    let state = SessionState {
        id: SESSION_ID.to_owned(),
        device_id: DEVICE_ID.to_owned(),
        started_at: now.saturating_sub(2_000),
        last_activity: now.saturating_sub(1_000),
        packages: 1,
        awaiting,
        ended: false,
        commands_answered: 0,
        replay: None,
    };
    let context = SessionContext { awaiting: records, ..initiation_context(now) };
    (context, state)
}

fn package3_decode(criterion: &mut Criterion) {
    let (content_type, body) = package3_body();
    let limits = MultipartLimits::default();
    let decoded = decode_response(&content_type, &body, &limits);
    assert!(
        decoded.is_ok_and(|response| response.package.statuses.len() == 4 && response.parts.len() == 1),
        "the bench Package#3 must decode to 4 statuses and 1 part"
    );
    criterion.bench_function("package3/decode", |bencher| {
        bencher.iter(|| black_box(decode_response(black_box(&content_type), black_box(&body), &limits)));
    });
}

fn session_step(criterion: &mut Criterion) {
    let config = config();
    let initiation = || {
        let event =
            SessionEvent::Initiation { session_id: SESSION_ID.to_owned(), package: InitiationPackage::default() };
        (initiation_context(NOW), event)
    };
    let (context, state) = package3_context_and_state(NOW);
    let response = decoded_package3();
    let package3 = || (context.clone(), SessionEvent::Response { state: state.clone(), response: response.clone() });

    let (first, event) = initiation();
    let stepped = step(&config, first, event).expect("the bench Package#1 steps");
    assert!(stepped.ended, "a known device with fresh inventory and nothing queued ends at once");
    assert_eq!(stepped.reply.map(|reply| reply.commands), Some(vec![Command::End]));
    let (first, event) = package3();
    let stepped = step(&config, first, event).expect("the bench Package#3 steps");
    assert!(stepped.ended && stepped.batch.commands.len() == 3, "the Package#3 answers all 3 commands and ends");

    // Step takes its inputs by value: each iteration gets fresh clones, made outside the timing.
    let mut group = criterion.benchmark_group("session/step");
    group.bench_function("initiation_end", |bencher| {
        bencher.iter_batched(
            initiation,
            |(context, event)| black_box(step(&config, context, event)),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("package3_end", |bencher| {
        bencher.iter_batched(
            package3,
            |(context, event)| black_box(step(&config, context, event)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn package2_build_and_serialize(criterion: &mut Criterion) {
    let cont_and_commands = package2_commands();
    let build = |commands: &[Command]| RequestPackage { commands: commands.to_vec(), alert_statuses: Vec::new() };
    assert!(build(&cont_and_commands).to_json_bytes().is_ok(), "the bench Package#2 must encode");

    // Built from the commands as the step holds them (cloned out of the session's awaiting list).
    let mut group = criterion.benchmark_group("package2/build_and_serialize");
    group.bench_function("cont_and_3_commands", |bencher| {
        bencher.iter(|| black_box(build(black_box(&cont_and_commands)).to_json_bytes()));
    });
    group.bench_function("end", |bencher| {
        bencher.iter(|| black_box(RequestPackage::new(black_box(vec![Command::End])).to_json_bytes()));
    });
    group.finish();
}

/// The embedded store in a temp dir, with the known device and its mirror committed.
struct BenchStore {
    runtime: tokio::runtime::Runtime,
    store: EmbeddedStore,
    /// Gives every step a session id of its own: events are keyed by it, and the outbox keeps one per id.
    sessions: u64,
    _directory: tempfile::TempDir,
}

impl BenchStore {
    fn open() -> BenchStore {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let directory = tempfile::tempdir().expect("temp dir for the store");
        let store = runtime.block_on(EmbeddedStore::open(directory.path())).expect("embedded store opens");
        let now = now_millis();
        let batch = WriteBatch {
            devices: vec![known_device(now)],
            mirrors: vec![(DEVICE_ID.to_owned(), known_mirror(now))],
            ..WriteBatch::default()
        };
        runtime.block_on(store.commit(batch)).expect("the bench device is stored");
        BenchStore { runtime, store, sessions: 0, _directory: directory }
    }

    fn next_session_id(&mut self) -> String {
        self.sessions += 1;
        format!("{:032x}", self.sessions)
    }

    /// What the driver does before a step: load under the device's lease.
    async fn load(&self, awaiting: &[u64], now: Millis) -> Result<SessionSnapshot, String> {
        let request =
            LeaseRequest { node_id: NODE_ID.to_owned(), ttl: LEASE_TTL, live_nodes: vec![NODE_ID.to_owned()], now };
        let limit = config().max_commands_per_package;
        match self.store.load_session(DEVICE_ID, awaiting, limit, &request).await {
            Ok(SessionLoad::Loaded(snapshot)) => Ok(*snapshot),
            other => Err(format!("the bench device did not load: {other:?}")),
        }
    }

    /// A step over a loaded snapshot, its batch fenced as the driver's `commit_step` fences it.
    fn step(snapshot: SessionSnapshot, event: SessionEvent, now: Millis) -> Step {
        let SessionSnapshot { lease, device, mirror, queued, awaiting, next_alert_id } = snapshot;
        let context = SessionContext { device, mirror, queued, awaiting, next_alert_id, now };
        let mut stepped = step(&config(), context, event).expect("the bench step");
        stepped.batch.fence = Some(Fence::of(&lease, LEASE_TTL, stepped.ended));
        stepped
    }

    /// The batch of a Package#1 of the known device with nothing queued: END at once.
    fn initiation_batch(&mut self) -> WriteBatch {
        let session_id = self.next_session_id();
        let now = now_millis();
        let snapshot = self.runtime.block_on(self.load(&[], now)).expect("load for Package#1");
        let event = SessionEvent::Initiation { session_id, package: InitiationPackage::default() };
        let stepped = Self::step(snapshot, event, now);
        assert!(stepped.ended, "nothing queued: the Package#1 ends the session");
        stepped.batch
    }

    /// The batch of the Package#3 of a session opened over the three queued operator commands: the session
    /// before it is played through the store for real, so the batch replaces records the store holds.
    fn package3_batch(&mut self, response: &MultipartResponse) -> WriteBatch {
        let session_id = self.next_session_id();
        let now = now_millis();
        let commands = operator_commands()
            .into_iter()
            .map(|command| NewCommand { command, origin: CommandOrigin::Operator, campaign_id: None })
            .collect();
        self.runtime.block_on(self.store.enqueue_commands(DEVICE_ID, commands, now)).expect("enqueue");
        let snapshot = self.runtime.block_on(self.load(&[], now)).expect("load for Package#1");
        let event = SessionEvent::Initiation { session_id, package: InitiationPackage::default() };
        let opened = Self::step(snapshot, event, now);
        let state = opened.batch.sessions.first().cloned().expect("the Package#1 opens the session");
        self.runtime.block_on(self.store.commit(opened.batch)).expect("commit of the Package#1 step");

        let awaiting: Vec<u64> = state.awaiting.iter().filter_map(|sent| sent.command_id).collect();
        let snapshot = self.runtime.block_on(self.load(&awaiting, now)).expect("load for Package#3");
        let event = SessionEvent::Response { state, response: response.clone() };
        let stepped = Self::step(snapshot, event, now);
        assert!(stepped.ended && stepped.batch.commands.len() == 3, "the Package#3 answers all 3 and ends");
        stepped.batch
    }

    /// Times the commit of each of `iterations` batches; the rest (loads, steps, earlier steps) is not timed.
    fn time_commits(&mut self, iterations: u64, mut batch: impl FnMut(&mut Self) -> WriteBatch) -> Duration {
        let mut elapsed = Duration::ZERO;
        for _ in 0..iterations {
            let batch = batch(self);
            let started = Instant::now();
            let committed = self.runtime.block_on(self.store.commit(batch));
            elapsed += started.elapsed();
            committed.expect("the bench commit");
        }
        self.runtime.block_on(self.drain_outbox()).expect("outbox drained");
        elapsed
    }

    /// Acknowledges every committed event, as the relay would, so the outbox stays as small as on a live server.
    async fn drain_outbox(&self) -> Result<(), omadm_core::store::StoreError> {
        loop {
            let events = self.store.outbox(0, 1_000).await?;
            if events.is_empty() {
                return Ok(());
            }
            let ids: Vec<String> = events.into_iter().map(|event| event.id).collect();
            self.store.ack_outbox(0, &ids).await?;
        }
    }
}

fn store_embedded_commit(criterion: &mut Criterion) {
    let mut store = BenchStore::open();
    let response = decoded_package3();
    let mut group = criterion.benchmark_group("store/embedded_commit");
    group.bench_function("initiation_end", |bencher| {
        bencher.iter_custom(|iterations| store.time_commits(iterations, BenchStore::initiation_batch));
    });
    group.bench_function("package3_end", |bencher| {
        bencher.iter_custom(|iterations| store.time_commits(iterations, |store| store.package3_batch(&response)));
    });
    group.finish();
}

criterion_group!(benches, package3_decode, session_step, package2_build_and_serialize, store_embedded_commit);
criterion_main!(benches);
