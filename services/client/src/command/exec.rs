//! EXEC (5.4.5): runs the executable the device maker registered for the node; with a ServerURI, the Generic
//! Alert the operation produced is posted there when it is done, otherwise it travels in the Package#3.

use omadm_proto::command::Exec;
use omadm_proto::mo::Operation;
use omadm_proto::package::Alert;
use omadm_proto::status::StatusCode;
use reqwest::Method;

use super::{CommandContext, CommandOutcome, ensure_default_instance, target_of};
use crate::access::check_operation;

/// The media type of a Generic Alert posted on its own (`{"Alert": {"Items": [...]}}`).
pub const ALERT_MESSAGE_TYPE: &str = "application/json";

/// The executable's status; 404 for no node, 405 for a node nothing executes, 403 without the right.
pub async fn execute(context: &mut CommandContext<'_>, exec: &Exec) -> CommandOutcome {
    ensure_default_instance(context, &exec.client_uri().moid).await;
    let device = &*context.device;
    let target = match target_of(&device.tree, exec.client_uri()) {
        Ok(target) if target.exists => target,
        Ok(_) => return CommandOutcome::status(StatusCode::NOT_FOUND),
        Err(code) => return CommandOutcome::status(code),
    };
    if let Err(code) = check_operation(device, &target.moid, &target.miid, Operation::Execute) {
        return CommandOutcome::status(code);
    }
    let node_uri = format!("{}/{}/{}", target.moid, target.miid, target.path.join("/"));
    let Some(executable) = device.executable(&node_uri) else {
        return CommandOutcome::status(StatusCode::COMMAND_NOT_ALLOWED);
    };
    let result = executable.execute(&node_uri).await;
    let mut outcome = CommandOutcome::status(result.status);
    let Some(mut alert) = result.alert else { return outcome };
    if alert.source_uri.is_none() {
        alert.source_uri = Some(node_uri);
    }
    match exec.server_uri() {
        Some(server_uri) => {
            let url = server_uri.substitute(&context.device.server_uri_params());
            let Ok(body) = Alert::new(vec![alert.clone()]).to_message_bytes() else { return outcome };
            match context.transport.send_authenticated(Method::POST, &url, Some(ALERT_MESSAGE_TYPE), None, body).await {
                Ok(reply) if (200..300).contains(&reply.status) => {}
                // Not delivered: keep it for the Package#3 rather than lose the result.
                Ok(reply) => {
                    tracing::warn!(url, status = reply.status, "Generic Alert refused; sent in the Package#3");
                    outcome.alerts.push(alert);
                }
                Err(error) => {
                    tracing::warn!(url, %error, "Generic Alert not posted; sent in the Package#3");
                    outcome.alerts.push(alert);
                }
            }
        }
        None => outcome.alerts.push(alert),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;
    use crate::device::{ExecOutcome, ExecutableNode};
    use omadm_proto::package::AlertItem;
    use omadm_proto::uri::ClientUri;
    use std::sync::Arc;

    struct Reboot;
    #[async_trait::async_trait]
    impl ExecutableNode for Reboot {
        async fn execute(&self, _client_uri: &str) -> ExecOutcome {
            ExecOutcome { status: StatusCode::ACCEPTED, alert: Some(AlertItem::new("urn:example:at:rebooted")) }
        }
    }

    async fn run(device: &mut crate::device::Device, uri: &str) -> CommandOutcome {
        let transport = offline_transport();
        let mut context = CommandContext { device, transport: &transport };
        execute(&mut context, &Exec::new(ClientUri::parse(uri).unwrap(), None).unwrap()).await
    }

    #[tokio::test]
    async fn exec_runs_registered_nodes_only() {
        let mut device = crate::device::tests::sample_device();
        device.store("urn:oma:mo:example:1.0", "", serde_json::json!({"Reboot": null})).unwrap();
        assert_eq!(run(&mut device, "urn:oma:mo:example:1.0//Reboot").await.code(), StatusCode::COMMAND_NOT_ALLOWED);
        device.register_executable("urn:oma:mo:example:1.0//Reboot", Arc::new(Reboot));
        let outcome = run(&mut device, "urn:oma:mo:example:1.0//Reboot").await;
        assert_eq!(outcome.code(), StatusCode::ACCEPTED);
        assert_eq!(outcome.alerts.len(), 1);
        assert_eq!(outcome.alerts[0].source_uri.as_deref(), Some("urn:oma:mo:example:1.0//Reboot"));
        assert_eq!(run(&mut device, "urn:oma:mo:example:1.0//Nope").await.code(), StatusCode::NOT_FOUND);
        assert_eq!(run(&mut device, "urn:oma:mo:oma-dm-dmacc:2.0/dms1/Name").await.code(), StatusCode::FORBIDDEN);
    }
}
