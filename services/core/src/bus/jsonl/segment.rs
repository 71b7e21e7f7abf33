//! The files of one JSONL topic: the active segment and the rotated ones, each named by its first line.
//!
//! Lines are numbered per topic from 0, across segments, so a delivery's
//! offset never goes back when a file is rotated. A rotated segment is
//! complete and never written again; its name carries the number of its first
//! line, zero-padded so that names sort by age:
//!
//! ```text
//! omadm.results.jsonl                          the active segment: appended to
//! omadm.results.00000000000000120000.jsonl     lines 120000 up to the next segment's first line
//! omadm.results.00000000000000000000.jsonl     lines 0 to 119999 (until retention deletes it)
//! ```
//!
//! The active segment's first line is not stored anywhere: it is the newest
//! rotated segment's first line plus its line count (0 when none is left, or
//! none was ever rotated). The directory alone is the state, so a crash between
//! the two steps of a rotation (rename, then create) leaves nothing to repair.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

/// Digits of a rotated segment's first line in its name.
const FIRST_LINE_DIGITS: usize = 20;

/// Where the segments of one topic live.
#[derive(Debug, Clone)]
pub(in crate::bus) struct SegmentFiles {
    directory: PathBuf,
    /// `{prefix}{topic}`, e.g. `omadm.results`.
    stem: String,
}

impl SegmentFiles {
    pub(in crate::bus) fn new(directory: &Path, stem: String) -> Self {
        SegmentFiles { directory: directory.to_owned(), stem }
    }

    /// `{prefix}{topic}`: what the topic's file names start with.
    pub(in crate::bus) fn stem(&self) -> &str {
        &self.stem
    }

    /// `{stem}.jsonl`: the segment publishers append to.
    pub(in crate::bus) fn active(&self) -> PathBuf {
        self.directory.join(format!("{}.jsonl", self.stem))
    }

    /// `{stem}.{first_line:020}.jsonl`: a rotated segment.
    pub(in crate::bus) fn rotated(&self, first_line: i64) -> PathBuf {
        self.directory.join(format!("{}.{first_line:0width$}.jsonl", self.stem, width = FIRST_LINE_DIGITS))
    }

    /// The first lines of the rotated segments present, oldest first.
    pub(in crate::bus) fn rotated_first_lines(&self) -> std::io::Result<Vec<i64>> {
        let mut first_lines = Vec::new();
        for entry in std::fs::read_dir(&self.directory)? {
            let name = entry?.file_name();
            if let Some(first_line) = name.to_str().and_then(|name| self.first_line_of(name)) {
                first_lines.push(first_line);
            }
        }
        first_lines.sort_unstable();
        Ok(first_lines)
    }

    /// The first line of a rotated segment named `name`, when it is one of this topic's.
    fn first_line_of(&self, name: &str) -> Option<i64> {
        let digits = name.strip_prefix(self.stem.as_str())?.strip_prefix('.')?.strip_suffix(".jsonl")?;
        if digits.len() != FIRST_LINE_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// The number of the active segment's first line, and the newest rotated segment it follows.
    pub(in crate::bus) fn active_first_line(&self) -> std::io::Result<ActiveStart> {
        let newest = self.rotated_first_lines()?.last().copied();
        let first_line = match newest {
            Some(first_line) => first_line + count_lines(&self.rotated(first_line))?,
            None => 0,
        };
        Ok(ActiveStart { first_line, after_rotated: newest })
    }
}

/// Where the active segment starts, and which rotated segment that was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bus) struct ActiveStart {
    pub first_line: i64,
    pub after_rotated: Option<i64>,
}

/// The whole lines of a file (a last line without its newline is not counted); 0 for a missing file.
pub(in crate::bus) fn count_lines(path: &Path) -> std::io::Result<i64> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let mut buffer = vec![0_u8; 256 * 1024];
    let mut lines: i64 = 0;
    loop {
        let read = file.read(&mut buffer)?;
        let Some(chunk) = buffer.get(..read).filter(|chunk| !chunk.is_empty()) else { break };
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as i64;
    }
    Ok(lines)
}

/// Makes renames and deletions in `directory` durable.
pub(in crate::bus) fn sync_directory(directory: &Path) -> std::io::Result<()> {
    File::open(directory).and_then(|directory| directory.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_by_first_line_and_parse_back() {
        let files = SegmentFiles::new(Path::new("/events"), "omadm.results".to_owned());
        assert_eq!(files.active(), Path::new("/events/omadm.results.jsonl"));
        assert_eq!(files.rotated(120_000), Path::new("/events/omadm.results.00000000000000120000.jsonl"));
        assert_eq!(files.first_line_of("omadm.results.00000000000000120000.jsonl"), Some(120_000));
        for other in [
            "omadm.results.jsonl",
            "omadm.results.120000.jsonl",
            "omadm.resultsX00000000000000120000.jsonl",
            "omadm.alerts.00000000000000120000.jsonl",
            "omadm.results.0000000000000012000a.jsonl",
            "omadm.results.00000000000000120000.jsonl.tmp",
        ] {
            assert_eq!(files.first_line_of(other), None, "{other}");
        }
    }

    #[test]
    fn the_active_segment_starts_after_the_newest_rotated_one() {
        let directory = tempfile::tempdir().unwrap();
        let files = SegmentFiles::new(directory.path(), "omadm.results".to_owned());
        assert_eq!(files.active_first_line().unwrap(), ActiveStart { first_line: 0, after_rotated: None });
        std::fs::write(files.rotated(0), b"a\nb\n").unwrap();
        std::fs::write(files.rotated(2), b"c\nd\ne\npartial").unwrap();
        std::fs::write(files.active(), b"f\n").unwrap();
        assert_eq!(files.rotated_first_lines().unwrap(), vec![0, 2]);
        assert_eq!(files.active_first_line().unwrap(), ActiveStart { first_line: 5, after_rotated: Some(2) });
        assert_eq!(count_lines(&directory.path().join("missing")).unwrap(), 0);
    }
}
