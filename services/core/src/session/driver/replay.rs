//! The retransmission policy, pure: is this Package#3 the one that produced the session's state, sent again?
//!
//! The state keeps the digest of the last Package#3 and the Package#2 it
//! produced (`SessionState::replay`). A device whose Package#2 was lost
//! (possibly with the node that sent it) sends the same Package#3 again and
//! gets that Package#2 again, with no second step. A Package#3 carries no
//! sequence number, and a device may answer two consecutive Package#2s with
//! the same bytes (`[[200], [200]]`), so a digest match alone is not proof
//! (docs/cluster.md, "Retransmitted packages").

use std::time::Instant;

use sha2::{Digest as _, Sha256};

use crate::model::{PackageReplay, SessionState};

/// Where the Package#2 of a session's current state left from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyRoute {
    /// Straight from this process to the device: a Package#3 with as many statuses answers it.
    Direct,
    /// From another node or process, or relayed by a forwarding node, or not yet known here:
    /// it may never have reached the device.
    Elsewhere,
}

/// The digest a Package#3 body is recognised by when the device sends it again.
pub fn package3_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The replay to answer with when a Package#3 of `statuses` statuses whose body has
/// `package3_sha256` is a retransmission of the one that produced `state`; `None` when it is to be stepped.
///
/// The digest must match. When the Package#3 has as many statuses as `state` awaits, it could
/// also be the device's answer to that Package#2 that happens to have the same bytes: it is taken
/// for a retransmission only when that Package#2 left by [`ReplyRoute::Elsewhere`] (which may
/// have died before it reached the device), and once: whoever re-sends the Package#2 takes the
/// next such Package#3 as the answer. The cost of a wrong guess there is one Package#2 run twice
/// by the device (at least once, as after any failover), where the other guess would record
/// statuses against the wrong commands. An ended state awaits nothing: any match is a
/// retransmission of its last Package#3.
pub fn retransmitted<'state>(
    state: &'state SessionState,
    statuses: usize,
    package3_sha256: &str,
    last_reply: ReplyRoute,
) -> Option<&'state PackageReplay> {
    let replay = state.replay.as_ref().filter(|replay| replay.package3_sha256 == package3_sha256)?;
    let could_answer_state = statuses == state.awaiting.len();
    if could_answer_state && last_reply == ReplyRoute::Direct {
        return None;
    }
    Some(replay)
}

/// How the state's last Package#2 left, as seen by a Package#3 received at `received_at`: one
/// received before that Package#2 was produced (`replied_at`) was sent before the device saw it,
/// so it overtook its own original and cannot answer it.
pub fn route_seen_by(last_reply: ReplyRoute, replied_at: Option<Instant>, received_at: Instant) -> ReplyRoute {
    let overtook_reply = replied_at.is_some_and(|replied_at| received_at < replied_at);
    if overtook_reply { ReplyRoute::Elsewhere } else { last_reply }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use omadm_proto::command::Command;

    use super::*;
    use crate::model::SentCommand;

    fn state(awaiting: usize, replay_of: Option<&[u8]>, ended: bool) -> SessionState {
        let command = Command::from_json(&serde_json::json!(["EXEC", "urn:oma:mo:oma-fumo:1.0/fw/Update"])).unwrap();
        SessionState {
            id: "s".to_owned(),
            device_id: "IMEI:1".to_owned(),
            started_at: 0,
            last_activity: 0,
            packages: 2,
            awaiting: (0..awaiting)
                .map(|id| SentCommand { command_id: Some(id as u64), command: command.clone() })
                .collect(),
            ended,
            commands_answered: 0,
            replay: replay_of.map(|body| PackageReplay {
                package3_sha256: package3_digest(body),
                package2: r#"{"CMD":[["EXEC","urn:oma:mo:oma-fumo:1.0/fw/Update"]]}"#.to_owned(),
            }),
        }
    }

    const BODY: &[u8] = br#"{"Status": [[200]]}"#;

    #[test]
    fn another_digest_is_never_a_retransmission() {
        let state = state(1, Some(BODY), false);
        let other = package3_digest(br#"{"Status": [[500]]}"#);
        assert!(retransmitted(&state, 1, &other, ReplyRoute::Elsewhere).is_none());
        assert!(retransmitted(&state, 2, &other, ReplyRoute::Elsewhere).is_none());
        let no_replay = self::state(1, None, false);
        assert!(retransmitted(&no_replay, 2, &package3_digest(BODY), ReplyRoute::Elsewhere).is_none());
    }

    #[test]
    fn a_match_with_another_status_count_is_a_retransmission_from_anywhere() {
        // The state awaits two commands; the Package#3 that produced it had one status.
        let state = state(2, Some(BODY), false);
        let digest = package3_digest(BODY);
        for route in [ReplyRoute::Direct, ReplyRoute::Elsewhere] {
            let replay = retransmitted(&state, 1, &digest, route).unwrap();
            assert!(replay.package2.contains("EXEC"), "{route:?}");
        }
    }

    #[test]
    fn same_bytes_as_a_genuine_answer_are_an_answer_only_when_the_package2_left_straight_from_here() {
        let state = state(1, Some(BODY), false);
        let digest = package3_digest(BODY);
        assert!(retransmitted(&state, 1, &digest, ReplyRoute::Direct).is_none());
        assert!(retransmitted(&state, 1, &digest, ReplyRoute::Elsewhere).is_some());
    }

    #[test]
    fn after_end_any_match_is_a_retransmission() {
        let ended = state(0, Some(BODY), true);
        let digest = package3_digest(BODY);
        assert!(retransmitted(&ended, 1, &digest, ReplyRoute::Elsewhere).is_some());
        assert!(retransmitted(&ended, 1, &digest, ReplyRoute::Direct).is_some());
        // An empty Package#3 could answer an ended state only from here: the stored END is sent again otherwise.
        assert!(retransmitted(&ended, 0, &digest, ReplyRoute::Elsewhere).is_some());
    }

    #[test]
    fn a_package3_received_before_the_reply_was_produced_overtook_it() {
        let received_at = Instant::now();
        let replied_at = received_at + Duration::from_millis(5);
        assert_eq!(route_seen_by(ReplyRoute::Direct, Some(replied_at), received_at), ReplyRoute::Elsewhere);
        assert_eq!(route_seen_by(ReplyRoute::Direct, Some(received_at), replied_at), ReplyRoute::Direct);
        assert_eq!(route_seen_by(ReplyRoute::Direct, None, received_at), ReplyRoute::Direct);
        assert_eq!(route_seen_by(ReplyRoute::Elsewhere, None, received_at), ReplyRoute::Elsewhere);
    }

    #[test]
    fn digests_are_sha256_hex_of_the_body() {
        assert_eq!(package3_digest(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
