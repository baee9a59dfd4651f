//! A bounded on-disk queue of lines (line-protocol points, or whatever a sink's
//! destination sends). Each interval is one file, written to a temporary name and
//! renamed, so a crash leaves whole intervals or nothing; a batch's files are deleted
//! only once the server took them (or refused them for good). A batch may be sent twice
//! (a crash between the answer and the deletion): InfluxDB overwrites a point with the
//! same series and timestamp.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

struct Segment {
    sequence: u64,
    bytes: u64,
    lines: u64,
    /// Part of the batch being sent: eviction must not count it twice.
    in_flight: bool,
    /// The lines themselves, when the disk refused them (full, or out of descriptors):
    /// sent from memory, within the same bound, rather than lost.
    held: Option<Vec<String>>,
}

struct State {
    segments: VecDeque<Segment>,
    bytes: u64,
    next_sequence: u64,
    evicted_lines: u64,
}

pub struct Spool {
    directory: PathBuf,
    max_bytes: AtomicU64,
    state: Mutex<State>,
    arrived: Condvar,
}

/// Lines read from the oldest segments, to be sent as one request.
pub struct Batch {
    sequences: Vec<u64>,
    pub lines: Vec<String>,
}

const SUFFIX: &str = "lp";

/// The spools open in this process, by directory: one spool per directory, whatever
/// number of sinks (an old and a new one across a reload) use it.
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<Spool>>>> = Mutex::new(None);

impl Spool {
    /// The spool in `directory`: the one already open there, or opened now.
    pub fn shared(directory: &Path, max_bytes: u64) -> anyhow::Result<Arc<Spool>> {
        let mut open = crate::locks::lock(&OPEN);
        let open = open.get_or_insert_with(HashMap::new);
        open.retain(|_, spool| spool.strong_count() > 0);
        if let Some(spool) = open.get(directory).and_then(Weak::upgrade) {
            spool.max_bytes.store(max_bytes, Ordering::Relaxed);
            return Ok(spool);
        }
        let spool = Arc::new(Spool::open(directory, max_bytes)?);
        open.insert(directory.to_path_buf(), Arc::downgrade(&spool));
        Ok(spool)
    }

    /// Opens (or creates) the spool in `directory`, keeping what an earlier run left.
    pub fn open(directory: &Path, max_bytes: u64) -> anyhow::Result<Spool> {
        crate::private_files::create_dir(directory).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the spool directory {}: {e}; set state_directory to a writable place",
                directory.display()
            )
        })?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(directory)? {
            let path = entry?.path();
            let sequence = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            match (sequence, path.extension().and_then(|e| e.to_str())) {
                (Some(sequence), Some(SUFFIX)) => {
                    let text = fs::read(&path)?;
                    segments.push(Segment {
                        sequence,
                        bytes: text.len() as u64,
                        lines: text.iter().filter(|&&b| b == b'\n').count() as u64,
                        in_flight: false,
                        held: None,
                    });
                }
                // A temporary file is an interval whose write a crash cut short.
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        segments.sort_by_key(|s| s.sequence);
        let state = State {
            bytes: segments.iter().map(|s| s.bytes).sum(),
            next_sequence: segments.last().map_or(0, |s| s.sequence + 1),
            segments: segments.into(),
            evicted_lines: 0,
        };
        Ok(Spool {
            directory: directory.to_path_buf(),
            max_bytes: AtomicU64::new(max_bytes),
            state: Mutex::new(state),
            arrived: Condvar::new(),
        })
    }

    fn path(&self, sequence: u64) -> PathBuf {
        self.directory.join(format!("{sequence:020}.{SUFFIX}"))
    }

    /// Appends one interval's lines; evicts the oldest intervals beyond the size bound.
    /// When the disk refuses them, they are kept in memory and sent from there, and the
    /// error says so.
    pub fn push(&self, lines: &[String]) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut state = crate::locks::lock(&self.state);
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        let bytes = lines.iter().map(|line| line.len() as u64).sum();
        let written = self.write_segment(sequence, lines);
        state.segments.push_back(Segment {
            sequence,
            bytes,
            lines: lines.len() as u64,
            in_flight: false,
            held: written.is_err().then(|| lines.to_vec()),
        });
        state.bytes += bytes;
        self.evict(&mut state);
        self.arrived.notify_all();
        // No count in the message: a lasting failure repeats it word for word, so the
        // log says it once a minute.
        written.map_err(|e| {
            anyhow::anyhow!(
                "cannot spool in {}: {e}; the points are kept in memory and sent from there",
                self.directory.display()
            )
        })
    }

    /// Writes a segment whole under a temporary name, then renames it; a failed write
    /// leaves no file behind.
    fn write_segment(&self, sequence: u64, lines: &[String]) -> std::io::Result<()> {
        let path = self.path(sequence);
        let temporary = path.with_extension("tmp");
        let written = (|| {
            let mut file = crate::private_files::create_file(&temporary)?;
            for line in lines {
                file.write_all(line.as_bytes())?;
            }
            file.flush()?;
            drop(file);
            fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }

    fn evict(&self, state: &mut State) {
        while state.bytes > self.max_bytes.load(Ordering::Relaxed) {
            let Some(index) = state.segments.iter().position(|s| !s.in_flight) else {
                return;
            };
            // The newest interval always stays.
            if index + 1 == state.segments.len() {
                return;
            }
            let Some(segment) = state.segments.remove(index) else {
                return;
            };
            let _ = fs::remove_file(self.path(segment.sequence));
            state.bytes -= segment.bytes;
            state.evicted_lines += segment.lines;
        }
    }

    /// Lines waiting to be sent.
    pub fn waiting(&self) -> u64 {
        let state = crate::locks::lock(&self.state);
        state.segments.iter().map(|s| s.lines).sum()
    }

    /// Lines evicted since the last call, to be counted as dropped.
    pub fn take_evicted(&self) -> u64 {
        let mut state = crate::locks::lock(&self.state);
        std::mem::take(&mut state.evicted_lines)
    }

    /// Waits up to `timeout` until at least `lines` lines wait or `stop` is set.
    pub fn wait_for(&self, lines: u64, timeout: Duration, stop: &AtomicBool) {
        let state = crate::locks::lock(&self.state);
        let waiting = |s: &State| s.segments.iter().map(|s| s.lines).sum::<u64>();
        let (state, _) = self
            .arrived
            .wait_timeout_while(state, timeout, |s| {
                waiting(s) < lines && !stop.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|e| e.into_inner());
        drop(state);
    }

    /// Wakes a waiting writer (at shutdown).
    pub fn wake(&self) {
        self.arrived.notify_all();
    }

    /// The oldest segments, whole, up to `max_lines` (at least one segment).
    pub fn take_batch(&self, max_lines: usize) -> anyhow::Result<Option<Batch>> {
        let mut state = crate::locks::lock(&self.state);
        let mut batch = Batch {
            sequences: Vec::new(),
            lines: Vec::new(),
        };
        let mut vanished = Vec::new();
        for segment in state.segments.iter_mut() {
            if !batch.lines.is_empty() && batch.lines.len() + segment.lines as usize > max_lines {
                break;
            }
            match &segment.held {
                Some(lines) => batch.lines.extend(lines.iter().cloned()),
                None => match fs::read_to_string(self.path(segment.sequence)) {
                    Ok(text) => batch
                        .lines
                        .extend(text.split_inclusive('\n').map(str::to_string)),
                    // Deleted by someone else: counted as dropped, not waited for.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                        vanished.push(segment.sequence);
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                },
            }
            batch.sequences.push(segment.sequence);
            segment.in_flight = true;
        }
        for sequence in vanished {
            if let Some(index) = state.segments.iter().position(|s| s.sequence == sequence) {
                let segment = state.segments.remove(index).expect("index from position");
                state.bytes -= segment.bytes;
                state.evicted_lines += segment.lines;
            }
        }
        Ok((!batch.sequences.is_empty()).then_some(batch))
    }

    /// Forgets a batch for good (sent, or refused as malformed).
    pub fn commit(&self, batch: &Batch) {
        let mut state = crate::locks::lock(&self.state);
        for sequence in &batch.sequences {
            if let Some(index) = state.segments.iter().position(|s| s.sequence == *sequence) {
                let segment = state.segments.remove(index).expect("index from position");
                state.bytes -= segment.bytes;
                let _ = fs::remove_file(self.path(*sequence));
            }
        }
    }

    /// Puts a batch back to be sent again later.
    pub fn release(&self, batch: &Batch) {
        let mut state = crate::locks::lock(&self.state);
        for segment in state.segments.iter_mut() {
            if batch.sequences.contains(&segment.sequence) {
                segment.in_flight = false;
            }
        }
        self.evict(&mut state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, tag: &str) -> Vec<String> {
        (0..n).map(|i| format!("m,t={tag} v={i}i {i}\n")).collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("netgraph-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn batches_survive_a_reopen_and_commit_removes_them() {
        let dir = scratch("reopen");
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.push(&lines(3, "a")).unwrap();
        spool.push(&lines(2, "b")).unwrap();
        drop(spool);
        std::fs::write(dir.join("00000000000000000099.tmp"), "half a line").unwrap();

        let spool = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(spool.waiting(), 5);
        let batch = spool.take_batch(4).unwrap().unwrap();
        assert_eq!(batch.lines, lines(3, "a"), "whole segments, oldest first");
        spool.commit(&batch);
        let batch = spool.take_batch(100).unwrap().unwrap();
        assert_eq!(batch.lines, lines(2, "b"));
        spool.release(&batch);
        spool.push(&lines(1, "c")).unwrap();
        let batch = spool.take_batch(100).unwrap().unwrap();
        assert_eq!(batch.lines.len(), 3);
        spool.commit(&batch);
        assert_eq!(spool.waiting(), 0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_refused_write_keeps_the_points_in_memory_and_leaves_no_file() {
        let dir = scratch("refused");
        let spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.push(&lines(2, "a")).unwrap();
        // The directory is gone (as good as a full disk): the write fails.
        fs::remove_dir_all(&dir).unwrap();
        let error = spool.push(&lines(3, "b")).unwrap_err().to_string();
        assert!(error.contains("kept in memory"), "{error}");
        fs::create_dir_all(&dir).unwrap();
        spool.push(&lines(1, "c")).unwrap();
        assert_eq!(spool.waiting(), 6);
        let on_disk: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            on_disk.len(),
            1,
            "only c's segment, no temporary file: {on_disk:?}"
        );
        // a's file went with the directory; b comes from memory, c from disk.
        let mut sent = Vec::new();
        while let Ok(Some(batch)) = spool.take_batch(1) {
            sent.extend(batch.lines.clone());
            spool.commit(&batch);
        }
        assert_eq!(sent, [lines(3, "b"), lines(1, "c")].concat());
        assert_eq!(
            spool.take_evicted(),
            2,
            "a's vanished file counts as dropped"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_size_bound_evicts_the_oldest_and_counts_them() {
        let dir = scratch("bound");
        let one = lines(10, "x");
        let size: u64 = one.iter().map(|l| l.len() as u64).sum();
        let spool = Spool::open(&dir, size * 3).unwrap();
        for _ in 0..5 {
            spool.push(&one).unwrap();
        }
        assert_eq!((spool.waiting(), spool.take_evicted()), (30, 20));
        assert_eq!(spool.take_evicted(), 0);
        let on_disk: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= size * 3);
        let _ = fs::remove_dir_all(&dir);
    }
}
