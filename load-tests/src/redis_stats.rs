//! What Redis itself counted: `INFO commandstats` (commands by name, inside and outside scripts) and memory.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

/// Calls per command name at one moment.
#[derive(Debug, Clone, Default)]
pub struct CommandStats {
    calls: BTreeMap<String, u64>,
}

/// Commands Redis ran between two readings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CommandDelta {
    /// Every command, those a script ran counted under their own names too (INFO does not tell them apart).
    pub commands: u64,
    /// Script calls: one round trip each.
    pub evalsha: u64,
    /// The busiest command names, with their calls.
    pub by_name: BTreeMap<String, u64>,
}

impl CommandStats {
    pub fn read(url: &str) -> anyhow::Result<CommandStats> {
        let text = info(url, "commandstats")?;
        let mut calls = BTreeMap::new();
        for line in text.lines() {
            // cmdstat_get:calls=12,usec=34,...
            let Some(rest) = line.strip_prefix("cmdstat_") else { continue };
            let Some((name, values)) = rest.split_once(':') else { continue };
            let count = values
                .split(',')
                .find_map(|pair| pair.strip_prefix("calls="))
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0);
            calls.insert(name.to_owned(), count);
        }
        Ok(CommandStats { calls })
    }

    /// What ran since `earlier`, leaving out the INFO calls of the readings themselves.
    pub fn since(&self, earlier: &CommandStats) -> CommandDelta {
        let mut by_name = BTreeMap::new();
        for (name, calls) in &self.calls {
            let before = earlier.calls.get(name).copied().unwrap_or(0);
            let delta = calls.saturating_sub(before);
            if delta > 0 && name != "info" {
                by_name.insert(name.clone(), delta);
            }
        }
        let commands = by_name.values().sum();
        let evalsha = by_name.get("evalsha").copied().unwrap_or(0) + by_name.get("eval").copied().unwrap_or(0);
        CommandDelta { commands, evalsha, by_name }
    }
}

/// `used_memory` in bytes.
pub fn used_memory(url: &str) -> anyhow::Result<u64> {
    let text = info(url, "memory")?;
    text.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .context("no used_memory in INFO memory")
}

fn info(url: &str, section: &str) -> anyhow::Result<String> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_connection()?;
    Ok(redis::cmd("INFO").arg(section).query::<String>(&mut connection)?)
}
