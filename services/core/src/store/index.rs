//! The inventory index both Store engines keep beside the device records: the terms a device is found by
//! (its Man, Mod, FwV, SwV, DevType and each tag) and the terms a [`DeviceFilter`] asks for. Pure.
//!
//! ```text
//! device {man: "ACME", mod: "X1", fwv: "1.2", tags: {region: "eu"}}
//!     -> ["fwv=1.2", "man=ACME", "mod=X1", "tag:6:region=eu"]
//! filter ?mod=X1&fwv=1.2                       -> ["mod=X1", "fwv=1.2"]
//!     the engine walks the ids of its rarest term in id order and keeps the devices that match the whole filter
//! ```
//!
//! A field's name ends at its `=`; a tag's key carries its byte length, so no key or value, whatever it holds,
//! makes two different terms the same text.

use std::collections::BTreeSet;

use crate::model::{Device, DeviceFilter};

/// Bumped when the terms of a device change meaning: an engine finding an older version rebuilds its index.
pub const INDEX_VERSION: u64 = 1;

fn field(name: &str, value: &str) -> String {
    format!("{name}={value}")
}

/// The indexed fields' names, in the order [`field_terms`] takes their values.
const FIELDS: [&str; 5] = ["man", "mod", "fwv", "swv", "devtype"];

/// The terms of the indexed fields that have a value, given Man, Mod, FwV, SwV and DevType in that order.
fn field_terms<'a>(values: [&'a Option<String>; 5]) -> impl Iterator<Item = String> + 'a {
    FIELDS.into_iter().zip(values).filter_map(|(name, value)| value.as_deref().map(|value| field(name, value)))
}

fn tag(key: &str, value: &str) -> String {
    format!("tag:{}:{key}={value}", key.len())
}

/// Every term `device` is found by, in order.
pub fn device_terms(device: &Device) -> BTreeSet<String> {
    let inventory = &device.inventory;
    let fields = [&inventory.man, &inventory.model, &inventory.fwv, &inventory.swv, &inventory.dev_type];
    field_terms(fields).chain(device.tags.iter().map(|(key, value)| tag(key, value))).collect()
}

/// The terms a device must have to match `filter`; empty for a filter that matches every device.
pub fn filter_terms(filter: &DeviceFilter) -> Vec<String> {
    let fields = [&filter.man, &filter.model, &filter.fwv, &filter.swv, &filter.dev_type];
    let mut terms: Vec<String> =
        field_terms(fields).chain(filter.tags.iter().map(|(key, value)| tag(key, value))).collect();
    terms.sort();
    terms.dedup();
    terms
}

/// What a write of a device changes in the index: the terms it leaves and the terms it joins.
pub fn term_changes(before: &BTreeSet<String>, after: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    (before.difference(after).cloned().collect(), after.difference(before).cloned().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;
    use crate::auth::credentials_for;

    fn device() -> Device {
        let mut device = Device::new("IMEI:1", credentials_for("IMEI:1", "omadm", "pw"), 0);
        device.inventory.man = Some("ACME".to_owned());
        device.inventory.model = Some("X1".to_owned());
        device.inventory.fwv = Some("1.2".to_owned());
        device.tags = BTreeMap::from([("region".to_owned(), "eu".to_owned())]);
        device
    }

    #[test]
    fn a_device_is_found_by_each_field_it_has_and_each_tag() {
        let terms: Vec<String> = device_terms(&device()).into_iter().collect();
        assert_eq!(terms, ["fwv=1.2", "man=ACME", "mod=X1", "tag:6:region=eu"]);
        let bare = Device::new("IMEI:2", credentials_for("IMEI:2", "omadm", "pw"), 0);
        assert!(device_terms(&bare).is_empty(), "nothing read yet, nothing to be found by");
    }

    #[test]
    fn a_filter_asks_for_the_terms_its_devices_have() {
        let filter = DeviceFilter {
            model: Some("X1".to_owned()),
            fwv: Some("1.2".to_owned()),
            tags: vec![("region".to_owned(), "eu".to_owned())],
            ..DeviceFilter::default()
        };
        let wanted = filter_terms(&filter);
        let terms = device_terms(&device());
        assert!(wanted.iter().all(|term| terms.contains(term)) && filter.matches(&device()));
        assert!(filter_terms(&DeviceFilter::default()).is_empty());
    }

    #[test]
    fn keys_and_values_cannot_forge_another_term() {
        // A key holding `=` and a value holding `:` would read alike without the key's length.
        assert_ne!(tag("a=b", "c"), tag("a", "b=c"));
        assert_ne!(field("man", "x"), tag("man", "x"));
        assert_ne!(tag("6:region", "eu"), tag("region", "eu"));
    }

    #[test]
    fn a_write_leaves_old_terms_and_joins_new_ones() {
        let before: BTreeSet<String> = ["fwv=1.2", "mod=X1"].map(str::to_owned).into();
        let after: BTreeSet<String> = ["fwv=1.3", "mod=X1"].map(str::to_owned).into();
        assert_eq!(term_changes(&before, &after), (vec!["fwv=1.2".to_owned()], vec!["fwv=1.3".to_owned()]));
        assert_eq!(term_changes(&after, &after), (vec![], vec![]));
    }
}
