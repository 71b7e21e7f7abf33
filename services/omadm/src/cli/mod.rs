//! Protocol tool subcommands: each module parses its arguments, calls omadm-proto and returns what to print.

pub mod notification;
pub mod uri;

/// What a subcommand prints on success.
#[derive(Debug)]
pub enum Output {
    /// Pretty-printed JSON.
    Json(serde_json::Value),
    /// One line of plain text (e.g. a hex package meant to be piped on).
    Text(String),
}
