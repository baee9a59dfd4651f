//! `netgraph capture`: the packets of a process, pid, container or peer into a pcapng
//! file, each with its owner in its comment. Runs an engine of its own (a running
//! daemon goes on counting), for a bounded time and size.

use super::{CaptureJob, CaptureScope, Captures, Ended, SNAP_LENGTH};
use crate::accounting::Accountant;
use crate::config::{Config, EngineSetting};
use crate::startup::Settings;
use anyhow::{bail, Context};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  netgraph capture --process curl --for 30s -w curl.pcapng\n  netgraph capture --container web --peer 10.0.0.7 -w web.pcapng\nRead the file with tshark -r FILE -T fields -e frame.comment, or in Wireshark."
)]
pub struct CaptureArgs {
    /// The process's name (as `ps -o comm` shows it; the first 15 bytes count).
    #[arg(long)]
    pub process: Option<String>,
    /// The process's id.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The owner's user id.
    #[arg(long)]
    pub uid: Option<u32>,
    /// The container's name or id (12 hexadecimal digits or more).
    #[arg(long)]
    pub container: Option<String>,
    /// The interface, as netgraph names it.
    #[arg(long)]
    pub interface: Option<String>,
    /// The far end's address (IPv4 or IPv6).
    #[arg(long)]
    pub peer: Option<IpAddr>,
    /// How long to capture.
    #[arg(long = "for", default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Largest file, in MiB: the capture ends when it is reached.
    #[arg(long, default_value_t = 100)]
    pub max_mib: u64,
    /// Bytes kept of each packet (its length is kept whole).
    #[arg(long, default_value_t = SNAP_LENGTH)]
    pub snap_length: u32,
    /// The file to write (pcapng).
    #[arg(short = 'w', long = "write")]
    pub file: PathBuf,
    /// How to find the packets: eBPF (by owner, in the kernel) where the kernel
    /// allows it, else packet capture (by flow, named by attribution each second).
    #[arg(long, value_enum, default_value_t = EngineSetting::Auto)]
    pub engine: EngineSetting,
    /// Configuration file, for where the container runtimes listen ([containers]);
    /// default: /etc/netgraph/netgraph.toml where it exists.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
}

impl CaptureArgs {
    fn scope(&self) -> CaptureScope {
        CaptureScope {
            process: self.process.clone(),
            pid: self.pid,
            uid: self.uid,
            container: self.container.clone(),
            interface: self.interface.clone(),
            peer: self.peer,
        }
    }
}

/// The pipeline the capture runs in: an engine, attribution, no sinks.
fn start(
    engine: EngineSetting,
    runtimes: &crate::workload::RuntimeSockets,
) -> anyhow::Result<crate::pipeline::Pipeline> {
    let mut settings = Settings::defaults(engine);
    settings.interval = LOOP_INTERVAL;
    settings.runtimes = runtimes.clone();
    crate::startup::pipeline(
        &settings,
        Accountant::new(SystemTime::now()),
        Vec::new(),
        Vec::new(),
    )
    .context("cannot start counting")
}

/// How often the capture's own loop turns: a capture starts within this of netgraph
/// starting, and ends within this of its time.
const LOOP_INTERVAL: Duration = Duration::from_secs(1);

pub fn run(args: CaptureArgs, config: &Config) -> anyhow::Result<()> {
    let scope = args.scope();
    if scope == CaptureScope::default() {
        bail!("say whose packets to capture: --process NAME, --pid N, --uid N, --container NAME, --interface NAME or --peer ADDRESS");
    }
    if args.max_mib == 0 || args.snap_length == 0 || args.duration.is_zero() {
        bail!("--for, --max-mib and --snap-length must be more than 0");
    }
    // Said before an engine loads: a file that cannot be written.
    crate::private_files::create_file(&args.file)
        .with_context(|| format!("cannot create {}", args.file.display()))?;
    let snap_length = args.snap_length.min(SNAP_LENGTH);
    let captures = Captures::default();
    let (done, outcome) = crossbeam_channel::bounded(1);
    captures.request(CaptureJob {
        scope: scope.clone(),
        path: args.file.clone(),
        duration: args.duration,
        max_bytes: args.max_mib.saturating_mul(1 << 20),
        snap_length,
        done: Some(done),
    });
    let runtimes = config.containers.runtime_sockets();
    let mut pipeline = start(args.engine, &runtimes)?;
    // Auto: the eBPF engine where it can capture, else the capture engine.
    if args.engine == EngineSetting::Auto {
        let refused = pipeline
            .engine
            .features()
            .into_iter()
            .find(|feature| feature.name == "packet_capture" && feature.is_degraded());
        if let Some(refused) = refused {
            tracing::warn!(
                "the eBPF engine cannot capture here ({}): capturing with the capture engine",
                refused.describe()
            );
            drop(pipeline);
            pipeline = start(EngineSetting::Capture, &runtimes)?;
        }
    }
    pipeline.capturing = super::Capturing::new(captures);
    let requests = crate::requests::Requests::default();
    requests
        .follow_signals()
        .context("cannot install signal handlers")?;
    let stop = requests.clone();
    let counting = std::thread::spawn(move || pipeline.run(&stop));
    // Ends when the capture does, or with netgraph (SIGINT, SIGTERM).
    let outcome = outcome.recv();
    requests.shutdown();
    let _ = counting.join();
    let outcome = outcome.context("netgraph stopped before the capture ended")?;
    if let Some(error) = outcome.error {
        bail!("{error}");
    }
    let why = match outcome.ended {
        Ended::Time => "its time was up",
        Ended::Size => "the file reached --max-mib",
        Ended::Stopped => "it was stopped",
        Ended::Failed => "it failed",
    };
    eprintln!(
        "netgraph: {} packets ({} bytes) of {} in {}; ended because {why}{}",
        outcome.packets,
        outcome.bytes,
        scope.describe(),
        outcome.path.display(),
        if outcome.lost > 0 {
            format!(
                "; {} packets lost (no room in the kernel's or netgraph's buffer)",
                outcome.lost
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
