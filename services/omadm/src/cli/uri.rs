//! PLACEHOLDER: `omadm uri parse|resolve`, filled in by its own change.

use super::Output;

#[derive(Debug, clap::Subcommand)]
pub enum UriCommand {
    /// Not implemented yet.
    Parse,
}

pub fn run(command: UriCommand) -> anyhow::Result<Output> {
    anyhow::bail!("{command:?} is not implemented yet")
}
