//! The DM commands of 5.4 as a device executes them, one file per command, plus what they share: the outcome of
//! a command, ClientURI targets, just-in-time configuration (10.1) and the mapping of HTTP answers to statuses.
//!
//! Each `execute` takes the [`CommandContext`] (the device and its transport) and the parsed command, and gives
//! the [`CommandOutcome`]: the status for the Package#3, the GET data part, and Generic Alerts to send.
//! Access control (11.3) is checked by each command on the instance it touches, before any change.

pub mod cont;
pub mod default;
pub mod delete;
pub mod end;
pub mod exec;
pub mod get;
pub mod hget;
pub mod hpost;
pub mod hput;
pub mod show;

use omadm_proto::command::Command;
use omadm_proto::package::AlertItem;
use omadm_proto::package::CommandStatus;
use omadm_proto::package::media::DMMO_JSON;
use omadm_proto::status::StatusCode;
use omadm_proto::tree::{DmmoDocument, ManagementTree};
use omadm_proto::uri::{ClientUri, InstanceSelector, NodeSelector};
use reqwest::Method;

use crate::device::Device;
use crate::transport::Transport;

/// The device and the transport a command runs with.
pub struct CommandContext<'a> {
    pub device: &'a mut Device,
    pub transport: &'a Transport,
}

/// What executing one command gives the session.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// The status of the command in the Package#3.
    pub status: CommandStatus,
    /// GET data: the part's media type and body (Appendix E).
    pub part: Option<(String, Vec<u8>)>,
    /// Generic Alerts to send in the Package#3.
    pub alerts: Vec<AlertItem>,
    /// CONT: the URL the next Package#3 goes to.
    pub continue_at: Option<String>,
    /// END: the session is over, nothing is answered.
    pub ends_session: bool,
}

impl CommandOutcome {
    /// Just a status.
    pub fn status(code: StatusCode) -> CommandOutcome {
        CommandOutcome {
            status: CommandStatus::new(code),
            part: None,
            alerts: Vec::new(),
            continue_at: None,
            ends_session: false,
        }
    }

    pub fn code(&self) -> StatusCode {
        self.status.code
    }
}

/// Runs one parsed command against the device.
pub async fn execute(context: &mut CommandContext<'_>, command: &Command) -> CommandOutcome {
    match command {
        Command::Hget(hget) => hget::execute(context, hget).await,
        Command::Hput(hput) => hput::execute(context, hput).await,
        Command::Hpost(hpost) => hpost::execute(context, hpost).await,
        Command::Delete(delete) => delete::execute(context, delete),
        Command::Exec(exec) => exec::execute(context, exec).await,
        Command::Get(get) => get::execute(context, get).await,
        Command::Show(show) => show::execute(context, show),
        Command::Cont(cont) => cont::execute(context, cont),
        Command::End => end::execute(),
        Command::Default(default) => default::execute(context, default),
    }
}

/// One node a ClientURI names, in real names; `exists` is false when HGET is about to create it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub moid: String,
    pub miid: String,
    pub path: Vec<String>,
    pub exists: bool,
    /// False when the instance itself is new.
    pub instance_exists: bool,
}

/// The one node `uri` names, or the place a new node (last segment) or a new instance (named MIID) would go.
/// 404 when neither exists, 400 when the address is ambiguous.
pub fn target_of(tree: &ManagementTree, uri: &ClientUri) -> Result<Target, StatusCode> {
    let error = match tree.resolve(uri) {
        Ok(nodes) => {
            let [node] = nodes.as_slice() else { return Err(StatusCode::BAD_REQUEST) };
            return Ok(Target {
                moid: node.moid().to_owned(),
                miid: node.miid().to_owned(),
                path: node.path().iter().map(|name| (*name).to_owned()).collect(),
                exists: true,
                instance_exists: true,
            });
        }
        Err(error) => error,
    };
    let real_names: Option<Vec<String>> = uri
        .path
        .iter()
        .map(|segment| match segment {
            NodeSelector::Name(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    let new_miid = match &uri.instance {
        InstanceSelector::Miid(miid) if tree.instance(&uri.moid, miid).is_none() => Some(miid.clone()),
        InstanceSelector::Sole if tree.instances_of(&uri.moid).next().is_none() => Some(String::new()),
        _ => None,
    };
    if let (Some(miid), Some(path)) = (new_miid, real_names) {
        return Ok(Target { moid: uri.moid.clone(), miid, path, exists: false, instance_exists: false });
    }
    let Some((NodeSelector::Name(last), parent_path)) = uri.path.split_last() else {
        return Err(error.status_code());
    };
    let mut parent_uri = uri.clone();
    parent_uri.path = parent_path.to_vec();
    let parent = target_of(tree, &parent_uri)?;
    if !parent.exists {
        return Err(error.status_code());
    }
    let mut path = parent.path;
    path.push(last.clone());
    Ok(Target { moid: parent.moid, miid: parent.miid, path, exists: false, instance_exists: true })
}

/// The status for an HTTP answer to one of our requests that was not a success.
pub fn status_for_http(http_status: u16) -> StatusCode {
    match http_status {
        404 | 410 => StatusCode::NOT_FOUND,
        406 | 415 => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        401 | 403 => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_ERROR,
    }
}

/// Just-in-time configuration (10.1): when `moid` has no instance and a DEFAULT named a URL for it, the default
/// instance is fetched and stored before the command runs. No status of its own: a failure leaves the tree as it
/// was and the command answers as it would have.
pub async fn ensure_default_instance(context: &mut CommandContext<'_>, moid: &str) {
    if context.device.tree.instances_of(moid).next().is_some() {
        return;
    }
    let Some(url) = context.device.defaults.get(moid).cloned() else { return };
    let reply = match context.transport.send_plain(Method::GET, &url, None, Some(DMMO_JSON), Vec::new()).await {
        Ok(reply) if (200..300).contains(&reply.status) => reply,
        Ok(reply) => {
            tracing::warn!(moid, url, status = reply.status, "default instance not fetched");
            return;
        }
        Err(error) => {
            tracing::warn!(moid, url, %error, "default instance not fetched");
            return;
        }
    };
    match DmmoDocument::from_slice(&reply.body) {
        Ok(document) if document.moid == moid => {
            if let Err(error) = context.device.tree.store_document(&document) {
                tracing::warn!(moid, %error, "default instance refused");
            }
        }
        Ok(document) => tracing::warn!(moid, got = document.moid, "default instance of another MOID"),
        Err(error) => tracing::warn!(moid, %error, "default instance unreadable"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::device::tests::sample_device;
    use crate::transport::Transport;

    pub(crate) fn offline_transport() -> Transport {
        Transport::new(crate::device::Credentials { device_id: "IMEI:4930051".into(), password: "pw".into() }).unwrap()
    }

    fn uri(text: &str) -> ClientUri {
        ClientUri::parse(text).unwrap()
    }

    #[test]
    fn targets_of_existing_and_new_nodes() {
        let device = sample_device();
        let tree = &device.tree;
        let devinfo = "urn:oma:mo:oma-dm-devinfo:1.2";
        let existing = target_of(tree, &uri(&format!("{devinfo}//FwV"))).unwrap();
        assert!(existing.exists);
        assert_eq!(existing.path, vec!["FwV".to_owned()]);
        let new_leaf = target_of(tree, &uri(&format!("{devinfo}//NewLeaf"))).unwrap();
        assert!(!new_leaf.exists && new_leaf.instance_exists);
        let new_instance = target_of(tree, &uri("urn:oma:mo:example:1.0/m1/A")).unwrap();
        assert!(!new_instance.instance_exists);
        assert_eq!(new_instance.miid, "m1");
        assert_eq!(target_of(tree, &uri(&format!("{devinfo}//No/Such"))), Err(StatusCode::NOT_FOUND));
    }

    #[test]
    fn http_failures_map_to_appendix_c() {
        assert_eq!(status_for_http(404), StatusCode::NOT_FOUND);
        assert_eq!(status_for_http(406), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(status_for_http(403), StatusCode::FORBIDDEN);
        assert_eq!(status_for_http(502), StatusCode::INTERNAL_ERROR);
    }
}
