//! Packet captures by owner: `netgraph capture` and alert rules ask for one (a scope,
//! a file, a duration and a size); the interval loop has the engine copy the scope's
//! packets, and a writer thread names each packet's owner and writes the file (pcapng),
//! so that capturing never holds up counting.

mod capturing;
pub mod command;
mod kept;
mod pcapng;
pub mod scope;
mod writer;

pub use capturing::Capturing;
pub use kept::KeptCaptures;
pub use scope::CaptureScope;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of each packet kept unless asked otherwise: whole packets (an offloaded one
/// up to what a kernel record holds).
pub const SNAP_LENGTH: u32 = 65_000;
/// Captures waiting while another runs, at most; more are refused.
const WAITING_AT_MOST: usize = 8;

/// One capture asked for.
#[derive(Debug)]
pub struct CaptureJob {
    pub scope: CaptureScope,
    pub path: PathBuf,
    pub duration: Duration,
    pub max_bytes: u64,
    pub snap_length: u32,
    /// Told how it ended.
    pub done: Option<crossbeam_channel::Sender<CaptureOutcome>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its duration passed.
    Time,
    /// The file reached its size.
    Size,
    /// netgraph stopped first.
    Stopped,
    /// It could not run (see `error`).
    Failed,
}

/// How a capture went.
#[derive(Clone, Debug)]
pub struct CaptureOutcome {
    pub path: PathBuf,
    pub packets: u64,
    /// The packets' lengths as they crossed their interfaces (IP bytes).
    pub bytes: u64,
    pub file_bytes: u64,
    /// Packets the kernel or the writer had no room for.
    pub lost: u64,
    pub ended: Ended,
    pub error: Option<String>,
}

impl CaptureOutcome {
    fn failed(path: PathBuf, error: String) -> CaptureOutcome {
        CaptureOutcome {
            path,
            packets: 0,
            bytes: 0,
            file_bytes: 0,
            lost: 0,
            ended: Ended::Failed,
            error: Some(error),
        }
    }
}

/// Where captures are asked for; shared by the interval loop and those who ask.
#[derive(Clone, Debug, Default)]
pub struct Captures(Arc<Mutex<Vec<CaptureJob>>>);

impl Captures {
    pub fn request(&self, job: CaptureJob) {
        crate::locks::lock(&self.0).push(job);
    }

    fn take(&self) -> Vec<CaptureJob> {
        std::mem::take(&mut *crate::locks::lock(&self.0))
    }
}
