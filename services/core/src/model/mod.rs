//! What the server stores: devices, their command queues, sessions, alerts, MO mirrors, repository content,
//! notification requests and the records of roles (campaigns).
//!
//! Every record is plain data with serde, so each Store engine keeps the same JSON.

mod alert;
mod command;
mod device;
mod mirror;
mod notification;
mod record;
mod repository;
mod session;

pub use alert::AlertRecord;
pub use command::{CommandId, CommandOrigin, CommandRecord, CommandResultData, CommandState, NewCommand};
pub use device::{
    Credentials, DEVICE_ID_PATTERN, DEVICE_ID_RULE, Device, DeviceFilter, DeviceIdError, DevicePage, Inventory,
    MAX_DEVICE_ID_BYTES, MAX_PUSH_REGISTRATION_ID_BYTES, MSISDN_PATTERN, MSISDN_RULE, MsisdnError, NotifyTransport,
    PUSH_REGISTRATION_ID_RULE, PushRegistration, PushRegistrationIdError, check_device_id, check_msisdn,
    check_push_registration_id,
};
pub use mirror::MirrorRecord;
pub use notification::{
    NOTIFICATION_RETENTION_MILLIS, NotificationAnswer, NotificationAttempt, NotificationDelivery, NotificationOutcome,
    NotificationRecord, NotificationState, REQUEST_ID_PATTERN, is_request_id,
};
pub use record::{Record, RecordCounts, RecordPut, RecordWrite};
pub use repository::{
    ContentSource, DEVICE_UPLOAD_FOLDER, MAX_REPOSITORY_PATH_BYTES, REPOSITORY_PATH_PATTERN, RepositoryItem,
    RepositoryPathError, UploadGrant, UploadMethod, UploadRefusal, check_repository_path, check_upload,
    device_upload_prefix, own_folder_grant, upload_issued_in_session,
};
pub use session::{PackageReplay, SentCommand, SessionOutcome, SessionState, SessionSummary};
