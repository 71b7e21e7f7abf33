//! CONT (5.4.8): the server names the URL the next Package#3 goes to.

use omadm_proto::command::Cont;
use omadm_proto::status::StatusCode;

use super::{CommandContext, CommandOutcome};

/// Answers 200 and carries the substituted URL to the session.
pub fn execute(context: &CommandContext<'_>, cont: &Cont) -> CommandOutcome {
    let mut outcome = CommandOutcome::status(StatusCode::OK);
    outcome.continue_at = Some(cont.server_uri().substitute(&context.device.server_uri_params()));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use omadm_proto::uri::ServerUri;

    #[test]
    fn cont_substitutes_the_device_id() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let context = CommandContext { device: &mut device, transport: &transport };
        let cont = Cont::new(ServerUri::parse("http://h/dm/s/1?d=[DevID]").unwrap());
        let outcome = execute(&context, &cont);
        assert_eq!(outcome.code(), StatusCode::OK);
        assert_eq!(outcome.continue_at.as_deref(), Some("http://h/dm/s/1?d=IMEI%3A4930051"));
    }
}
