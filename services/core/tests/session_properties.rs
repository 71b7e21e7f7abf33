//! Property: whatever the device answers, refuses to answer, or however often sessions expire and restart, every command is in exactly one state and none is lost or changed after it is final.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod session_support;

use std::collections::{BTreeMap, BTreeSet};

use omadm_core::model::{CommandId, CommandRecord, CommandState};
use omadm_core::session::SessionConfig;
use omadm_proto::multipart::{GetResultPart, MultipartResponse};
use omadm_proto::package::{CommandStatus, InitiationPackage, ResponsePackage};
use omadm_proto::status::StatusCode;
use proptest::prelude::*;
use serde_json::json;
use session_support::*;

const CODES: [u16; 9] = [200, 201, 204, 304, 400, 403, 404, 500, 1200];

#[derive(Debug, Clone)]
enum Action {
    /// The device opens a session (an open one is expired first: a device runs one at a time).
    NewSession,
    /// The device answers the last Package#2, each status picked by a seed.
    Answer(Vec<usize>),
    /// The device answers with one status too many or too few.
    WrongCount(bool),
    /// The open session goes silent past its timeout.
    Expire,
    /// The operator queues more commands meanwhile.
    Enqueue(usize),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => Just(Action::NewSession),
        6 => proptest::collection::vec(0usize..CODES.len(), 12).prop_map(Action::Answer),
        1 => any::<bool>().prop_map(Action::WrongCount),
        2 => Just(Action::Expire),
        1 => (1usize..4).prop_map(Action::Enqueue),
    ]
}

fn queued_commands(count: usize, offset: usize) -> Vec<serde_json::Value> {
    (0..count)
        .map(|index| match (index + offset) % 4 {
            0 => json!(["GET", format!("{FUMO}/fw/State")]),
            1 => json!(["EXEC", format!("{FUMO}/fw/Update")]),
            2 => json!(["HGET", "https://dm.example.com/repo/cfg"]),
            _ => json!(["DELETE", format!("{FUMO}/fw/PkgName")]),
        })
        .collect()
}

/// The Package#3 a device sends for the open session, with GET data where a GET answered 200.
fn answer(world: &World, session_id: &str, seeds: &[usize]) -> MultipartResponse {
    let awaiting = &world.sessions[session_id].awaiting;
    let mut statuses = Vec::new();
    let mut parts = Vec::new();
    for (position, (sent, seed)) in (1usize..).zip(awaiting.iter().zip(seeds.iter().cycle())) {
        let code = StatusCode::new(CODES[*seed]).unwrap();
        if sent.command.is_get() && code == StatusCode::OK {
            parts.push(GetResultPart::new(position, "text/plain", format!("value {position}")));
        }
        statuses.push(CommandStatus::new(code));
    }
    MultipartResponse { package: ResponsePackage::new(statuses), parts }
}

struct Run {
    config: SessionConfig,
    world: World,
    open: Option<String>,
    sessions_started: usize,
    enqueued: usize,
    finals: BTreeMap<CommandId, CommandRecord>,
}

impl Run {
    fn new_session(&mut self) {
        if let Some(open) = self.open.take() {
            self.world.expire(&self.config, &open).unwrap();
        }
        self.sessions_started += 1;
        let session_id = format!("s{}", self.sessions_started);
        self.world.now += 1_000;
        let step = self.world.initiate(&self.config, &session_id, InitiationPackage::default());
        if !step.ended {
            self.open = Some(session_id);
        }
    }

    fn act(&mut self, action: &Action) {
        self.world.now += 500;
        match action {
            Action::NewSession => self.new_session(),
            Action::Answer(seeds) => {
                let Some(open) = self.open.clone() else { return };
                let response = answer(&self.world, &open, seeds);
                let step = self.world.respond(&self.config, &open, response).unwrap();
                if step.ended {
                    self.open = None;
                }
            }
            Action::WrongCount(more) => {
                let Some(open) = self.open.clone() else { return };
                let expected = self.world.sessions[&open].awaiting.len();
                let count = if *more { expected + 1 } else { expected - 1 };
                let before = (self.world.commands.clone(), self.world.sessions.clone(), self.world.events.len());
                let refused = self.world.respond(&self.config, &open, statuses(&vec![500; count]));
                assert!(refused.is_err());
                assert_eq!(before, (self.world.commands.clone(), self.world.sessions.clone(), self.world.events.len()));
            }
            Action::Expire => {
                if let Some(open) = self.open.take() {
                    self.world.now += self.config.session_timeout;
                    self.world.expire(&self.config, &open).unwrap();
                }
            }
            Action::Enqueue(count) => {
                let commands = queued_commands(*count, self.enqueued);
                self.enqueued += self.world.enqueue(&commands).len();
            }
        }
        self.check();
    }

    fn check(&mut self) {
        let world = &self.world;
        let ids: Vec<CommandId> = world.commands.keys().copied().collect();
        assert_eq!(ids, (1..=self.enqueued as CommandId).collect::<Vec<_>>(), "no command lost or invented");

        let awaited: BTreeSet<CommandId> = self
            .open
            .as_ref()
            .map(|open| world.sessions[open].awaiting.iter().filter_map(|sent| sent.command_id).collect())
            .unwrap_or_default();
        for record in world.commands.values() {
            match record.state {
                CommandState::Sent => {
                    assert!(awaited.contains(&record.id), "sent #{} must be awaited by the open session", record.id);
                    assert_eq!(record.session_id, self.open);
                }
                CommandState::Queued => {
                    assert!(!awaited.contains(&record.id));
                    assert!(record.attempts < self.config.max_attempts, "a queued command has attempts left");
                }
                _ => assert!(!awaited.contains(&record.id)),
            }
            assert!(record.attempts <= self.config.max_attempts);
            let results = world
                .events_of_type("command.result")
                .into_iter()
                .filter(|event| event.payload["command_id"] == json!(record.id))
                .count();
            assert_eq!(results, usize::from(record.state.is_final()), "one result per final command, #{}", record.id);
            if record.state.is_final() {
                let first_seen = self.finals.entry(record.id).or_insert_with(|| record.clone());
                assert_eq!(first_seen, record, "a final command never changes again");
            }
        }
        for id in &awaited {
            assert_eq!(world.commands[id].state, CommandState::Sent);
        }
        let event_ids: BTreeSet<&str> = world.events.iter().map(|event| event.id.as_str()).collect();
        assert_eq!(event_ids.len(), world.events.len(), "event ids are unique");
        for session in world.sessions.values() {
            assert_eq!(session.ended, Some(&session.id) != self.open.as_ref(), "only the open session is not ended");
        }
    }

    /// The device keeps coming back and answers everything 200: the queue drains.
    fn drain(&mut self) {
        for _ in 0..200 {
            if self.world.commands.values().all(|record| record.state.is_final()) {
                return;
            }
            if self.open.is_none() {
                self.new_session();
                self.check();
            } else {
                self.act(&Action::Answer(vec![0]));
            }
        }
        panic!("the queue did not drain");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_command_stays_in_exactly_one_state_and_none_is_lost(
        initial in 1usize..8,
        max_per_package in 1usize..4,
        max_attempts in 1u32..4,
        inventory_every_session in any::<bool>(),
        actions in proptest::collection::vec(action(), 0..40),
    ) {
        let mut config = config();
        config.max_commands_per_package = max_per_package;
        config.max_attempts = max_attempts;
        config.inventory_max_age = if inventory_every_session { 0 } else { u64::MAX };
        let mut world = World::new();
        world.device.inventory.updated_at = Some(START);
        let enqueued = world.enqueue(&queued_commands(initial, 0)).len();
        let mut run = Run { config, world, open: None, sessions_started: 0, enqueued, finals: BTreeMap::new() };
        run.check();
        for action in &actions {
            run.act(action);
        }
        run.drain();
        run.check();
        let sent_commands = run.world.commands.values().filter(|record| record.attempts > 0).count();
        prop_assert_eq!(sent_commands, run.world.commands.len(), "every command was sent at least once");
    }
}
