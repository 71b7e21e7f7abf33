//! Fleet profiles: who the simulated devices are (ids, credentials, models, firmware), from flags or a file.

use std::path::Path;

use serde::Deserialize;

/// One model in a fleet and its share of the devices.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelShare {
    pub model: String,
    pub fwv: String,
    /// Relative weight; models get devices in proportion (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// A fleet: how many devices and what they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetProfile {
    pub devices: u32,
    pub id_prefix: String,
    pub password: String,
    #[serde(default = "default_manufacturer")]
    pub manufacturer: String,
    pub models: Vec<ModelShare>,
}

fn default_manufacturer() -> String {
    "omadm-devsim".to_owned()
}

/// What a profile file may say; anything left out keeps the flag's value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    devices: Option<u32>,
    id_prefix: Option<String>,
    password: Option<String>,
    manufacturer: Option<String>,
    models: Option<Vec<ModelShare>>,
}

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read the profile {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the profile {path} is not valid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("{0}")]
    Bounds(String),
}

/// Most devices one process plays.
pub const MAX_DEVICES: u32 = 100_000;

/// One simulated device's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub index: u32,
    pub device_id: String,
    pub model: String,
    pub fwv: String,
}

impl FleetProfile {
    /// The fleet the flags alone describe: one model.
    pub fn from_flags(devices: u32, id_prefix: &str, password: &str, model: &str, fwv: &str) -> FleetProfile {
        FleetProfile {
            devices,
            id_prefix: id_prefix.to_owned(),
            password: password.to_owned(),
            manufacturer: default_manufacturer(),
            models: vec![ModelShare { model: model.to_owned(), fwv: fwv.to_owned(), weight: 1 }],
        }
    }

    /// Overlays a profile file's text (TOML, or JSON when `json`) on this profile.
    pub fn overlay(mut self, text: &str, json: bool, path: &str) -> Result<FleetProfile, ProfileError> {
        let file: ProfileFile = if json {
            serde_json::from_str(text).map_err(|error| invalid(path, error.to_string()))?
        } else {
            toml::from_str(text).map_err(|error| invalid(path, error.to_string()))?
        };
        if let Some(devices) = file.devices {
            self.devices = devices;
        }
        if let Some(id_prefix) = file.id_prefix {
            self.id_prefix = id_prefix;
        }
        if let Some(password) = file.password {
            self.password = password;
        }
        if let Some(manufacturer) = file.manufacturer {
            self.manufacturer = manufacturer;
        }
        if let Some(models) = file.models {
            self.models = models;
        }
        Ok(self)
    }

    /// Reads a profile file and overlays it.
    pub fn overlay_file(self, path: &Path) -> Result<FleetProfile, ProfileError> {
        let shown = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: shown.clone(), source })?;
        let json = path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("json"));
        self.overlay(&text, json, &shown)
    }

    /// Checks the bounds: 1..=100,000 devices, at least one model with weight, non-empty password.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.devices == 0 || self.devices > MAX_DEVICES {
            return Err(ProfileError::Bounds(format!("devices must be 1..={MAX_DEVICES}, not {}", self.devices)));
        }
        if self.models.is_empty() || self.models.iter().all(|share| share.weight == 0) {
            return Err(ProfileError::Bounds("a profile needs at least one model with a weight above 0".into()));
        }
        if self.password.is_empty() {
            return Err(ProfileError::Bounds("the device password must not be empty".into()));
        }
        Ok(())
    }

    /// The device at `index`: id `<prefix><index:06>`, the model chosen by weight round-robin so any prefix of
    /// the fleet has the models in proportion.
    pub fn device(&self, index: u32) -> DeviceSpec {
        let total_weight: u64 = self.models.iter().map(|share| u64::from(share.weight)).sum();
        let mut slot = u64::from(index) % total_weight.max(1);
        let mut chosen = self.models.first();
        for share in &self.models {
            if slot < u64::from(share.weight) {
                chosen = Some(share);
                break;
            }
            slot -= u64::from(share.weight);
        }
        let (model, fwv) = chosen.map(|share| (share.model.clone(), share.fwv.clone())).unwrap_or_default();
        DeviceSpec { index, device_id: device_id(&self.id_prefix, index), model, fwv }
    }
}

fn invalid(path: &str, reason: String) -> ProfileError {
    ProfileError::Invalid { path: path.to_owned(), reason }
}

/// The id of device `index`: the prefix and the index padded to 6 digits (sorts in order up to 999,999).
pub fn device_id(prefix: &str, index: u32) -> String {
    format!("{prefix}{index:06}")
}

/// The loopback address device `index` receives notifications on: 127.0.0.2 onwards, skipping 127.0.0.1 (the
/// usual server address) and any address ending in .0 or .255.
pub fn notify_address(index: u32) -> std::net::Ipv4Addr {
    // 254 usable last octets (1..=254) per /24; the first usable one (127.0.0.1) is skipped.
    let slot = index + 1;
    let last = slot % 254 + 1;
    let block = slot / 254;
    let [_, _, high, low] = block.to_be_bytes();
    std::net::Ipv4Addr::new(127, high, low, u8::try_from(last).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> FleetProfile {
        FleetProfile::from_flags(10, "sim-", "pw", "M1", "1.0")
    }

    #[test]
    fn ids_are_prefix_and_padded_index() {
        assert_eq!(device_id("sim-", 7), "sim-000007");
        assert_eq!(flags().device(42).device_id, "sim-000042");
    }

    #[test]
    fn toml_profile_overlays_the_flags_and_mixes_models_by_weight() {
        let text = "devices = 4\npassword = \"p2\"\n[[models]]\nmodel = \"A\"\nfwv = \"1\"\nweight = 3\n[[models]]\nmodel = \"B\"\nfwv = \"2\"\n";
        let profile = flags().overlay(text, false, "p.toml").unwrap();
        assert_eq!(profile.devices, 4);
        assert_eq!(profile.password, "p2");
        assert_eq!(profile.id_prefix, "sim-");
        let models: Vec<String> = (0..8).map(|index| profile.device(index).model).collect();
        assert_eq!(models, ["A", "A", "A", "B", "A", "A", "A", "B"]);
        assert_eq!(profile.device(3).fwv, "2");
    }

    #[test]
    fn json_profile_is_read_and_unknown_fields_refused() {
        let profile = flags().overlay(r#"{"id_prefix": "x-", "models": [{"model": "J", "fwv": "9"}]}"#, true, "p.json");
        assert_eq!(
            profile.unwrap().device(0),
            DeviceSpec { index: 0, device_id: "x-000000".into(), model: "J".into(), fwv: "9".into() }
        );
        let error = flags().overlay(r#"{"devics": 3}"#, true, "p.json").unwrap_err();
        assert!(error.to_string().contains("devics"), "{error}");
    }

    #[test]
    fn bounds_are_checked() {
        assert!(flags().validate().is_ok());
        assert!(FleetProfile { devices: 0, ..flags() }.validate().is_err());
        assert!(FleetProfile { devices: MAX_DEVICES + 1, ..flags() }.validate().is_err());
        assert!(FleetProfile { devices: MAX_DEVICES, ..flags() }.validate().is_ok());
        assert!(FleetProfile { models: vec![], ..flags() }.validate().is_err());
        assert!(FleetProfile { password: String::new(), ..flags() }.validate().is_err());
    }

    #[test]
    fn notify_addresses_are_distinct_loopback_and_never_dot_one_zero_or_broadcast() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..MAX_DEVICES {
            let address = notify_address(index);
            let [first, _, _, last] = address.octets();
            assert_eq!(first, 127);
            assert!(last != 0 && last != 255, "{address}");
            assert_ne!(address, std::net::Ipv4Addr::new(127, 0, 0, 1));
            assert!(seen.insert(address), "{address} twice");
        }
        assert_eq!(notify_address(0), std::net::Ipv4Addr::new(127, 0, 0, 2));
    }
}
