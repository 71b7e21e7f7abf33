//! HPUT (5.4.2): uploads the MO data the ClientURIs name (the whole readable tree when none is given) to the
//! ServerURI as one dmmo+json array, with HTTP PUT. HPOST shares the upload with POST.

use omadm_proto::command::Hput;
use omadm_proto::mo::Operation;
use omadm_proto::package::media::DMMO_JSON;
use omadm_proto::status::StatusCode;
use omadm_proto::tree::DmmoDocument;
use omadm_proto::uri::{ClientUri, ServerUri};
use reqwest::Method;
use serde_json::Value;

use super::{CommandContext, CommandOutcome, ensure_default_instance, status_for_http};
use crate::access::check_operation;

/// 200 when the repository took the data; the first ClientURI's failure (404, 403) otherwise.
pub async fn execute(context: &mut CommandContext<'_>, hput: &Hput) -> CommandOutcome {
    upload(context, Method::PUT, hput.server_uri(), hput.client_uris()).await
}

/// The documents the ClientURIs name, as one JSON array.
pub fn collect_documents(context: &CommandContext<'_>, client_uris: &[ClientUri]) -> Result<Value, StatusCode> {
    let device = &*context.device;
    let mut documents = Vec::new();
    if client_uris.is_empty() {
        for instance in device.tree.instances() {
            if check_operation(device, instance.moid(), instance.miid(), Operation::Read).is_ok() {
                documents.push(DmmoDocument::from_instance(instance).to_json());
            }
        }
        return Ok(Value::Array(documents));
    }
    for uri in client_uris {
        let nodes = device.tree.resolve(uri).map_err(|error| error.status_code())?;
        for node in nodes {
            check_operation(device, node.moid(), node.miid(), Operation::Read)?;
            documents.push(node.to_dmmo(uri.query.level).to_json());
        }
    }
    Ok(Value::Array(documents))
}

/// Collects, then sends with `method` and HTTP authentication.
pub async fn upload(
    context: &mut CommandContext<'_>,
    method: Method,
    server_uri: &ServerUri,
    client_uris: &[ClientUri],
) -> CommandOutcome {
    for uri in client_uris {
        ensure_default_instance(context, &uri.moid).await;
    }
    let documents = match collect_documents(context, client_uris) {
        Ok(documents) => documents,
        Err(code) => return CommandOutcome::status(code),
    };
    let Ok(body) = serde_json::to_vec(&documents) else { return CommandOutcome::status(StatusCode::INTERNAL_ERROR) };
    let url = server_uri.substitute(&context.device.server_uri_params());
    match context.transport.send_authenticated(method, &url, Some(DMMO_JSON), None, body).await {
        Ok(reply) if (200..300).contains(&reply.status) => CommandOutcome::status(StatusCode::OK),
        Ok(reply) => {
            tracing::warn!(url, status = reply.status, "upload refused");
            CommandOutcome::status(status_for_http(reply.status))
        }
        Err(error) => {
            tracing::warn!(url, %error, "upload failed");
            CommandOutcome::status(StatusCode::INTERNAL_ERROR)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::tests::offline_transport;

    #[test]
    fn documents_are_collected_per_client_uri() {
        let mut device = crate::device::tests::sample_device();
        let transport = offline_transport();
        let context = CommandContext { device: &mut device, transport: &transport };
        let uris = vec![
            ClientUri::parse("urn:oma:mo:oma-dm-devinfo:1.2//FwV").unwrap(),
            ClientUri::parse("urn:oma:mo:oma-sessioninfomo:1.0//").unwrap(),
        ];
        let documents = collect_documents(&context, &uris).unwrap();
        assert_eq!(documents.as_array().unwrap().len(), 2);
        assert_eq!(documents[0]["MOData"]["FwV"], "1.0.0");
        let all = collect_documents(&context, &[]).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 4);
        let missing = vec![ClientUri::parse("urn:oma:mo:oma-dm-devinfo:1.2//Nope").unwrap()];
        assert_eq!(collect_documents(&context, &missing), Err(StatusCode::NOT_FOUND));
    }
}
