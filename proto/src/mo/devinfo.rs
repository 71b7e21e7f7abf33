//! DevInfo MO 1.2 (spec 11.1): who the device is: its DevID, maker, model and versions.
//!
//! ```text
//! {"DevID": "IMEI:493005100592800", "Man": "Example", "Mod": "X1", "DmV": "2.0", "Lang": "en-US",
//!  "DevType": "phone", "OEM": "Example OEM", "FwV": "1.0.3", "SwV": "5.1", "HwV": "rev B"}
//! ```

use serde_json::{Map, Value};

use super::{Interior, MoDataWriter, MoError, impl_management_object};

const DEV_ID: &str = "DevID";
const MAN: &str = "Man";
const MOD: &str = "Mod";
const DM_V: &str = "DmV";
const LANG: &str = "Lang";
const DEV_TYPE: &str = "DevType";
const OEM: &str = "OEM";
const FW_V: &str = "FwV";
const SW_V: &str = "SwV";
const HW_V: &str = "HwV";
const BEARER: &str = "Bearer";
const EXT: &str = "Ext";

const CHILDREN: [&str; 12] = [DEV_ID, MAN, MOD, DM_V, LANG, DEV_TYPE, OEM, FW_V, SW_V, HW_V, BEARER, EXT];

/// One DevInfo instance. Every leaf is required (11.1); `Bearer` and `Ext` are
/// optional interior nodes kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevInfo {
    /// `DevID`: the globally unique device identifier, e.g. `IMEI:493005100592800`;
    /// also sent as the `OMADM-DevID` HTTP header.
    pub device_id: String,
    /// `Man`: manufacturer.
    pub manufacturer: String,
    /// `Mod`: model.
    pub model: String,
    /// `DmV`: DM client version.
    pub dm_client_version: String,
    /// `Lang`: current language, an RFC 1766 tag such as `en-US`.
    pub language: String,
    /// `DevType`: device type, e.g. `phone`.
    pub device_type: String,
    /// `OEM`: original equipment manufacturer.
    pub oem: String,
    /// `FwV`: firmware version.
    pub firmware_version: String,
    /// `SwV`: software version.
    pub software_version: String,
    /// `HwV`: hardware version.
    pub hardware_version: String,
    /// `Bearer`: bearer-related subtree (e.g. CDMA), as sent.
    pub bearer: Option<Map<String, Value>>,
    /// `Ext`: vendor extensions, as sent.
    pub extensions: Option<Map<String, Value>>,
}

/// The form of a DevID, from the well-known URNs of 11.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceIdKind {
    /// `IMEI:` followed by 15 digits.
    Imei,
    /// `ESN:` followed by 8 hex digits.
    Esn,
    /// `MEID:` followed by 14 hex digits.
    Meid,
    /// `UUID:` followed by an RFC 4122 UUID (`8-4-4-4-12` hex digits).
    Uuid,
    /// Anything else: other formats are not precluded.
    Other,
}

impl DeviceIdKind {
    /// Classifies a DevID; the URN prefix is matched without regard to case.
    ///
    /// ```text
    /// IMEI:493005100592800                       -> Imei
    /// UUID:0f8fad5b-d9cb-469f-a165-70867728950e  -> Uuid
    /// IMEI:12                                    -> Other (wrong length)
    /// ```
    pub fn of(device_id: &str) -> Self {
        let Some((prefix, body)) = device_id.split_once(':') else {
            return DeviceIdKind::Other;
        };
        let all = |length: usize, digit: fn(&u8) -> bool| body.len() == length && body.bytes().all(|b| digit(&b));
        match prefix.to_ascii_uppercase().as_str() {
            "IMEI" if all(15, u8::is_ascii_digit) => DeviceIdKind::Imei,
            "ESN" if all(8, u8::is_ascii_hexdigit) => DeviceIdKind::Esn,
            "MEID" if all(14, u8::is_ascii_hexdigit) => DeviceIdKind::Meid,
            "UUID" if is_uuid(body) => DeviceIdKind::Uuid,
            _ => DeviceIdKind::Other,
        }
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, length)| group.len() == length && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl DevInfo {
    /// `urn:oma:mo:oma-dm-devinfo:1.2`
    pub const MOID: &'static str = "urn:oma:mo:oma-dm-devinfo:1.2";

    /// The form of [`DevInfo::device_id`].
    pub fn device_id_kind(&self) -> DeviceIdKind {
        DeviceIdKind::of(&self.device_id)
    }

    /// The MOData object of this instance.
    pub fn to_mo_data(&self) -> Value {
        MoDataWriter::default()
            .chr(DEV_ID, &self.device_id)
            .chr(MAN, &self.manufacturer)
            .chr(MOD, &self.model)
            .chr(DM_V, &self.dm_client_version)
            .chr(LANG, &self.language)
            .chr(DEV_TYPE, &self.device_type)
            .chr(OEM, &self.oem)
            .chr(FW_V, &self.firmware_version)
            .chr(SW_V, &self.software_version)
            .chr(HW_V, &self.hardware_version)
            .optional_subtree(BEARER, self.bearer.as_ref())
            .optional_subtree(EXT, self.extensions.as_ref())
            .finish()
    }

    /// Reads one instance from its MOData; every leaf of 11.1 is required.
    pub fn from_mo_data(mo_data: &Value) -> Result<Self, MoError> {
        let root = Interior::instance_root(mo_data, "DevInfo", &CHILDREN)?;
        Ok(DevInfo {
            device_id: root.required_chr(DEV_ID)?,
            manufacturer: root.required_chr(MAN)?,
            model: root.required_chr(MOD)?,
            dm_client_version: root.required_chr(DM_V)?,
            language: root.required_chr(LANG)?,
            device_type: root.required_chr(DEV_TYPE)?,
            oem: root.required_chr(OEM)?,
            firmware_version: root.required_chr(FW_V)?,
            software_version: root.required_chr(SW_V)?,
            hardware_version: root.required_chr(HW_V)?,
            bearer: root.subtree(BEARER)?,
            extensions: root.subtree(EXT)?,
        })
    }
}

impl_management_object!(DevInfo);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn device_id_kinds_follow_the_well_known_urns() {
        assert_eq!(DeviceIdKind::of("IMEI:493005100592800"), DeviceIdKind::Imei);
        assert_eq!(DeviceIdKind::of("imei:493005100592800"), DeviceIdKind::Imei);
        assert_eq!(DeviceIdKind::of("ESN:8034AB2F"), DeviceIdKind::Esn);
        assert_eq!(DeviceIdKind::of("MEID:A0000012345678"), DeviceIdKind::Meid);
        assert_eq!(DeviceIdKind::of("UUID:0f8fad5b-d9cb-469f-a165-70867728950e"), DeviceIdKind::Uuid);
        assert_eq!(DeviceIdKind::of("IMEI:49300510059280"), DeviceIdKind::Other);
        assert_eq!(DeviceIdKind::of("UUID:0f8fad5b-d9cb-469f-a165"), DeviceIdKind::Other);
        assert_eq!(DeviceIdKind::of("MAC:00:11:22:33:44:55"), DeviceIdKind::Other);
        assert_eq!(DeviceIdKind::of("serial-42"), DeviceIdKind::Other);
    }

    #[test]
    fn missing_leaf_names_its_path() {
        let mut mo_data = json!({
            "DevID": "IMEI:493005100592800", "Man": "M", "Mod": "X", "DmV": "2.0", "Lang": "en",
            "DevType": "phone", "OEM": "O", "FwV": "1", "SwV": "2"
        });
        assert_eq!(DevInfo::from_mo_data(&mo_data), Err(MoError::MissingNode { path: "DevInfo/HwV".into() }));
        mo_data["HwV"] = json!("3");
        mo_data["Ext"] = json!("not a node");
        assert_eq!(
            DevInfo::from_mo_data(&mo_data),
            Err(MoError::NotAnInteriorNode { path: "DevInfo/Ext".into(), found: "a string" })
        );
    }
}
