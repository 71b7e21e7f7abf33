//! Shared inputs for omadm's criterion benches (the benches themselves live in benches/).

use omadm_proto::tree::{InteriorNode, LeafValue, ManagementTree, MoInstance, Node, TreeError};

/// MOID of the generated bench tree.
pub const GENERATED_MOID: &str = "urn:oma:mo:bench:1.0";

/// Instances in [`generated_tree_10k`].
pub const GENERATED_INSTANCES: usize = 10;

/// `Data/<n>` entries per instance in [`generated_tree_10k`]: with ID, Name,
/// Setting and Data itself, 4 + 332 × 3 = 1,000 nodes per instance.
pub const GENERATED_ENTRIES: usize = 332;

/// A 10,000-node tree: [`GENERATED_INSTANCES`] instances of [`GENERATED_MOID`]
/// with 1,000 nodes each, shaped like the 6.1.3 examples so the same kinds of
/// ClientURI apply:
///
/// ```text
/// urn:oma:mo:bench:1.0/inst7/ID            = "sensor-7"
/// urn:oma:mo:bench:1.0/inst7/Data/250/Date = "2024.250"
/// urn:oma:mo:bench:1.0/inst7/Data/250/Value = 7250
/// ```
pub fn generated_tree_10k() -> Result<ManagementTree, TreeError> {
    generated_tree(GENERATED_INSTANCES, GENERATED_ENTRIES)
}

/// A tree of `instances` instances with `entries` `Data/<n>` entries each
/// (4 + 3 × `entries` nodes per instance).
pub fn generated_tree(instances: usize, entries: usize) -> Result<ManagementTree, TreeError> {
    let mut tree = ManagementTree::new();
    for index in 0..instances {
        tree.insert_instance(generated_instance(index, entries)?)?;
    }
    Ok(tree)
}

/// Instance `inst<index>` of the generated tree.
pub fn generated_instance(index: usize, entries: usize) -> Result<MoInstance, TreeError> {
    let mut data = InteriorNode::new();
    for entry in 0..entries {
        let value = i64::try_from(index * 1000 + entry).unwrap_or(i64::MAX);
        let item = InteriorNode::new()
            .with_child("Date", LeafValue::Chr(format!("2024.{entry}")))?
            .with_child("Value", LeafValue::Int(value))?;
        data.insert_child(entry.to_string(), Node::Interior(item))?;
    }
    let root = InteriorNode::new()
        .with_child("ID", LeafValue::Chr(format!("sensor-{index}")))?
        .with_child("Name", LeafValue::Chr(format!("Sensor number {index}")))?
        .with_child("Setting", LeafValue::Int(i64::try_from(index).unwrap_or(i64::MAX)))?
        .with_child("Data", data)?;
    let mut instance = MoInstance::new(GENERATED_MOID, format!("inst{index}"))?;
    instance.replace_root(root)?;
    Ok(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tree_has_ten_thousand_nodes() {
        let tree = generated_tree_10k().unwrap();
        assert_eq!(tree.instance_count(), GENERATED_INSTANCES);
        assert_eq!(tree.instances().map(MoInstance::node_count).sum::<usize>(), 10_000);
        let instance = tree.instance(GENERATED_MOID, "inst7").unwrap();
        assert_eq!(instance.get(&["Data", "250", "Value"]).and_then(Node::as_leaf), Some(&LeafValue::Int(7250)));
    }
}
