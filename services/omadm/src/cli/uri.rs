//! `omadm uri parse|resolve`: inspect a ClientURI, and resolve it against a management tree file.
//!
//! ```text
//! $ omadm uri parse 'urn:oma:mo:moid:1.0/(x)/Data/*/Value?nv=(x)/ID:GPS'
//! $ omadm uri resolve --tree tree.json 'urn:oma:mo:moid:1.0/*/Setting'
//! ```
//!
//! The tree file is a JSON array of dmmo+json MO instances (spec 7.5):
//! `[{"MOID": "urn:oma:mo:moid:1.0", "MIID": "left", "MOData": {"ID": "GPS"}}]`.

use std::path::PathBuf;

use anyhow::Context as _;
use omadm_proto::tree::{ManagementTree, ReadOutcome, ResolveError, ResolvedNode};
use omadm_proto::uri::{ClientUri, InstanceSelector, NodeSelector, NodeValue};
use serde_json::{Value, json};

use super::Output;

#[derive(Debug, clap::Subcommand)]
pub enum UriCommand {
    /// Parse a ClientURI and print its parts and canonical form as JSON.
    Parse {
        /// The ClientURI, e.g. 'urn:oma:mo:moid:1.0/(x)/Data/1/Value?nv=(x)/ID:GPS'.
        uri: String,
    },
    /// Resolve a ClientURI against a tree file and print the matched nodes as JSON.
    ///
    /// Prints an array with one object per node: {moid, miid, path (from the
    /// instance root, "" for the root), value (a leaf's value or the subtree,
    /// cut at lv=)}. With --cache it reads as a GET would: each object also
    /// carries cv (the instance's cache validator), and a current cv= in the
    /// URI prints {"status": 304} instead of the nodes.
    Resolve {
        /// JSON array of dmmo+json MO instances: [{"MOID", "MIID", "MOData"}, ...].
        #[arg(long, value_name = "TREE.json")]
        tree: PathBuf,
        /// Honour cv= as a GET does, and print each instance's cache validator.
        #[arg(long)]
        cache: bool,
        /// The ClientURI to resolve.
        uri: String,
    },
}

pub fn run(command: UriCommand) -> anyhow::Result<Output> {
    match command {
        UriCommand::Parse { uri } => {
            let parsed = parse(&uri)?;
            Ok(Output::Json(describe(&parsed)))
        }
        UriCommand::Resolve { tree, uri, cache } => {
            let parsed = parse(&uri)?;
            let bytes = std::fs::read(&tree).with_context(|| format!("cannot read tree file {}", tree.display()))?;
            let management_tree = ManagementTree::from_dmmo_slice(&bytes)
                .with_context(|| format!("invalid tree file {}", tree.display()))?;
            resolve(&management_tree, &parsed, cache).map(Output::Json)
        }
    }
}

fn parse(text: &str) -> anyhow::Result<ClientUri> {
    ClientUri::parse(text).with_context(|| format!("invalid ClientURI {text:?}"))
}

/// The parsed URI as JSON: every component, and the canonical text it prints as.
fn describe(uri: &ClientUri) -> Value {
    let instance = match &uri.instance {
        InstanceSelector::Miid(miid) => json!({"kind": "miid", "value": miid}),
        InstanceSelector::XName(letter) => json!({"kind": "x-name", "value": letter.to_string()}),
        InstanceSelector::Sole => json!({"kind": "sole"}),
        InstanceSelector::Wildcard => json!({"kind": "wildcard"}),
    };
    let path: Vec<Value> = uri
        .path
        .iter()
        .map(|segment| match segment {
            NodeSelector::Name(name) => json!({"kind": "name", "value": name}),
            NodeSelector::XName(letter) => json!({"kind": "x-name", "value": letter.to_string()}),
            NodeSelector::Wildcard => json!({"kind": "wildcard"}),
        })
        .collect();
    let node_values: Vec<Value> = uri.query.node_values.iter().map(describe_node_value).collect();
    let unknown: Vec<Value> =
        uri.query.unknown.iter().map(|(name, value)| json!({"name": name, "value": value})).collect();
    json!({
        "moid": uri.moid,
        "instance": instance,
        "path": path,
        "query": {
            "lv": uri.query.level,
            "nv": node_values,
            "cv": uri.query.cache_validator,
            "unknown": unknown,
        },
        "canonical": uri.to_string(),
    })
}

fn describe_node_value(node_value: &NodeValue) -> Value {
    json!({"x-name": node_value.x_name.to_string(), "path": node_value.path, "value": node_value.value})
}

fn resolve(tree: &ManagementTree, uri: &ClientUri, cache: bool) -> anyhow::Result<Value> {
    let failed =
        |error: ResolveError| anyhow::anyhow!("cannot resolve {uri}: {error} (status {})", error.status_code());
    let nodes = if cache {
        match tree.read(uri).map_err(failed)? {
            ReadOutcome::NotModified => return Ok(json!({"status": 304})),
            ReadOutcome::Nodes(nodes) => nodes,
        }
    } else {
        tree.resolve(uri).map_err(failed)?
    };
    Ok(Value::Array(nodes.iter().map(|node| describe_match(node, uri.query.level, cache)).collect()))
}

fn describe_match(node: &ResolvedNode<'_>, level: Option<u32>, with_validator: bool) -> Value {
    let mut described = json!({
        "moid": node.moid(),
        "miid": node.miid(),
        "path": node.path_text(),
        "value": node.value_json(level),
    });
    if with_validator && let Some(object) = described.as_object_mut() {
        object.insert("cv".to_owned(), json!(node.instance().cache_validator()));
    }
    described
}
