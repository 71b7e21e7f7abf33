//! Access control (11.3) as the operator API applies it: would the device refuse this command?
//!
//! The decision itself is `omadm_core::access` (pure, on the device's DMDAC
//! mirror); this adapter only shapes its answer into the reason of a 403.

use omadm_core::model::MirrorRecord;
use omadm_proto::command::Command;

/// `Some(reason)` when the device's DMDAC rights, as mirrored, would make it refuse `command`
/// from the DM server `server_id`.
pub(super) fn refusal(mirror: Option<&MirrorRecord>, server_id: &str, command: &Command) -> Option<String> {
    // TODO(api): call omadm_core::access once it lands from the session branch.
    let _ = (mirror, server_id, command);
    None
}
