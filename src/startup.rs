//! Starting `netgraph run` (and `top` counting by itself): the command line resolved
//! over the configuration file once, the engine chosen, the pipeline built, and the
//! configuration reloaded on SIGHUP the same way.

use crate::accounting::Accountant;
use crate::attribution::Attributor;
use crate::config::{Config, EngineSetting, NameSource, DEFAULT_INTERVAL};
use crate::engine::capture::{CaptureEngine, CaptureSettings, InterfaceSelection};
use crate::engine::ebpf::EbpfEngine;
use crate::engine::features::EngineStatus;
use crate::engine::{Engine, FlowHints, Recording};
use crate::limits::{LimitSetup, Limits};
use crate::pipeline::{Pipeline, Reload, Reloaded};
use crate::rate_limited::Repeats;
use crate::requests::Requests;
use crate::sinks::Sink;
use crate::workload::RuntimeSockets;
use anyhow::Context;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

#[derive(clap::Args, Default)]
pub struct RunArgs {
    /// Configuration file (TOML); see examples/netgraph.toml. Default:
    /// /etc/netgraph/netgraph.toml where it exists, else built-in defaults.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// How traffic is observed [default: auto, or the configuration's `engine`].
    #[arg(long, value_enum)]
    pub engine: Option<EngineSetting>,
    /// Length of one accounting interval, e.g. 1s, 500ms, 1m [default: 1s, or the
    /// configuration's `interval`].
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Capture only this interface (repeatable); default: every interface that is up.
    #[arg(short = 'i', long = "interface")]
    pub interfaces: Vec<String>,
    /// Leave loopback traffic out.
    #[arg(long)]
    pub no_loopback: bool,
    /// Also write one JSON line per series and interval on standard output.
    #[arg(long)]
    pub json: bool,
    /// Capture buffer per interface, in MiB.
    #[arg(long, default_value_t = DEFAULT_BUFFER_MIB, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub buffer_mib: u16,
    /// Reload when the configuration file's content changes (checked every 2 s), as on
    /// SIGHUP: for a mounted ConfigMap, which changes under a running pod.
    #[arg(long)]
    pub reload_on_change: bool,
}

const DEFAULT_BUFFER_MIB: u16 = 8;

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    crate::config::check_interval(interval).map_err(|e| e.to_string())?;
    Ok(interval)
}

/// What `run` does: the command line over the configuration file, resolved once
/// (and again, the same way, at each reload).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub engine: EngineSetting,
    pub interval: Duration,
    pub interfaces: Vec<String>,
    pub loopback: bool,
    pub json: bool,
    pub buffer_mib: u16,
    /// Where the container runtimes' APIs listen.
    pub runtimes: RuntimeSockets,
    /// What the engine records besides counts.
    pub recording: Recording,
    /// Reverse DNS lookups for peers nothing else named.
    pub reverse_names: bool,
}

impl Settings {
    /// The command line wins; the configuration fills in what it leaves out.
    pub fn resolve(args: &RunArgs, config: &Config) -> Settings {
        Settings {
            engine: args.engine.or(config.engine).unwrap_or(EngineSetting::Auto),
            interval: args
                .interval
                .or(config.interval)
                .unwrap_or(DEFAULT_INTERVAL),
            interfaces: if args.interfaces.is_empty() {
                config.interfaces.clone().unwrap_or_default()
            } else {
                args.interfaces.clone()
            },
            loopback: !args.no_loopback && config.loopback != Some(false),
            json: args.json,
            buffer_mib: args.buffer_mib,
            runtimes: config.containers.runtime_sockets(),
            recording: Recording {
                // GeoIP and the peer breakdown need each packet's two ends.
                addresses: config.geoip.is_some() || config.peers.enabled,
                dns_answers: config.peers.enabled && config.peers.names_from(NameSource::Dns),
                tls_hellos: config.peers.enabled && config.peers.names_from(NameSource::Sni),
            },
            reverse_names: config.peers.enabled && config.peers.names_from(NameSource::Reverse),
        }
    }

    /// Every default, with this engine (`top` counting by itself).
    pub fn defaults(engine: EngineSetting) -> Settings {
        Settings {
            engine,
            interval: DEFAULT_INTERVAL,
            interfaces: Vec::new(),
            loopback: true,
            json: false,
            buffer_mib: DEFAULT_BUFFER_MIB,
            runtimes: RuntimeSockets::default(),
            recording: Recording::default(),
            reverse_names: false,
        }
    }
}

fn start_engine(
    settings: &Settings,
    hints: FlowHints,
) -> anyhow::Result<(Box<dyn Engine>, EngineStatus)> {
    let recording = settings.recording;
    let mut fallback_reason = None;
    if settings.engine != EngineSetting::Capture {
        match EbpfEngine::start(recording) {
            Ok(engine) => {
                let status = EngineStatus {
                    engine: engine.name().into(),
                    fallback_reason: None,
                    features: engine.features(),
                };
                return Ok((Box::new(engine), status));
            }
            Err(reason) if settings.engine == EngineSetting::Ebpf => {
                anyhow::bail!("the eBPF engine cannot run: {reason}")
            }
            Err(reason) => {
                tracing::warn!("eBPF engine unavailable ({reason}); using the capture engine");
                fallback_reason = Some(format!("the eBPF engine is unavailable: {reason}"));
            }
        }
    }
    let selection = InterfaceSelection {
        only: (!settings.interfaces.is_empty()).then(|| settings.interfaces.clone()),
        loopback: settings.loopback,
    };
    let capture = CaptureSettings {
        buffer_bytes: usize::from(settings.buffer_mib) << 20,
        ..CaptureSettings::default()
    };
    let engine = CaptureEngine::start(selection, capture, recording, hints)?;
    tracing::info!(interfaces = ?engine.interfaces(), "capturing");
    let status = EngineStatus {
        engine: engine.name().into(),
        fallback_reason,
        features: engine.features(),
    };
    Ok((Box::new(engine), status))
}

/// Descriptors up to the hard limit: the listeners take at most a quarter of the soft
/// one (see `http::connection_limit`), and the rest is for the spool, store and engines.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get and set our own limits from a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The interval loop, from an engine started as `settings` say.
/// New flows waiting for attribution: as many as it takes in one go. A full queue only
/// delays naming to the interval's end, and every slot is resident from the start
/// (16,384 were 1.3 MB, in both engines).
const HINT_QUEUE: usize = 4096;

pub fn pipeline(
    settings: &Settings,
    accountant: Accountant,
    sinks: Vec<Box<dyn Sink>>,
    reloadable: Vec<Box<dyn Sink>>,
) -> anyhow::Result<Pipeline> {
    let (hints, hint_receiver) = crossbeam_channel::bounded(HINT_QUEUE);
    let (engine, status) = start_engine(settings, hints)?;
    tracing::info!(engine = engine.name(), interval = ?settings.interval, "netgraph running");
    let mut accountant = accountant;
    accountant.set_engine(status);
    Ok(Pipeline {
        engine,
        attributor: Attributor::start(
            hint_receiver,
            settings.runtimes.clone(),
            settings.reverse_names,
        )
        .context("cannot start attribution")?,
        accountant,
        sinks,
        reloadable,
        interval: settings.interval,
        reload: None,
        write_failures: Default::default(),
        slow_intervals: Repeats::every_minute(),
        limits: Limits::new(
            LimitSetup::default(),
            Default::default(),
            Default::default(),
        ),
        applied_limits: Default::default(),
        capturing: crate::capture::Capturing::new(Default::default()),
    })
}

/// `netgraph run`: counts into the configured sinks until SIGTERM or SIGINT, and takes
/// up the configuration again on SIGHUP.
pub fn run(args: RunArgs, mut config: Config) -> anyhow::Result<()> {
    crate::malloc_arenas::limit();
    raise_file_limit();
    let settings = Settings::resolve(&args, &config);
    let outputs = crate::outputs::start(&config, settings.json)?;
    let requests = Requests::default();
    requests
        .follow_signals()
        .context("cannot install signal handlers")?;
    match (args.reload_on_change, &args.config) {
        (true, Some(path)) => requests
            .follow_file(path.clone(), Duration::from_secs(2))
            .context("cannot watch the configuration file")?,
        (true, None) => tracing::warn!(
            "--reload-on-change: no configuration file to watch (give --config FILE)"
        ),
        (false, _) => {}
    }
    let mut accountant = Accountant::new(SystemTime::now());
    if let Some(geo) = config.geo.take() {
        tracing::info!(database = %geo.describe(), per_process = geo.per_process, "GeoIP on");
        accountant = accountant.with_geo(geo);
    }
    if config.peers.enabled {
        let per_process = config.peers.per_process;
        tracing::info!(per_process, "traffic by remote peer on");
        accountant = accountant.with_peers(per_process);
    }
    let mut pipeline = pipeline(&settings, accountant, outputs.lasting, outputs.reloadable)?;
    pipeline.attributor.restore_names(outputs.remembered_names);
    pipeline.limits = Limits::new(
        config.limit_setup()?,
        outputs.shared.throttles.clone(),
        pipeline.attributor.containers(),
    );
    pipeline.enforce_limits();
    pipeline.capturing = crate::capture::Capturing::new(outputs.shared.captures.clone());
    let addresses_recorded = pipeline.engine.records_addresses();
    let shared = outputs.shared.clone();
    pipeline.reload = Some(Reload {
        load: Box::new(move || {
            let mut config = match &args.config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            let settings = Settings::resolve(&args, &config);
            let geo = config.geo.take();
            if geo.is_some() && !addresses_recorded {
                tracing::warn!("[geoip] added: the eBPF engine records the addresses it needs only when started with it; restart netgraph to name countries");
            }
            let shared = shared.clone();
            Ok(Reloaded {
                interval: settings.interval,
                geo,
                limits: config.limit_setup()?,
                build: Box::new(move || {
                    crate::outputs::reloadable(&config, settings.json, &shared)
                }),
            })
        }),
    });
    let deliveries = outputs.shared.deliveries.clone();
    pipeline.run(&requests);
    // The pipeline, and the alert rules' queues with it, are gone: what they queued goes out.
    deliveries.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let args = RunArgs {
            engine: Some(EngineSetting::Capture),
            interval: Some(Duration::from_secs(5)),
            interfaces: vec!["eth1".into()],
            no_loopback: true,
            buffer_mib: 16,
            ..RunArgs::default()
        };
        let file = config(
            "engine = \"ebpf\"\ninterval = \"2s\"\ninterfaces = [\"eth0\"]\nloopback = true\n",
        );
        let settings = Settings::resolve(&args, &file);
        assert_eq!(settings.engine, EngineSetting::Capture);
        assert_eq!(settings.interval, Duration::from_secs(5));
        assert_eq!(settings.interfaces, ["eth1"]);
        assert!(!settings.loopback);
        assert_eq!(settings.buffer_mib, 16);
    }

    #[test]
    fn the_file_fills_in_what_the_command_line_leaves_out() {
        let args = RunArgs {
            buffer_mib: DEFAULT_BUFFER_MIB,
            ..RunArgs::default()
        };
        let file = config(
            "engine = \"ebpf\"\ninterval = \"2s\"\ninterfaces = [\"eth0\"]\nloopback = false\n",
        );
        let settings = Settings::resolve(&args, &file);
        assert_eq!(settings.engine, EngineSetting::Ebpf);
        assert_eq!(settings.interval, Duration::from_secs(2));
        assert_eq!(settings.interfaces, ["eth0"]);
        assert!(!settings.loopback);
        assert_eq!(
            Settings::resolve(&args, &Config::default()),
            Settings::defaults(EngineSetting::Auto)
        );
    }
}
