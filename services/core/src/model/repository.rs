//! Content of the Data Repository (5.1.4): what operators publish for HGET and what devices upload by HPUT/HPOST.

use omadm_proto::command::Command;
use omadm_proto::uri::ServerUriParameter;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::model::SessionState;

/// One item of the Data Repository as the Store records it; its bytes are in the content engine
/// ([`crate::content::ContentEngine`]) under `blob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryItem {
    /// Path below `/repo/`, without a leading slash.
    pub path: String,
    pub content_type: String,
    /// The content engine's key of the bytes.
    pub blob: String,
    /// Size of the bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex (the strong ETag of downloads).
    pub sha256: String,
    pub source: ContentSource,
    /// The uploading device, for device uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub stored_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentSource {
    Operator,
    Device,
}

/// Longest repository path accepted, in bytes.
pub const MAX_REPOSITORY_PATH_BYTES: usize = 1024;

/// The segment rule of [`check_repository_path`] as a regular expression (the OpenAPI `pattern` of a repository
/// path): segments of characters other than `/` and control characters (U+0000 to U+001F, U+007F to U+009F),
/// none empty, `.` or `..`. The length bound is [`MAX_REPOSITORY_PATH_BYTES`], which a pattern cannot count.
pub const REPOSITORY_PATH_PATTERN: &str = r"^(?:[^/.\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*|\.[^/.\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*|\.\.[^/\x00-\x1f\x7f-\x9f]+)(?:/(?:[^/.\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*|\.[^/.\x00-\x1f\x7f-\x9f][^/\x00-\x1f\x7f-\x9f]*|\.\.[^/\x00-\x1f\x7f-\x9f]+))*$";

/// Why a repository path is refused: one rule for operator uploads and device uploads alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepositoryPathError {
    #[error("repository path must be 1 to {MAX_REPOSITORY_PATH_BYTES} bytes")]
    Length,
    #[error("repository path contains control characters")]
    ControlCharacter,
    #[error("repository path {0:?} has an empty, '.' or '..' segment")]
    Segment(String),
}

/// Checks a path below `/repo/`: bounded, printable, and without segments that
/// would be ambiguous (empty) or walk the hierarchy (`.`, `..`).
pub fn check_repository_path(path: &str) -> Result<(), RepositoryPathError> {
    if path.is_empty() || path.len() > MAX_REPOSITORY_PATH_BYTES {
        return Err(RepositoryPathError::Length);
    }
    if path.chars().any(char::is_control) {
        return Err(RepositoryPathError::ControlCharacter);
    }
    if path.split('/').any(|segment| segment.is_empty() || segment == "." || segment == "..") {
        return Err(RepositoryPathError::Segment(path.to_owned()));
    }
    Ok(())
}

/// The folder of device uploads: each device owns `up/<DevID>/` (HPUT/HPOST ServerURIs such as
/// `{public-url}/repo/up/[DevID]/tree.json` land there once the device substitutes `[DevID]`).
pub const DEVICE_UPLOAD_FOLDER: &str = "up";

/// The path prefix a device may upload below without a command naming the path: `up/<DevID>/`.
pub fn device_upload_prefix(device_id: &str) -> String {
    format!("{DEVICE_UPLOAD_FOLDER}/{device_id}/")
}

/// The HTTP method of a device upload: PUT answers HPUT, POST answers HPOST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMethod {
    Put,
    Post,
}

/// Whether the server sent the device to this very URL: an HPUT (for PUT) or HPOST (for POST) of the
/// session's last Package#2 whose ServerURI, with the parameters the device substituted (`[DevID]`
/// being its own), is `path_and_query` (the request target as received, still percent-encoded).
pub fn upload_issued_in_session(
    session: &SessionState,
    device_id: &str,
    method: UploadMethod,
    path_and_query: &str,
) -> bool {
    if session.ended || session.device_id != device_id {
        return false;
    }
    session.awaiting.iter().any(|sent| {
        let server_uri = match (&sent.command, method) {
            (Command::Hput(hput), UploadMethod::Put) | (Command::Hpost(hput), UploadMethod::Post) => hput.server_uri(),
            // An EXEC's result alert is POSTed to its ServerURI (5.4.5).
            (Command::Exec(exec), UploadMethod::Post) => match exec.server_uri() {
                Some(server_uri) => server_uri,
                None => return false,
            },
            _ => return false,
        };
        let Some(params) = server_uri.match_substituted(path_and_query) else { return false };
        !server_uri.parameters().contains(&ServerUriParameter::DevId) || params.dev_id.as_deref() == Some(device_id)
    })
}

/// Why the server sent the device where it uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadGrant {
    /// The path is below the device's own `up/<DevID>/`.
    OwnFolder,
    /// An HPUT/HPOST (or, for a POST, an EXEC's result alert) of the device's open session names exactly this URL.
    IssuedCommand,
    /// Neither: the device chose the path itself.
    None,
}

/// Why a device upload is refused (403): devices write only where the server sent them, and never over
/// operator content or another device's upload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadRefusal {
    #[error("the path holds operator content, which devices cannot replace")]
    OperatorContent,
    #[error("the path holds another device's upload")]
    AnotherDevice,
    #[error(
        "devices upload only below their own folder {prefix:?} or to the exact ServerURI of an HPUT/HPOST \
         (or an EXEC, for its alert) of their open session; {path:?} is neither"
    )]
    NotSent { path: String, prefix: String },
}

/// Decides a device upload to `path`: what is stored there now, and whether the server sent the device there.
pub fn check_upload(
    device_id: &str,
    path: &str,
    existing: Option<&RepositoryItem>,
    grant: UploadGrant,
) -> Result<(), UploadRefusal> {
    if let Some(existing) = existing {
        if existing.source == ContentSource::Operator {
            return Err(UploadRefusal::OperatorContent);
        }
        if existing.device_id.as_deref() != Some(device_id) {
            return Err(UploadRefusal::AnotherDevice);
        }
    }
    match grant {
        UploadGrant::OwnFolder | UploadGrant::IssuedCommand => Ok(()),
        UploadGrant::None => {
            Err(UploadRefusal::NotSent { path: path.to_owned(), prefix: device_upload_prefix(device_id) })
        }
    }
}

/// [`UploadGrant::OwnFolder`] when `path` is below the device's `up/<DevID>/` (and names something in it).
pub fn own_folder_grant(device_id: &str, path: &str) -> UploadGrant {
    match path.strip_prefix(&device_upload_prefix(device_id)) {
        Some(rest) if !rest.is_empty() => UploadGrant::OwnFolder,
        _ => UploadGrant::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths() {
        for good in ["firmware/v2.bin", "a/b/c-[DevID].json", "up/IMEI:1/tree.json", "a b/%41"] {
            assert_eq!(check_repository_path(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_repository_path(""), Err(RepositoryPathError::Length));
        assert_eq!(check_repository_path(&"a".repeat(1025)), Err(RepositoryPathError::Length));
        assert_eq!(check_repository_path("a\nb"), Err(RepositoryPathError::ControlCharacter));
        for bad in ["a//b", "/a", "a/", "a/../b", "./a"] {
            assert!(matches!(check_repository_path(bad), Err(RepositoryPathError::Segment(_))), "{bad:?}");
        }
    }

    fn session_awaiting(commands: &[serde_json::Value]) -> SessionState {
        SessionState {
            id: "s1".to_owned(),
            device_id: "IMEI:1".to_owned(),
            started_at: 0,
            last_activity: 0,
            packages: 1,
            awaiting: commands
                .iter()
                .map(|json| crate::model::SentCommand {
                    command_id: Some(1),
                    command: Command::from_json(json).unwrap(),
                })
                .collect(),
            ended: false,
            commands_answered: 0,
            replay: None,
        }
    }

    #[test]
    fn uploads_go_to_the_exact_server_uri_of_an_issued_command() {
        let session = session_awaiting(&[
            serde_json::json!(["HPUT", "https://dm.example.com/repo/cfg/[DevID].json", "urn:oma:mo:x:1.0//"]),
            serde_json::json!(["HPOST", "https://dm.example.com/repo/log", "urn:oma:mo:x:1.0//"]),
        ]);
        let issued = |method, target| upload_issued_in_session(&session, "IMEI:1", method, target);
        assert!(issued(UploadMethod::Put, "/repo/cfg/IMEI%3A1.json"));
        assert!(!issued(UploadMethod::Put, "/repo/cfg/IMEI%3A2.json"), "another device's substitution");
        assert!(!issued(UploadMethod::Post, "/repo/cfg/IMEI%3A1.json"), "PUT was sent, not POST");
        assert!(issued(UploadMethod::Post, "/repo/log"));
        assert!(!issued(UploadMethod::Post, "/repo/log/more"));
        assert!(!issued(UploadMethod::Put, "/repo/fw/manifest.json"));
        assert!(!upload_issued_in_session(&session, "IMEI:2", UploadMethod::Post, "/repo/log"));
        let ended = SessionState { ended: true, ..session.clone() };
        assert!(!upload_issued_in_session(&ended, "IMEI:1", UploadMethod::Post, "/repo/log"));
    }

    #[test]
    fn an_exec_with_a_server_uri_takes_its_alert_by_post_only() {
        let session = session_awaiting(&[
            serde_json::json!([
                "EXEC",
                "urn:oma:mo:oma-fumo:1.0//DownloadAndUpdate",
                "https://dm.example.com/repo/alerts/[DevID]"
            ]),
            serde_json::json!(["EXEC", "urn:oma:mo:x:1.0//Reboot"]),
        ]);
        let issued = |method, target| upload_issued_in_session(&session, "IMEI:1", method, target);
        assert!(issued(UploadMethod::Post, "/repo/alerts/IMEI%3A1"));
        assert!(!issued(UploadMethod::Put, "/repo/alerts/IMEI%3A1"), "an alert is POSTed");
        assert!(!issued(UploadMethod::Post, "/repo/alerts/IMEI%3A2"));
    }

    #[test]
    fn uploads_never_replace_operator_content_or_another_device() {
        let item = |source, device_id: Option<&str>| RepositoryItem {
            path: "up/IMEI:1/x".to_owned(),
            content_type: "application/json".to_owned(),
            blob: "items/1".to_owned(),
            size: 0,
            sha256: String::new(),
            source,
            device_id: device_id.map(str::to_owned),
            stored_at: 0,
        };
        assert_eq!(own_folder_grant("IMEI:1", "up/IMEI:1/tree.json"), UploadGrant::OwnFolder);
        assert_eq!(own_folder_grant("IMEI:1", "up/IMEI:1/"), UploadGrant::None);
        assert_eq!(own_folder_grant("IMEI:1", "up/IMEI:12/tree.json"), UploadGrant::None);
        assert_eq!(own_folder_grant("IMEI:1", "fw/IMEI:1/tree.json"), UploadGrant::None);
        assert_eq!(check_upload("IMEI:1", "up/IMEI:1/x", None, UploadGrant::OwnFolder), Ok(()));
        let mine = item(ContentSource::Device, Some("IMEI:1"));
        assert_eq!(check_upload("IMEI:1", "up/IMEI:1/x", Some(&mine), UploadGrant::OwnFolder), Ok(()));
        let operator = item(ContentSource::Operator, None);
        assert_eq!(
            check_upload("IMEI:1", "up/IMEI:1/x", Some(&operator), UploadGrant::OwnFolder),
            Err(UploadRefusal::OperatorContent)
        );
        let other = item(ContentSource::Device, Some("IMEI:2"));
        assert_eq!(
            check_upload("IMEI:1", "cfg/x", Some(&other), UploadGrant::IssuedCommand),
            Err(UploadRefusal::AnotherDevice)
        );
        let refusal = check_upload("IMEI:1", "up/IMEI:2/x", None, UploadGrant::None).unwrap_err();
        assert!(refusal.to_string().contains("\"up/IMEI:1/\""), "{refusal}");
    }
}
