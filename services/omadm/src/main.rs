//! The `omadm` binary: every omadm role and tool behind one CLI.

mod cli;
mod serve;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::Output;

/// OMA DM 2.0 server cluster and protocol tools.
#[derive(Debug, Parser)]
#[command(name = "omadm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Package#0 (DM Notification): encode, sign, decode and verify.
    #[command(subcommand)]
    Notification(cli::notification::NotificationCommand),
    /// ClientURI: parse, and resolve against a management tree.
    #[command(subcommand)]
    Uri(cli::uri::UriCommand),
    /// Run the DM server on this node, with embedded store and event files under the data dir
    /// (or on shared Redis and Kafka with --store and --bus).
    Serve(Box<serve::ServeArgs>),
    /// Run one gateway node of a cluster (device edge, operator API, outbox relay) on shared Redis and Kafka.
    Gateway(Box<serve::ServeArgs>),
    /// Run the notifier role (Package#0 over WAP Push/UDP for notification.requested) on shared Redis and Kafka.
    Notifier(Box<serve::ServeArgs>),
    /// Run the campaigns role (rollouts in waves at a rate, following devices' results) on shared Redis and Kafka.
    Campaigns(Box<serve::ServeArgs>),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return report_usage_error(&error),
    };
    let result = match cli.command {
        Command::Notification(command) => cli::notification::run(command),
        Command::Uri(command) => cli::uri::run(command),
        Command::Serve(args) => return report_serve(serve::run(*args, serve::Role::Serve)),
        Command::Gateway(args) => return report_serve(serve::run(*args, serve::Role::Gateway)),
        Command::Notifier(args) => return report_serve(serve::run(*args, serve::Role::Notifier)),
        Command::Campaigns(args) => return report_serve(serve::run(*args, serve::Role::Campaigns)),
    };
    match result {
        Ok(output) => print_output(&output),
        Err(error) => {
            // One line, so scripts can show it as is.
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("omadm: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `omadm serve`, `gateway` and `notifier` print their own banner; only its failure is reported here, as one line.
fn report_serve(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let message = format!("{error:#}").replace('\n', " ");
            eprintln!("omadm: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_output(output: &Output) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let written = match output {
        Output::Json(value) => serde_json::to_writer_pretty(&mut stdout, value)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout)),
        Output::Text(text) => writeln!(stdout, "{text}"),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("omadm: error: cannot write output: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Help and version go to stdout as clap renders them; real usage errors are
/// cut to their first line so every failure of the tool is one line on stderr.
fn report_usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            // Keep what precedes the usage block, joined into one line
            // ("the following required arguments were not provided: <HEX>").
            let rendered = error.render().to_string();
            let message = rendered
                .lines()
                .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let first_line = message.trim_start_matches("error: ");
            eprintln!("omadm: error: {first_line}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap checks a command's arguments only when it is built: two roles' settings flattened into `serve` with
    /// one argument id fail at start-up, not at compile time. This builds every subcommand.
    #[test]
    fn every_subcommand_builds_with_unique_arguments() {
        super::Cli::command().debug_assert();
    }
}
