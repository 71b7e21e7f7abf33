//! Why the session driver did not answer a package with a Package#2 (or could not expire a session).

use crate::session::SessionError;
use crate::store::StoreError;

/// Why a step was not answered. The HTTP edge maps each to its status in one function.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The Package#3 names a session of another device (403).
    #[error("the session belongs to another device")]
    WrongDevice,
    /// The session has ended (or was never stored as open): only a Package#1 starts over (410).
    #[error("the session has ended: start a new one with a Package#1")]
    SessionGone,
    /// The session was silent past its timeout; it has just been expired (410).
    #[error("the session expired")]
    Expired,
    /// The device was deregistered (410).
    #[error("the device is no longer registered")]
    UnknownDevice,
    /// No session of the device has this id, open or recently ended (404).
    #[error("no such session")]
    UnknownSession,
    /// The session machine refused the package; nothing was written (its `http_status`).
    #[error("{0}")]
    Refused(SessionError),
    /// The server could not encode its own Package#2 (500).
    #[error("the server could not encode its Package#2")]
    Unencodable,
    /// The session machine gave no Package#2 for a package (500).
    #[error("the server has no Package#2 to send")]
    NoReply,
    /// A live node other than this one holds the device's lease: the step belongs there.
    #[error("the device's session is held by node {node_id}; retry")]
    Elsewhere { node_id: String },
    /// The lease moved to another node while the step ran; nothing was written.
    #[error("the device's session moved to another node; retry")]
    Fenced,
    /// The outbox shard of the step's events is full (the bus has been down for long); nothing was written.
    #[error("the outbox is full ({len} events waiting); nothing written")]
    OutboxFull { len: u64 },
    /// A store operation failed (counted under `operation` in `omadm_store_errors_total`).
    #[error("{operation}: {source}")]
    Store { operation: &'static str, source: StoreError },
}

impl DriverError {
    /// The session is another node's now: whatever serves it here must stop.
    pub fn session_moved(&self) -> bool {
        matches!(self, DriverError::Elsewhere { .. } | DriverError::Fenced)
    }

    /// The session is over for good (the device gets 410): whatever serves it here must stop.
    pub fn session_over(&self) -> bool {
        match self {
            DriverError::SessionGone | DriverError::Expired | DriverError::UnknownDevice => true,
            DriverError::Refused(refusal) => refusal.http_status() == 410,
            _ => false,
        }
    }

    /// Nothing could be done now (a backend failed, or the session is held elsewhere): trying again later may succeed.
    pub fn unavailable(&self) -> bool {
        matches!(
            self,
            DriverError::Elsewhere { .. }
                | DriverError::Fenced
                | DriverError::OutboxFull { .. }
                | DriverError::Store { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_failure() {
        assert!(DriverError::Fenced.session_moved());
        assert!(DriverError::Elsewhere { node_id: "n".to_owned() }.session_moved());
        assert!(!DriverError::SessionGone.session_moved());
        assert!(DriverError::Refused(SessionError::Ended).session_over());
        assert!(!DriverError::Refused(SessionError::StatusCountMismatch { expected: 1, received: 2 }).session_over());
        assert!(DriverError::Expired.session_over() && DriverError::UnknownDevice.session_over());
        assert!(!DriverError::WrongDevice.session_over());
        let store = DriverError::Store { operation: "commit", source: StoreError::Unavailable("down".to_owned()) };
        assert!(store.unavailable() && DriverError::OutboxFull { len: 3 }.unavailable());
        assert!(!DriverError::Refused(SessionError::Ended).unavailable());
        assert_eq!(store.to_string(), "commit: store is unavailable: down");
    }
}
