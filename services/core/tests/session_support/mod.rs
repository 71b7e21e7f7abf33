//! Test support for the session machine: an in-memory world that applies each step's WriteBatch as a store would, and a DM client simulated on a real management tree.
//!
//! The world is not a store engine: it holds exactly the records the machine
//! reads and writes, so a test can check every write of every step. The
//! simulated device answers each Package#2 from its own `ManagementTree`
//! (proto's resolution and cache validation) and sends its Package#3 through
//! proto's multipart encoder and decoder, as a real client would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;

use omadm_core::bus::Event;
use omadm_core::clock::Millis;
use omadm_core::model::{
    AlertRecord, CommandId, CommandOrigin, CommandRecord, CommandState, Device, MirrorRecord, SessionState,
    SessionSummary,
};
use omadm_core::session::{SessionConfig, SessionContext, SessionError, SessionEvent, Step, step};
use omadm_core::store::WriteBatch;
use omadm_proto::command::Command;
use omadm_proto::multipart::{
    GetResultPart, MultipartLimits, MultipartResponse, decode_response, derive_boundary, encode_response,
};
use omadm_proto::package::media::DMMO_JSON;
use omadm_proto::package::{Alert, AlertItem, CommandStatus, InitiationPackage, RequestPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{ManagementTree, ReadOutcome, TreeLimits};
use serde_json::{Value, json};

pub const DEVICE_ID: &str = "IMEI:493005100592800";
pub const SESSION_URL_BASE: &str = "https://dm.example.com/dm/s/";
pub const DEVINFO: &str = "urn:oma:mo:oma-dm-devinfo:1.2";
pub const SESSIONINFO: &str = "urn:oma:mo:oma-sessioninfomo:1.0";
pub const FUMO: &str = "urn:oma:mo:oma-fumo:1.0";
pub const HOUR: Millis = 3_600_000;
pub const START: Millis = 1_700_000_000_000;

/// The test kit's session defaults (2 commands per package, 60 s timeout, 24 h inventory age, 3 attempts),
/// accepting plain-text alerts as well as JSON ones.
pub fn config() -> SessionConfig {
    SessionConfig {
        supported_alert_mime_types: vec!["text/plain".to_owned(), "application/json".to_owned()],
        ..omadm_testkit::config::session(SESSION_URL_BASE)
    }
}

pub fn command(wire: Value) -> Command {
    Command::from_json(&wire).expect("test command must be valid")
}

pub fn new_device(now: Millis) -> Device {
    Device::new(DEVICE_ID, omadm_core::auth::credentials_for(DEVICE_ID, "omadm", "secret"), now)
}

/// The DevInfo, SessionInfo and FUMO instances of the simulated device.
pub fn device_tree_json(firmware: &str) -> Value {
    json!([
        {"MOID": DEVINFO, "MIID": "", "MOData": {
            "DevID": DEVICE_ID, "Man": "Acme", "Mod": "Meter-9", "DmV": "2.0", "Lang": "en-US",
            "DevType": "meter", "OEM": "Acme OEM", "FwV": firmware, "SwV": "5.1", "HwV": "rev B"}},
        {"MOID": SESSIONINFO, "MIID": "", "MOData": {"CBT": 1, "ROAMING": 0}},
        {"MOID": FUMO, "MIID": "fw", "MOData": {
            "PkgName": "base", "PkgVersion": firmware, "State": 10,
            "Download": {"PkgURL": ""}, "Update": {}, "DownloadAndUpdate": {"PkgURL": ""}}}
    ])
}

/// Everything the store would hold for one device.
#[derive(Debug, Clone)]
pub struct World {
    pub device: Device,
    pub mirror: MirrorRecord,
    pub commands: BTreeMap<CommandId, CommandRecord>,
    pub sessions: BTreeMap<String, SessionState>,
    pub summaries: Vec<SessionSummary>,
    pub alerts: Vec<AlertRecord>,
    pub events: Vec<Event>,
    pub now: Millis,
}

impl World {
    pub fn new() -> Self {
        World {
            device: new_device(START),
            mirror: MirrorRecord::default(),
            commands: BTreeMap::new(),
            sessions: BTreeMap::new(),
            summaries: Vec::new(),
            alerts: Vec::new(),
            events: Vec::new(),
            now: START,
        }
    }

    /// Queues commands as the API would: ids from 1 in order.
    pub fn enqueue(&mut self, commands: &[Value]) -> Vec<CommandId> {
        let mut ids = Vec::new();
        for wire in commands {
            let id = self.commands.keys().next_back().copied().unwrap_or(0) + 1;
            self.commands.insert(
                id,
                CommandRecord {
                    id,
                    device_id: DEVICE_ID.to_owned(),
                    command: command(wire.clone()),
                    origin: CommandOrigin::Operator,
                    campaign_id: None,
                    state: CommandState::Queued,
                    status: None,
                    extra: Vec::new(),
                    data: None,
                    session_id: None,
                    attempts: 0,
                    created_at: self.now,
                    updated_at: self.now,
                },
            );
            ids.push(id);
        }
        ids
    }

    /// What the gateway loads before a step: the queue head and the awaited records of `state`.
    pub fn context(&self, config: &SessionConfig, state: Option<&SessionState>) -> SessionContext {
        let queued = self
            .commands
            .values()
            .filter(|record| record.state == CommandState::Queued)
            .take(config.max_commands_per_package.max(1) * 2)
            .cloned()
            .collect();
        let awaiting = state
            .map(|state| {
                state
                    .awaiting
                    .iter()
                    .filter_map(|sent| sent.command_id)
                    .filter_map(|id| self.commands.get(&id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        SessionContext {
            device: self.device.clone(),
            mirror: self.mirror.clone(),
            queued,
            awaiting,
            next_alert_id: self.alerts.last().map_or(1, |alert| alert.id + 1),
            now: self.now,
        }
    }

    /// Applies a batch as a store commits it.
    pub fn apply(&mut self, batch: WriteBatch) {
        for device in batch.devices {
            self.device = device;
        }
        for session in batch.sessions {
            self.sessions.insert(session.id.clone(), session);
        }
        self.summaries.extend(batch.ended_sessions);
        for record in batch.commands {
            assert!(self.commands.contains_key(&record.id), "a batch never invents a command: {}", record.id);
            self.commands.insert(record.id, record);
        }
        for (device_id, mirror) in batch.mirrors {
            assert_eq!(device_id, DEVICE_ID);
            self.mirror = mirror;
        }
        self.alerts.extend(batch.alerts);
        self.events.extend(batch.events);
    }

    pub fn initiate(&mut self, config: &SessionConfig, session_id: &str, package: InitiationPackage) -> Step {
        let context = self.context(config, None);
        let event = SessionEvent::Initiation { session_id: session_id.to_owned(), package };
        let step = step(config, context, event).expect("a Package#1 is always accepted");
        self.apply(step.batch.clone());
        step
    }

    pub fn respond(
        &mut self,
        config: &SessionConfig,
        session_id: &str,
        response: MultipartResponse,
    ) -> Result<Step, SessionError> {
        let state = self.sessions.get(session_id).cloned().expect("session must exist");
        let context = self.context(config, Some(&state));
        let step = step(config, context, SessionEvent::Response { state, response })?;
        self.apply(step.batch.clone());
        Ok(step)
    }

    pub fn expire(&mut self, config: &SessionConfig, session_id: &str) -> Result<Step, SessionError> {
        let state = self.sessions.get(session_id).cloned().expect("session must exist");
        let context = self.context(config, Some(&state));
        let step = step(config, context, SessionEvent::Expiry { state })?;
        self.apply(step.batch.clone());
        Ok(step)
    }

    pub fn state_of(&self, id: CommandId) -> CommandState {
        self.commands.get(&id).map(|record| record.state).expect("command must exist")
    }

    pub fn events_of_type(&self, event_type: &str) -> Vec<&Event> {
        self.events.iter().filter(|event| event.event_type == event_type).collect()
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A DM client answering from its own management tree.
#[derive(Debug, Clone)]
pub struct SimulatedDevice {
    pub tree: ManagementTree,
    /// Send a single leaf as `text/plain` instead of dmmo+json.
    pub leaves_as_text: bool,
    /// Alert items to raise in the next Package#3.
    pub pending_alerts: Vec<AlertItem>,
    /// Where an HGET without ClientURI stores its data.
    pub hget_location: String,
}

impl SimulatedDevice {
    pub fn new(tree_json: &Value) -> Self {
        SimulatedDevice {
            tree: ManagementTree::from_dmmo_json(tree_json, TreeLimits::default()).expect("device tree must load"),
            leaves_as_text: false,
            pending_alerts: Vec::new(),
            hget_location: "urn:oma:mo:oma-cfg:1.0/c7/".to_owned(),
        }
    }

    /// The statuses and GET results for a Package#2, through the Appendix E
    /// encoder and decoder. `None` when the package ends the session.
    pub fn answer(&mut self, package: &RequestPackage) -> Option<MultipartResponse> {
        if package.ends_session() {
            return None;
        }
        let mut statuses = Vec::new();
        let mut parts = Vec::new();
        for (position, command) in (1usize..).zip(&package.commands) {
            let status = match command {
                Command::Get(get) => match self.tree.read(get.client_uri()) {
                    Ok(ReadOutcome::NotModified) => CommandStatus::new(StatusCode::NOT_MODIFIED),
                    Ok(ReadOutcome::Nodes(nodes)) => {
                        let level = get.client_uri().query.level;
                        let single_leaf = match nodes.as_slice() {
                            [node] => node.node().as_leaf().map(|leaf| leaf.text_form().into_owned()),
                            _ => None,
                        };
                        match single_leaf {
                            Some(text) if self.leaves_as_text => {
                                parts.push(GetResultPart::new(position, "text/plain", text.into_bytes()));
                            }
                            _ => {
                                let mut documents: Vec<Value> =
                                    nodes.iter().map(|node| node.to_dmmo(level).to_json()).collect();
                                let body = if documents.len() == 1 {
                                    documents.pop().unwrap_or_default()
                                } else {
                                    Value::Array(documents)
                                };
                                let bytes = serde_json::to_vec(&body).expect("JSON encodes");
                                parts.push(GetResultPart::new(position, DMMO_JSON, bytes));
                            }
                        }
                        CommandStatus::new(StatusCode::OK)
                    }
                    Err(error) => CommandStatus::new(error.status_code()),
                },
                Command::Hget(hget) if hget.client_uri().is_none() => {
                    CommandStatus::with_location(StatusCode::CREATED, self.hget_location.clone())
                }
                Command::Delete(delete) => {
                    let uri = delete.client_uri();
                    let miid = match &uri.instance {
                        omadm_proto::uri::InstanceSelector::Miid(miid) => miid.clone(),
                        _ => String::new(),
                    };
                    let path: Vec<String> = uri
                        .path
                        .iter()
                        .map(|segment| match segment {
                            omadm_proto::uri::NodeSelector::Name(name) => name.clone(),
                            _ => String::new(),
                        })
                        .collect();
                    match self.tree.instance_mut(&uri.moid, &miid).map(|instance| instance.delete_node(&path)) {
                        Some(Ok(_)) => CommandStatus::new(StatusCode::OK),
                        _ => CommandStatus::new(StatusCode::NOT_FOUND),
                    }
                }
                _ => CommandStatus::new(StatusCode::OK),
            };
            statuses.push(status);
        }
        let mut response = ResponsePackage::new(statuses);
        if !self.pending_alerts.is_empty() {
            response.alert = Some(Alert::new(std::mem::take(&mut self.pending_alerts)));
        }
        Some(round_trip(&response, &parts))
    }
}

/// Encodes a Package#3 as a client sends it and decodes it as the gateway reads it.
pub fn round_trip(package: &ResponsePackage, parts: &[GetResultPart]) -> MultipartResponse {
    let boundary = derive_boundary(parts);
    let encoded = encode_response(package, parts, &boundary).expect("the test Package#3 encodes");
    decode_response(&encoded.content_type, &encoded.body, &MultipartLimits::default())
        .expect("the test Package#3 decodes")
}

/// A plain Package#3 of these codes, no parts.
pub fn statuses(codes: &[u16]) -> MultipartResponse {
    let statuses = codes.iter().map(|code| CommandStatus::new(StatusCode::new(*code).expect("valid code"))).collect();
    MultipartResponse { package: ResponsePackage::new(statuses), parts: Vec::new() }
}

/// The commands of a Package#2 as wire JSON, for readable assertions.
pub fn wire(package: &RequestPackage) -> Vec<Value> {
    package.commands.iter().map(Command::to_json).collect()
}
