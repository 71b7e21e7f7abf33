//! PLACEHOLDER: `omadm notification encode|decode`, filled in by its own change.

use super::Output;

#[derive(Debug, clap::Subcommand)]
pub enum NotificationCommand {
    /// Not implemented yet.
    Encode,
}

pub fn run(command: NotificationCommand) -> anyhow::Result<Output> {
    anyhow::bail!("{command:?} is not implemented yet")
}
