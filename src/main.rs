use anyhow::Context;
use clap::{Parser, Subcommand};
use netgraph::accounting::Accountant;
use netgraph::attribution::Attributor;
use netgraph::config::{Config, DEFAULT_INTERVAL};
use netgraph::engine::capture::{CaptureEngine, CaptureSettings, InterfaceSelection};
use netgraph::engine::ebpf::EbpfEngine;
use netgraph::engine::{Engine, FlowHints};
use netgraph::pipeline::Pipeline;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Parser)]
#[command(
    version,
    about = "Which application used how much network bandwidth",
    after_help = "Examples:\n  netgraph run                      account every interface into the embedded store; page on http://127.0.0.1:9800/\n  netgraph run --json               also one JSON line per process and interval on standard output\n  netgraph run --interval 10s       coarser intervals\n  netgraph run -i eth0 -i wg0       capture engine: only these interfaces\n  netgraph top                      live view, like nethogs\n  netgraph check -c FILE            check a configuration and this host without starting"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Account traffic per process and write it to the sinks until stopped (SIGTERM/SIGINT).
    Run(RunArgs),
    /// Live view in the terminal, like nethogs: from the running daemon, or counting by
    /// itself when none answers. Keys: s/r/n sort, m rate or total, i interface, q quit.
    Top(TopArgs),
    /// Check the configuration and the environment (privileges, kernel features, every
    /// sink) without starting; exit 0 if netgraph can run, 1 if not, 2 if the
    /// configuration is invalid.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// Configuration file; default: /etc/netgraph/netgraph.toml where it exists.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct TopArgs {
    /// The daemon's web address.
    #[arg(long, default_value = "http://127.0.0.1:9800")]
    url: String,
    /// The daemon's web token, if it has one.
    #[arg(long, env = "NETGRAPH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How to count when no daemon answers.
    #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
    engine: EngineChoice,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineChoice {
    /// eBPF where the kernel allows it, else packet capture.
    Auto,
    /// Count in the kernel per socket (needs BTF, cgroup v2, CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN).
    Ebpf,
    /// libpcap on every interface, as nethogs does.
    Capture,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Configuration file (TOML); see examples/netgraph.toml. Without it, defaults apply.
    #[arg(short = 'c', long)]
    config: Option<PathBuf>,
    /// How traffic is observed [default: auto, or the configuration's `engine`].
    #[arg(long, value_enum)]
    engine: Option<EngineChoice>,
    /// Length of one accounting interval, e.g. 1s, 500ms, 1m [default: 1s, or the
    /// configuration's `interval`].
    #[arg(long, value_parser = parse_interval)]
    interval: Option<Duration>,
    /// Capture only this interface (repeatable); default: every interface that is up.
    #[arg(short = 'i', long = "interface")]
    interfaces: Vec<String>,
    /// Leave loopback traffic out.
    #[arg(long)]
    no_loopback: bool,
    /// Also write one JSON line per series and interval on standard output.
    #[arg(long)]
    json: bool,
    /// Capture buffer per interface, in MiB.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    buffer_mib: u16,
}

/// What `run` does: the command line over the configuration file, resolved once
/// (and again, the same way, at each reload).
#[derive(Clone)]
struct Settings {
    engine: EngineChoice,
    interval: Duration,
    interfaces: Vec<String>,
    loopback: bool,
    json: bool,
    buffer_mib: u16,
}

impl Settings {
    /// The command line wins; the configuration fills in what it leaves out.
    fn resolve(args: &RunArgs, config: &Config) -> Settings {
        use netgraph::config::EngineSetting;
        let configured = config.engine.map(|engine| match engine {
            EngineSetting::Auto => EngineChoice::Auto,
            EngineSetting::Ebpf => EngineChoice::Ebpf,
            EngineSetting::Capture => EngineChoice::Capture,
        });
        Settings {
            engine: args.engine.or(configured).unwrap_or(EngineChoice::Auto),
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
        }
    }

    /// `top` counting by itself: every default.
    fn defaults() -> Settings {
        Settings {
            engine: EngineChoice::Auto,
            interval: DEFAULT_INTERVAL,
            interfaces: Vec::new(),
            loopback: true,
            json: false,
            buffer_mib: 8,
        }
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    netgraph::config::check_interval(interval).map_err(|e| e.to_string())?;
    Ok(interval)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal belongs to top's screen: only errors may be logged over it.
    let set_log_level = init_logging(matches!(cli.command, Command::Top(_)));
    let result = match cli.command {
        Command::Top(args) => top(args),
        Command::Check(args) => return check(args),
        Command::Run(args) => {
            // A bad configuration stops everything before it starts, with status 2.
            let config = match &args.config {
                Some(path) => Config::load(path),
                None => Ok(Config::default()),
            };
            match config {
                Ok(config) => {
                    if let Some(level) = &config.log_level {
                        set_log_level(level);
                    }
                    run(args, config)
                }
                Err(error) => {
                    tracing::error!("{error:#}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log level from `RUST_LOG`, or `LOG_LEVEL` as the original read it; logs go to stderr.
/// Returns how to apply the configuration's `log_level`, which only counts when neither
/// variable is set.
fn init_logging(quiet: bool) -> impl Fn(&str) {
    let from_environment = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL").map(|l| l.to_lowercase()))
        .ok();
    let filter = match (&from_environment, quiet) {
        (_, true) => "error".to_string(),
        (Some(filter), false) => filter.clone(),
        (None, false) => "info".into(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    move |level: &str| {
        if from_environment.is_none() && !quiet {
            let _ = handle.reload(tracing_subscriber::EnvFilter::new(level));
        }
    }
}

/// `record_addresses`: the engine keeps each packet's two ends (GeoIP needs them).
fn start_engine(
    settings: &Settings,
    hints: FlowHints,
    record_addresses: bool,
) -> anyhow::Result<Box<dyn Engine>> {
    if settings.engine != EngineChoice::Capture {
        match EbpfEngine::start(record_addresses) {
            Ok(engine) => return Ok(Box::new(engine)),
            Err(reason) if settings.engine == EngineChoice::Ebpf => {
                anyhow::bail!("the eBPF engine cannot run: {reason}")
            }
            Err(reason) => {
                tracing::warn!("eBPF engine unavailable ({reason}); using the capture engine")
            }
        }
    }
    let selection = InterfaceSelection {
        only: (!settings.interfaces.is_empty()).then(|| settings.interfaces.clone()),
        loopback: settings.loopback,
    };
    let capture = CaptureSettings {
        buffer_bytes: i32::from(settings.buffer_mib) << 20,
        ..CaptureSettings::default()
    };
    let engine = CaptureEngine::start(selection, capture, hints)?;
    tracing::info!(interfaces = ?engine.interfaces(), "capturing");
    Ok(Box::new(engine))
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

const PACKAGED_CONFIG: &str = "/etc/netgraph/netgraph.toml";

fn check(args: CheckArgs) -> ExitCode {
    let path = args.config.or_else(|| {
        let packaged = PathBuf::from(PACKAGED_CONFIG);
        packaged.exists().then_some(packaged)
    });
    let config = match &path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(error) => {
                println!("FAIL  configuration: {error:#}");
                return ExitCode::from(2);
            }
        },
        None => Config::default(),
    };
    let source = path.map_or("defaults (no file)".into(), |p| p.display().to_string());
    println!("ok    configuration: {source}");
    let findings = netgraph::check::run(&config);
    for finding in &findings {
        let status = if finding.ok { "ok  " } else { "FAIL" };
        println!("{status}  {}: {}", finding.what, finding.detail);
    }
    if findings.iter().all(|f| f.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn top(args: TopArgs) -> anyhow::Result<()> {
    use netgraph::top::Source;
    if netgraph::top::fetch_live(&args.url, args.token.as_deref()).is_ok() {
        let source = Source::Daemon {
            url: args.url,
            token: args.token,
        };
        return netgraph::top::run(source);
    }
    // No daemon: run the pipeline here, into a live view only.
    let live = netgraph::sinks::live::SharedLive::default();
    let sinks: Vec<Box<dyn netgraph::sinks::Sink>> =
        vec![Box::new(netgraph::sinks::live::LiveSink::new(live.clone()))];
    let settings = Settings {
        engine: args.engine,
        ..Settings::defaults()
    };
    let pipeline = pipeline(
        &settings,
        false,
        Accountant::new(SystemTime::now()),
        sinks,
        Vec::new(),
        None,
    )?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let counting = std::thread::spawn(move || pipeline.run(&stop));
    let shown = netgraph::top::run(Source::Local(live));
    shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = counting.join();
    shown
}

/// The interval loop, from an engine started as `settings` say, recording addresses
/// when asked (GeoIP needs them).
fn pipeline(
    settings: &Settings,
    record_addresses: bool,
    accountant: Accountant,
    sinks: Vec<Box<dyn netgraph::sinks::Sink>>,
    reloadable: Vec<Box<dyn netgraph::sinks::Sink>>,
    reload: Option<netgraph::pipeline::Reload>,
) -> anyhow::Result<Pipeline> {
    let (hints, hint_receiver) = crossbeam_channel::bounded(16_384);
    let engine = start_engine(settings, hints, record_addresses)?;
    tracing::info!(engine = engine.name(), interval = ?settings.interval, "netgraph running");
    Ok(Pipeline {
        engine,
        attributor: Attributor::start(hint_receiver).context("cannot start attribution")?,
        accountant,
        sinks,
        reloadable,
        interval: settings.interval,
        reload,
        write_failures: Default::default(),
        slow_intervals: netgraph::rate_limited::Repeats::every_minute(),
    })
}

fn run(args: RunArgs, mut config: Config) -> anyhow::Result<()> {
    raise_file_limit();
    let settings = Settings::resolve(&args, &config);
    let outputs = netgraph::outputs::start(&config, settings.json)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .context("cannot install signal handlers")?;
    }
    let requested = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone())
        .context("cannot install signal handlers")?;
    let mut accountant = Accountant::new(SystemTime::now());
    let record_addresses = config.geo.is_some();
    if let Some(geo) = config.geo.take() {
        tracing::info!(database = %geo.describe(), per_process = geo.per_process, "GeoIP on");
        accountant = accountant.with_geo(geo);
    }
    let mut pipeline = pipeline(
        &settings,
        record_addresses,
        accountant,
        outputs.lasting,
        outputs.reloadable,
        None,
    )?;
    let addresses_recorded = pipeline.engine.records_addresses();
    let metrics = outputs.self_metrics.clone();
    pipeline.reload = Some(netgraph::pipeline::Reload {
        requested,
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
            let metrics = metrics.clone();
            Ok(netgraph::pipeline::Reloaded {
                interval: settings.interval,
                geo,
                build: Box::new(move || {
                    netgraph::outputs::reloadable(&config, settings.json, &metrics)
                }),
            })
        }),
    });
    pipeline.run(&shutdown);
    Ok(())
}
