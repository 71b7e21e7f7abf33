//! Fuzz target: load a management tree from arbitrary bytes (as a JSON list of dmmo+json
//! instances), and resolve the same bytes as a ClientURI against the docs/protocol-decisions.md tree. Never panics;
//! a tree that loads must serialize and load back equal.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use omadm_proto::tree::{DmmoDocument, ManagementTree};
use omadm_proto::uri::ClientUri;

const ADDRESSING_TREE: &[u8] = include_bytes!("../../tests/fixtures/spec/addressing_tree.json");

fn notes_tree() -> &'static ManagementTree {
    static TREE: OnceLock<ManagementTree> = OnceLock::new();
    TREE.get_or_init(|| ManagementTree::from_dmmo_slice(ADDRESSING_TREE).unwrap_or_default())
}

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = ManagementTree::from_dmmo_slice(data) {
        let bytes = tree.to_dmmo_json().to_string();
        let reloaded = ManagementTree::from_dmmo_slice(bytes.as_bytes());
        assert_eq!(reloaded.as_ref(), Ok(&tree), "a loaded tree must round-trip");
        for instance in tree.instances() {
            let _ = instance.cache_validator();
        }
    }
    let _ = DmmoDocument::from_slice(data);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = ClientUri::parse(text) else {
        return;
    };
    if let Ok(nodes) = notes_tree().resolve(&uri) {
        for node in &nodes {
            let _ = node.to_dmmo(uri.query.level).to_json();
        }
    }
    let _ = notes_tree().read(&uri);
});
