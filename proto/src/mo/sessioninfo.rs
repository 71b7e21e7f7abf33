//! SessionInfo MO 1.0 (spec 11.4): the bearer and roaming status of the current DM session.
//!
//! ```text
//! {"CBT": 1, "ROAMING": 0}      mobile bearer, not roaming
//! ```

use serde_json::Value;

use super::{Interior, MoDataWriter, MoError, impl_management_object};

const CBT: &str = "CBT";
const ROAMING: &str = "ROAMING";

/// The one SessionInfo instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionInfo {
    /// `CBT`: the bearer carrying the session.
    pub bearer_type: BearerType,
    /// `ROAMING`: meaningful only when the bearer is [`BearerType::Mobile`].
    pub roaming: RoamingStatus,
}

/// `CBT` values (0..=255 on the wire; 4..=255 are not allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BearerType {
    /// `0`: OTHERS/UNKNOWN.
    OthersOrUnknown,
    /// `1`: MOBILE (3GPP, 3GPP2, WiMAX, ...).
    Mobile,
    /// `2`: WIRELESS (WLAN, Bluetooth, ...).
    Wireless,
    /// `3`: WIRELINE (Ethernet, DSL, ...).
    Wireline,
}

impl BearerType {
    /// The node value.
    pub fn value(self) -> i64 {
        match self {
            BearerType::OthersOrUnknown => 0,
            BearerType::Mobile => 1,
            BearerType::Wireless => 2,
            BearerType::Wireline => 3,
        }
    }

    /// The bearer for a node value. Lenient: an unallocated value in 4..=255 is
    /// what a client must send as 0, so it reads as OTHERS/UNKNOWN; values outside
    /// 0..=255 are `None`.
    pub fn from_value(value: i64) -> Option<Self> {
        match value {
            0 | 4..=255 => Some(BearerType::OthersOrUnknown),
            1 => Some(BearerType::Mobile),
            2 => Some(BearerType::Wireless),
            3 => Some(BearerType::Wireline),
            _ => None,
        }
    }
}

/// `ROAMING` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoamingStatus {
    /// `0`: not over a roaming connection.
    NotRoaming,
    /// `1`: over a roaming connection.
    Roaming,
    /// `2`: unknown.
    Unknown,
}

impl RoamingStatus {
    /// The node value.
    pub fn value(self) -> i64 {
        match self {
            RoamingStatus::NotRoaming => 0,
            RoamingStatus::Roaming => 1,
            RoamingStatus::Unknown => 2,
        }
    }

    /// The status for a node value, `None` outside 0..=2.
    pub fn from_value(value: i64) -> Option<Self> {
        match value {
            0 => Some(RoamingStatus::NotRoaming),
            1 => Some(RoamingStatus::Roaming),
            2 => Some(RoamingStatus::Unknown),
            _ => None,
        }
    }
}

impl SessionInfo {
    /// `urn:oma:mo:oma-sessioninfomo:1.0`
    pub const MOID: &'static str = "urn:oma:mo:oma-sessioninfomo:1.0";

    /// The MOData object.
    pub fn to_mo_data(&self) -> Value {
        MoDataWriter::default().int(CBT, self.bearer_type.value()).int(ROAMING, self.roaming.value()).finish()
    }

    /// Reads the instance. `ROAMING` is "undefined" unless the bearer is mobile
    /// (11.4), so for other bearers a missing or out-of-range value reads as
    /// [`RoamingStatus::Unknown`]; for a mobile bearer it must be 0, 1 or 2.
    pub fn from_mo_data(mo_data: &Value) -> Result<Self, MoError> {
        let root = Interior::instance_root(mo_data, "SessionInfo", &[CBT, ROAMING])?;
        let bearer_value = root.required_int(CBT)?;
        let bearer_type = BearerType::from_value(bearer_value)
            .ok_or_else(|| root.invalid(CBT, bearer_value.to_string(), "a bearer type is in 0..=255"))?;
        let roaming = match (bearer_type, root.int(ROAMING)?) {
            (BearerType::Mobile, None) => {
                return Err(MoError::MissingNode { path: root.path_of(ROAMING) });
            }
            (BearerType::Mobile, Some(value)) => RoamingStatus::from_value(value)
                .ok_or_else(|| root.invalid(ROAMING, value.to_string(), "expected 0, 1 or 2"))?,
            (_, value) => value.and_then(RoamingStatus::from_value).unwrap_or(RoamingStatus::Unknown),
        };
        Ok(SessionInfo { bearer_type, roaming })
    }
}

impl_management_object!(SessionInfo);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_map_both_ways() {
        for value in 0..=3 {
            assert_eq!(BearerType::from_value(value).map(BearerType::value), Some(value));
        }
        for value in 0..=2 {
            assert_eq!(RoamingStatus::from_value(value).map(RoamingStatus::value), Some(value));
        }
        assert_eq!(BearerType::from_value(200), Some(BearerType::OthersOrUnknown));
        assert_eq!(BearerType::from_value(256), None);
        assert_eq!(BearerType::from_value(-1), None);
        assert_eq!(RoamingStatus::from_value(3), None);
    }

    #[test]
    fn roaming_is_required_only_on_a_mobile_bearer() {
        assert_eq!(
            SessionInfo::from_mo_data(&json!({"CBT": 1})),
            Err(MoError::MissingNode { path: "SessionInfo/ROAMING".into() })
        );
        assert_eq!(
            SessionInfo::from_mo_data(&json!({"CBT": "1", "ROAMING": 9})),
            Err(MoError::InvalidValue {
                path: "SessionInfo/ROAMING".into(),
                value: "9".into(),
                reason: "expected 0, 1 or 2"
            })
        );
        assert_eq!(
            SessionInfo::from_mo_data(&json!({"CBT": 3, "ROAMING": 9})),
            Ok(SessionInfo { bearer_type: BearerType::Wireline, roaming: RoamingStatus::Unknown })
        );
        assert_eq!(
            SessionInfo::from_mo_data(&json!({"CBT": 2})),
            Ok(SessionInfo { bearer_type: BearerType::Wireless, roaming: RoamingStatus::Unknown })
        );
        assert!(matches!(
            SessionInfo::from_mo_data(&json!({"CBT": 300, "ROAMING": 0})),
            Err(MoError::InvalidValue { path, .. }) if path == "SessionInfo/CBT"
        ));
    }
}
