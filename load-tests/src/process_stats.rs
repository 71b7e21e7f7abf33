//! CPU time and resident memory of a process, read from /proc (Linux), so every figure names what it cost.

use anyhow::Context as _;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// A process's user + system CPU time, in clock ticks, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuTime {
    ticks: u64,
}

impl CpuTime {
    pub fn of_self() -> anyhow::Result<CpuTime> {
        Self::read("self", false)
    }

    pub fn of(pid: u32) -> anyhow::Result<CpuTime> {
        Self::read(&pid.to_string(), false)
    }

    /// The children this process waited for (cutime + cstime): what a spawned and finished devsim used.
    pub fn of_waited_children() -> anyhow::Result<CpuTime> {
        Self::read("self", true)
    }

    fn read(pid: &str, children: bool) -> anyhow::Result<CpuTime> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("/proc/{pid}/stat"))?;
        // The command name (field 2) may hold spaces: fields are counted from the ')' that closes it.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc stat")?;
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // utime, stime, cutime, cstime are fields 14..17 of the line, 12..15 after the name's field 2.
        let field = |index: usize| -> anyhow::Result<u64> {
            Ok(fields.get(index).context("short /proc stat")?.parse::<u64>()?)
        };
        let ticks = if children { field(13)? + field(14)? } else { field(11)? + field(12)? };
        Ok(CpuTime { ticks })
    }

    /// CPU seconds from `earlier` to this reading.
    pub fn since(self, earlier: CpuTime) -> f64 {
        self.ticks.saturating_sub(earlier.ticks) as f64 / TICKS_PER_SECOND
    }
}

/// Resident set size of `pid` in bytes (VmRSS), or 0 when the process is gone.
pub fn resident_bytes(pid: u32) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
