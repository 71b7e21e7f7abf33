//! What the server stores: devices, their command queues, sessions, alerts, MO mirrors and repository content.
//!
//! Every record is plain data with serde, so each Store engine keeps the same JSON.

mod alert;
mod command;
mod device;
mod mirror;
mod repository;
mod session;

pub use alert::AlertRecord;
pub use command::{CommandId, CommandOrigin, CommandRecord, CommandResultData, CommandState, NewCommand};
pub use device::{Credentials, Device, DeviceFilter, DevicePage, Inventory};
pub use mirror::MirrorRecord;
pub use repository::{
    ContentSource, MAX_REPOSITORY_PATH_BYTES, RepositoryItem, RepositoryPathError, check_repository_path,
};
pub use session::{PackageReplay, SentCommand, SessionOutcome, SessionState, SessionSummary};
