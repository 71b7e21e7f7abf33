//! FUMO 1.0 (OMA Firmware Update Management Object): firmware download/update nodes, states, result codes, alert types.
//!
//! FUMO is not part of the DM 2.0 text; this follows OMA FUMO 1.0. The tree, with
//! the node names used here:
//!
//! ```text
//! <x>                      MOID urn:oma:mo:oma-fumo:1.0
//! <x>/PkgName              chr, optional
//! <x>/PkgVersion           chr, optional
//! <x>/Download/PkgURL      chr   EXEC on Download: fetch the package from PkgURL
//! <x>/Update/PkgData       bin   EXEC on Update: install the package in PkgData
//! <x>/DownloadAndUpdate/PkgURL   EXEC on DownloadAndUpdate: both in one go
//! <x>/State                int   10..100, see FumoState
//! <x>/Ext                  vendor extensions
//! ```
//!
//! ```text
//! {"PkgName": "Firmware R12", "PkgVersion": "12.0.1",
//!  "Download": {"PkgURL": "https://fw.example.com/r12.bin"}, "Update": {},
//!  "DownloadAndUpdate": {"PkgURL": ""}, "State": 40}
//! ```
//!
//! When an EXEC'd operation ends, the device reports it with a Generic Alert whose
//! AlertType is the operation's (e.g. [`ALERT_TYPE_DOWNLOAD`]), whose SourceURI is
//! the EXEC'd node and whose Data is a [`FumoResultCode`].

use std::fmt;

use serde_json::{Map, Value};

use super::{Interior, MoDataWriter, MoError, impl_management_object};

/// Generic Alert type when an EXEC on `<x>/Download` ends.
pub const ALERT_TYPE_DOWNLOAD: &str = "org.openmobilealliance.dm.firmwareupdate.download";
/// Generic Alert type when an EXEC on `<x>/Update` ends.
pub const ALERT_TYPE_UPDATE: &str = "org.openmobilealliance.dm.firmwareupdate.update";
/// Generic Alert type when an EXEC on `<x>/DownloadAndUpdate` ends.
pub const ALERT_TYPE_DOWNLOAD_AND_UPDATE: &str = "org.openmobilealliance.dm.firmwareupdate.downloadandupdate";
/// Generic Alert type of a device-initiated request for a firmware update (not the end of an operation).
pub const ALERT_TYPE_DEVICE_REQUEST: &str = "org.openmobilealliance.dm.firmwareupdate.devicerequest";
/// Generic Alert type of a user-initiated request for a firmware update (not the end of an operation).
pub const ALERT_TYPE_USER_REQUEST: &str = "org.openmobilealliance.dm.firmwareupdate.userrequest";

const PKG_NAME: &str = "PkgName";
const PKG_VERSION: &str = "PkgVersion";
const DOWNLOAD: &str = "Download";
const UPDATE: &str = "Update";
const DOWNLOAD_AND_UPDATE: &str = "DownloadAndUpdate";
const PKG_URL: &str = "PkgURL";
const PKG_DATA: &str = "PkgData";
const STATE: &str = "State";
const EXT: &str = "Ext";

const CHILDREN: [&str; 7] = [PKG_NAME, PKG_VERSION, DOWNLOAD, UPDATE, DOWNLOAD_AND_UPDATE, STATE, EXT];

/// One FUMO instance.
///
/// `Download`, `Update` and `DownloadAndUpdate` are required interior nodes; their
/// leaves are optional when reading because `Update/PkgData` is not readable by GET
/// and a `lv`-limited GET sends interiors as `{}`. An empty `PkgURL` reads as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareUpdate {
    /// `PkgName`: name of the firmware package.
    pub package_name: Option<String>,
    /// `PkgVersion`: version of the firmware package.
    pub package_version: Option<String>,
    /// `Download/PkgURL`: where EXEC on `Download` fetches the package.
    pub download_url: Option<String>,
    /// `Update/PkgData`: the package itself, for EXEC on `Update`.
    pub update_package: Option<Vec<u8>>,
    /// `DownloadAndUpdate/PkgURL`: where EXEC on `DownloadAndUpdate` fetches the package.
    pub download_and_update_url: Option<String>,
    /// `State`.
    pub state: FumoState,
    /// `Ext`: vendor extensions, as sent.
    pub extensions: Option<Map<String, Value>>,
}

/// The three operations a server starts with EXEC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FumoOperation {
    /// EXEC `<x>/Download`.
    Download,
    /// EXEC `<x>/Update`.
    Update,
    /// EXEC `<x>/DownloadAndUpdate`.
    DownloadAndUpdate,
}

impl FumoOperation {
    /// The node the server EXECs, e.g. `DownloadAndUpdate`.
    pub fn node_name(self) -> &'static str {
        match self {
            FumoOperation::Download => DOWNLOAD,
            FumoOperation::Update => UPDATE,
            FumoOperation::DownloadAndUpdate => DOWNLOAD_AND_UPDATE,
        }
    }

    /// The Generic Alert type the device reports the end of this operation with.
    pub fn alert_type(self) -> &'static str {
        match self {
            FumoOperation::Download => ALERT_TYPE_DOWNLOAD,
            FumoOperation::Update => ALERT_TYPE_UPDATE,
            FumoOperation::DownloadAndUpdate => ALERT_TYPE_DOWNLOAD_AND_UPDATE,
        }
    }

    /// The operation whose end an AlertType reports (matched without regard to case).
    pub fn from_alert_type(alert_type: &str) -> Option<Self> {
        [FumoOperation::Download, FumoOperation::Update, FumoOperation::DownloadAndUpdate]
            .into_iter()
            .find(|operation| operation.alert_type().eq_ignore_ascii_case(alert_type))
    }
}

/// `State` values of FUMO 1.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FumoState {
    /// 10: Idle / Start, no operation pending.
    Idle,
    /// 20: Download Failed.
    DownloadFailed,
    /// 30: Download Progressing.
    DownloadProgressing,
    /// 40: Download Complete.
    DownloadComplete,
    /// 50: Ready to Update.
    ReadyToUpdate,
    /// 60: Update Progressing.
    UpdateProgressing,
    /// 70: Update Failed / Have Data (the package is still on the device).
    UpdateFailedHaveData,
    /// 80: Update Failed / No Data.
    UpdateFailedNoData,
    /// 90: Update Successful / Have Data.
    UpdateSuccessfulHaveData,
    /// 100: Update Successful / No Data.
    UpdateSuccessfulNoData,
}

impl FumoState {
    const ALL: [FumoState; 10] = [
        FumoState::Idle,
        FumoState::DownloadFailed,
        FumoState::DownloadProgressing,
        FumoState::DownloadComplete,
        FumoState::ReadyToUpdate,
        FumoState::UpdateProgressing,
        FumoState::UpdateFailedHaveData,
        FumoState::UpdateFailedNoData,
        FumoState::UpdateSuccessfulHaveData,
        FumoState::UpdateSuccessfulNoData,
    ];

    /// The node value: 10, 20, ... 100.
    pub fn value(self) -> i64 {
        match self {
            FumoState::Idle => 10,
            FumoState::DownloadFailed => 20,
            FumoState::DownloadProgressing => 30,
            FumoState::DownloadComplete => 40,
            FumoState::ReadyToUpdate => 50,
            FumoState::UpdateProgressing => 60,
            FumoState::UpdateFailedHaveData => 70,
            FumoState::UpdateFailedNoData => 80,
            FumoState::UpdateSuccessfulHaveData => 90,
            FumoState::UpdateSuccessfulNoData => 100,
        }
    }

    /// The state for a node value; `None` for anything but 10, 20, ... 100.
    pub fn from_value(value: i64) -> Option<Self> {
        FumoState::ALL.into_iter().find(|state| state.value() == value)
    }

    /// True while a download or an update is running.
    pub fn is_in_progress(self) -> bool {
        matches!(self, FumoState::DownloadProgressing | FumoState::UpdateProgressing)
    }

    /// The name FUMO 1.0 gives the state, e.g. `Update Failed / Have Data`.
    pub fn description(self) -> &'static str {
        match self {
            FumoState::Idle => "Idle / Start",
            FumoState::DownloadFailed => "Download Failed",
            FumoState::DownloadProgressing => "Download Progressing",
            FumoState::DownloadComplete => "Download Complete",
            FumoState::ReadyToUpdate => "Ready to Update",
            FumoState::UpdateProgressing => "Update Progressing",
            FumoState::UpdateFailedHaveData => "Update Failed / Have Data",
            FumoState::UpdateFailedNoData => "Update Failed / No Data",
            FumoState::UpdateSuccessfulHaveData => "Update Successful / Have Data",
            FumoState::UpdateSuccessfulNoData => "Update Successful / No Data",
        }
    }
}

impl fmt::Display for FumoState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.value(), self.description())
    }
}

/// The class a FUMO result code belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FumoResultClass {
    /// 200.
    Successful,
    /// 250..=299.
    SuccessfulVendorSpecified,
    /// 400..=412: the device or its user made the operation fail.
    ClientError,
    /// 450..=499.
    ClientErrorVendorSpecified,
    /// 500..=503: the download server or the network made it fail.
    DownloadServerError,
    /// 550..=599.
    DownloadServerErrorVendorSpecified,
    /// Any other number: not a FUMO 1.0 result code.
    Undefined,
}

/// The result code a device reports at the end of a FUMO operation.
///
/// ```text
/// 200 Successful     402 Corrupted Firmware Update Package     503 Download fails due to network issues
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FumoResultCode(pub u16);

impl FumoResultCode {
    pub const SUCCESSFUL: FumoResultCode = FumoResultCode(200);
    pub const MANAGEMENT_CLIENT_ERROR: FumoResultCode = FumoResultCode(400);
    pub const USER_CANCELLED: FumoResultCode = FumoResultCode(401);
    pub const CORRUPTED_PACKAGE: FumoResultCode = FumoResultCode(402);
    pub const PACKAGE_DEVICE_MISMATCH: FumoResultCode = FumoResultCode(403);
    pub const PACKAGE_VALIDATION_FAILED: FumoResultCode = FumoResultCode(404);
    pub const PACKAGE_NOT_ACCEPTABLE: FumoResultCode = FumoResultCode(405);
    pub const DOWNLOAD_AUTHENTICATION_FAILURE: FumoResultCode = FumoResultCode(406);
    pub const DOWNLOAD_REQUEST_TIMEOUT: FumoResultCode = FumoResultCode(407);
    pub const NOT_IMPLEMENTED: FumoResultCode = FumoResultCode(408);
    pub const UNDEFINED_ERROR: FumoResultCode = FumoResultCode(409);
    pub const UPDATE_FAILED: FumoResultCode = FumoResultCode(410);
    pub const MALFORMED_URL: FumoResultCode = FumoResultCode(411);
    pub const DOWNLOAD_SERVER_UNAVAILABLE: FumoResultCode = FumoResultCode(412);
    pub const DOWNLOAD_SERVER_ERROR: FumoResultCode = FumoResultCode(500);
    pub const DOWNLOAD_OUT_OF_MEMORY: FumoResultCode = FumoResultCode(501);
    pub const UPDATE_OUT_OF_MEMORY: FumoResultCode = FumoResultCode(502);
    pub const DOWNLOAD_NETWORK_FAILURE: FumoResultCode = FumoResultCode(503);

    /// The class of this code.
    pub fn class(self) -> FumoResultClass {
        match self.0 {
            200 => FumoResultClass::Successful,
            250..=299 => FumoResultClass::SuccessfulVendorSpecified,
            400..=412 => FumoResultClass::ClientError,
            450..=499 => FumoResultClass::ClientErrorVendorSpecified,
            500..=503 => FumoResultClass::DownloadServerError,
            550..=599 => FumoResultClass::DownloadServerErrorVendorSpecified,
            _ => FumoResultClass::Undefined,
        }
    }

    /// True for 200 and 250..=299.
    pub fn is_successful(self) -> bool {
        matches!(self.class(), FumoResultClass::Successful | FumoResultClass::SuccessfulVendorSpecified)
    }

    /// What the code means, as FUMO 1.0 names it.
    pub fn meaning(self) -> &'static str {
        match self.0 {
            200 => "Successful",
            400 => "Management Client Error",
            401 => "User Cancelled",
            402 => "Corrupted Firmware Update Package",
            403 => "Firmware Update Package - Device Mismatch",
            404 => "Failed Firmware Update Package Validation",
            405 => "Firmware Update Package Not Acceptable",
            406 => "Alternate Download Authentication Failure",
            407 => "Alternate Download Request Time-Out",
            408 => "Not Implemented",
            409 => "Undefined Error",
            410 => "Firmware Update Failed",
            411 => "Malformed or Bad URL",
            412 => "Alternate Download Server Unavailable",
            500 => "Alternate Download Server Error",
            501 => "Download Fails due to Device is Out of Memory",
            502 => "Firmware Update fails due to Device Out of Memory",
            503 => "Download fails due to network issues",
            _ => match self.class() {
                FumoResultClass::SuccessfulVendorSpecified => "Successful - Vendor Specified",
                FumoResultClass::ClientErrorVendorSpecified => "Client Error - Vendor Specified",
                FumoResultClass::DownloadServerErrorVendorSpecified => {
                    "Alternate Download Server Error - Vendor Specified"
                }
                _ => "Undefined result code",
            },
        }
    }

    /// Reads the result code from the Data of a FUMO Generic Alert. Lenient: a JSON
    /// number, a digit string, or an object `{"ResultCode": ...}` holding either.
    pub fn from_alert_data(data: &Value) -> Result<Self, MoError> {
        let mo_data = match data {
            Value::Object(_) => data.clone(),
            other => Value::Object(Map::from_iter([("ResultCode".to_owned(), other.clone())])),
        };
        let root = Interior::instance_root(&mo_data, "AlertData", &["ResultCode"])?;
        let value = root.required_int("ResultCode")?;
        u16::try_from(value)
            .map(FumoResultCode)
            .map_err(|_| root.invalid("ResultCode", value.to_string(), "a result code is a three-digit number"))
    }
}

impl fmt::Display for FumoResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.meaning())
    }
}

impl FirmwareUpdate {
    /// `urn:oma:mo:oma-fumo:1.0`
    pub const MOID: &'static str = "urn:oma:mo:oma-fumo:1.0";

    /// The MOData object. The three operation nodes are always written; a missing
    /// leaf under them is left out (`{}`: children not transferred, 7.5).
    pub fn to_mo_data(&self) -> Value {
        let url_node = |url: Option<&str>| MoDataWriter::default().optional_chr(PKG_URL, url).finish();
        MoDataWriter::default()
            .optional_chr(PKG_NAME, self.package_name.as_deref())
            .optional_chr(PKG_VERSION, self.package_version.as_deref())
            .interior(DOWNLOAD, url_node(self.download_url.as_deref()))
            .interior(UPDATE, MoDataWriter::default().optional_bin(PKG_DATA, self.update_package.as_deref()).finish())
            .interior(DOWNLOAD_AND_UPDATE, url_node(self.download_and_update_url.as_deref()))
            .int(STATE, self.state.value())
            .optional_subtree(EXT, self.extensions.as_ref())
            .finish()
    }

    /// Reads one instance; `State` and the three operation nodes are required.
    pub fn from_mo_data(mo_data: &Value) -> Result<Self, MoError> {
        let root = Interior::instance_root(mo_data, "FUMO", &CHILDREN)?;
        let state_value = root.required_int(STATE)?;
        let state = FumoState::from_value(state_value)
            .ok_or_else(|| root.invalid(STATE, state_value.to_string(), "expected 10, 20, ... 100"))?;
        let url_of = |node: &str| -> Result<Option<String>, MoError> {
            Ok(root.required_interior(node)?.chr(PKG_URL)?.filter(|url| !url.is_empty()))
        };
        Ok(FirmwareUpdate {
            package_name: root.chr(PKG_NAME)?,
            package_version: root.chr(PKG_VERSION)?,
            download_url: url_of(DOWNLOAD)?,
            update_package: root.required_interior(UPDATE)?.bin(PKG_DATA)?,
            download_and_update_url: url_of(DOWNLOAD_AND_UPDATE)?,
            state,
            extensions: root.subtree(EXT)?,
        })
    }
}

impl_management_object!(FirmwareUpdate);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn states_are_the_tens_from_10_to_100() {
        let values: Vec<i64> = FumoState::ALL.iter().map(|state| state.value()).collect();
        assert_eq!(values, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(FumoState::from_value(70), Some(FumoState::UpdateFailedHaveData));
        assert_eq!(FumoState::from_value(15), None);
        assert_eq!(FumoState::from_value(0), None);
        assert!(FumoState::DownloadProgressing.is_in_progress());
        assert!(!FumoState::DownloadComplete.is_in_progress());
        assert_eq!(FumoState::UpdateFailedHaveData.to_string(), "70 (Update Failed / Have Data)");
    }

    #[test]
    fn result_codes_have_a_class_and_a_meaning() {
        let cases = [
            (200, FumoResultClass::Successful, "Successful"),
            (251, FumoResultClass::SuccessfulVendorSpecified, "Successful - Vendor Specified"),
            (401, FumoResultClass::ClientError, "User Cancelled"),
            (412, FumoResultClass::ClientError, "Alternate Download Server Unavailable"),
            (413, FumoResultClass::Undefined, "Undefined result code"),
            (460, FumoResultClass::ClientErrorVendorSpecified, "Client Error - Vendor Specified"),
            (502, FumoResultClass::DownloadServerError, "Firmware Update fails due to Device Out of Memory"),
            (504, FumoResultClass::Undefined, "Undefined result code"),
            (
                599,
                FumoResultClass::DownloadServerErrorVendorSpecified,
                "Alternate Download Server Error - Vendor Specified",
            ),
            (202, FumoResultClass::Undefined, "Undefined result code"),
        ];
        for (code, class, meaning) in cases {
            assert_eq!(FumoResultCode(code).class(), class, "{code}");
            assert_eq!(FumoResultCode(code).meaning(), meaning, "{code}");
        }
        assert!(FumoResultCode(250).is_successful());
        assert!(!FumoResultCode::UPDATE_FAILED.is_successful());
        assert_eq!(FumoResultCode::CORRUPTED_PACKAGE.to_string(), "402 Corrupted Firmware Update Package");
    }

    #[test]
    fn alert_types_name_their_operation() {
        for operation in [FumoOperation::Download, FumoOperation::Update, FumoOperation::DownloadAndUpdate] {
            assert_eq!(FumoOperation::from_alert_type(operation.alert_type()), Some(operation));
        }
        assert_eq!(
            FumoOperation::DownloadAndUpdate.alert_type(),
            "org.openmobilealliance.dm.firmwareupdate.downloadandupdate"
        );
        assert_eq!(FumoOperation::Update.node_name(), "Update");
        assert_eq!(FumoOperation::from_alert_type(ALERT_TYPE_DEVICE_REQUEST), None);
    }

    #[test]
    fn result_code_is_read_from_alert_data_in_any_lenient_form() {
        assert_eq!(FumoResultCode::from_alert_data(&json!(200)), Ok(FumoResultCode::SUCCESSFUL));
        assert_eq!(FumoResultCode::from_alert_data(&json!("402")), Ok(FumoResultCode::CORRUPTED_PACKAGE));
        assert_eq!(FumoResultCode::from_alert_data(&json!({"ResultCode": "503"})), Ok(FumoResultCode(503)));
        assert_eq!(
            FumoResultCode::from_alert_data(&json!(70000)),
            Err(MoError::InvalidValue {
                path: "AlertData/ResultCode".into(),
                value: "70000".into(),
                reason: "a result code is a three-digit number"
            })
        );
        assert!(matches!(FumoResultCode::from_alert_data(&json!("ok")), Err(MoError::WrongType { .. })));
        assert!(matches!(FumoResultCode::from_alert_data(&json!({})), Err(MoError::MissingNode { .. })));
    }

    #[test]
    fn state_must_be_a_fumo_state_and_operation_nodes_present() {
        let mo_data = json!({"Download": {}, "Update": {}, "DownloadAndUpdate": {}, "State": 15});
        assert!(
            matches!(FirmwareUpdate::from_mo_data(&mo_data), Err(MoError::InvalidValue { path, .. }) if path == "FUMO/State")
        );
        let no_update = json!({"Download": {}, "DownloadAndUpdate": {}, "State": 10});
        assert_eq!(FirmwareUpdate::from_mo_data(&no_update), Err(MoError::MissingNode { path: "FUMO/Update".into() }));
    }
}
