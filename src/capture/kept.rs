//! Captures alert rules write: into the state directory's `captures/`, named after the
//! rule and the time it fired, at most `kept` of them (the oldest go) and each bounded.

use super::{CaptureJob, CaptureScope, SNAP_LENGTH};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct KeptCaptures {
    directory: PathBuf,
    kept: usize,
    max_bytes: u64,
}

impl KeptCaptures {
    pub fn new(state_directory: &Path, kept: usize, max_mib: u64) -> KeptCaptures {
        KeptCaptures {
            directory: state_directory.join("captures"),
            kept: kept.max(1),
            max_bytes: max_mib.saturating_mul(1 << 20),
        }
    }

    /// A capture for rule `rule` firing at `unix_time`, room made for it.
    pub fn job(
        &self,
        rule: &str,
        scope: CaptureScope,
        duration: Duration,
        unix_time: i64,
    ) -> std::io::Result<CaptureJob> {
        crate::private_files::create_dir(&self.directory)?;
        self.make_room()?;
        let time = chrono::DateTime::from_timestamp(unix_time, 0)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%SZ");
        let name: String = rule
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(CaptureJob {
            scope,
            path: self.directory.join(format!("{name}-{time}.pcapng")),
            duration,
            max_bytes: self.max_bytes,
            snap_length: SNAP_LENGTH,
            done: None,
        })
    }

    /// Removes the oldest captures until one more fits in `kept`.
    fn make_room(&self) -> std::io::Result<()> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.directory)?
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "pcapng"))
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        files.sort();
        let excess = (files.len() + 1).saturating_sub(self.kept);
        for (_, path) in files.into_iter().take(excess) {
            std::fs::remove_file(&path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_captures_go_and_names_are_safe() {
        let state = std::env::temp_dir().join(format!("netgraph-kept-{}", std::process::id()));
        let kept = KeptCaptures::new(&state, 2, 1);
        let mut made = Vec::new();
        for (second, rule) in [(0, "a"), (1, "b/../x"), (2, "c")] {
            let job = kept
                .job(
                    rule,
                    CaptureScope::default(),
                    Duration::from_secs(1),
                    1_700_000_000 + second,
                )
                .unwrap();
            std::fs::write(&job.path, b"x").unwrap();
            // Distinct modification times, oldest first.
            let file = std::fs::File::options()
                .write(true)
                .open(&job.path)
                .unwrap();
            file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1000 + second as u64))
                .unwrap();
            made.push(job.path);
        }
        assert_eq!(
            made[1].file_name().unwrap(),
            "b____x-20231114T221321Z.pcapng"
        );
        assert_eq!(made[1].parent().unwrap(), state.join("captures"));
        let left: Vec<bool> = made.iter().map(|path| path.exists()).collect();
        assert_eq!(left, [false, true, true], "two kept, the oldest gone");
        assert_eq!(kept.max_bytes, 1 << 20);
        std::fs::remove_dir_all(&state).unwrap();
    }
}
