//! END (5.4.9): the session is over; the client answers nothing.

use omadm_proto::status::StatusCode;

use super::CommandOutcome;

/// Marks the end of the session; the status is never sent.
pub fn execute() -> CommandOutcome {
    let mut outcome = CommandOutcome::status(StatusCode::OK);
    outcome.ends_session = true;
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn end_ends_the_session() {
        assert!(super::execute().ends_session);
    }
}
