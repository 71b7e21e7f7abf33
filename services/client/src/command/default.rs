//! DEFAULT (5.4.10): remembers, per MOID, where the default instance comes from; used by just-in-time
//! configuration (10.1) when a later command addresses an MOID without instances.

use omadm_proto::command::Default;
use omadm_proto::status::StatusCode;

use super::{CommandContext, CommandOutcome};

/// Stores the substituted URL for the MOID (replacing an earlier one) and answers 200.
pub fn execute(context: &mut CommandContext<'_>, default: &Default) -> CommandOutcome {
    let url = default.server_uri().substitute(&context.device.server_uri_params());
    context.device.defaults.insert(default.moid().as_str().to_owned(), url);
    CommandOutcome::status(StatusCode::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use omadm_proto::command::Moid;
    use omadm_proto::uri::ServerUri;

    #[test]
    fn default_is_stored_per_moid() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let mut context = CommandContext { device: &mut device, transport: &transport };
        let moid = Moid::parse("urn:oma:mo:oma-scomo:1.0").unwrap();
        let default = Default::new(ServerUri::parse("http://h/repo/scomo/[DevID]").unwrap(), moid);
        assert_eq!(execute(&mut context, &default).code(), StatusCode::OK);
        assert_eq!(device.defaults.get("urn:oma:mo:oma-scomo:1.0").unwrap(), "http://h/repo/scomo/IMEI%3A4930051");
    }
}
