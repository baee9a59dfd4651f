//! The command line: `run`, `top` and `check`, and logging; starting `run` is
//! netgraph::startup's.

use clap::{Parser, Subcommand};
use netgraph::accounting::Accountant;
use netgraph::config::{Config, EngineSetting};
use netgraph::startup::{RunArgs, Settings};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

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

const TOP_KEYS: &str = "Keys:
  s, r, n        sort by sent, received or name
  m              rates or totals since the start
  i              next interface (all, then each)
  Up/k, Down/j   select a row
  p, Enter       the selected process's peers (p or Esc again to go back)
  q, Esc, Ctrl-C quit";

#[derive(Subcommand)]
enum Command {
    /// Account traffic per process and write it to the sinks until stopped (SIGTERM/SIGINT).
    Run(RunArgs),
    /// Live view in the terminal, like nethogs: from the running daemon, or counting by
    /// itself when none answers. Keys: s/r/n sort, m rate or total, i interface, q quit.
    #[command(after_help = TOP_KEYS)]
    Top(TopArgs),
    /// Check the configuration and the environment (privileges, kernel features, every
    /// sink) without starting; exit 0 if netgraph can run, 1 if not, 2 if the
    /// configuration is invalid.
    Check(CheckArgs),
    /// Totals per process (or user, interface, container, peer...) for today, yesterday,
    /// the billing month or a range, per day or month, with the running period's
    /// projection; read from the store.
    Report(netgraph::report::command::ReportArgs),
    /// Bandwidth limits: `netgraph limit list` shows those in force and what each held
    /// back, from the running daemon.
    Limit(netgraph::limits::command::LimitArgs),
    /// Packets of a process, pid, container or peer into a pcapng file, each with its
    /// owner (process, pid, user, container, direction) in its comment; eBPF engine.
    Capture(netgraph::capture::command::CaptureArgs),
    /// Write the manual pages (netgraph.1 and one per command) into a directory; the
    /// packages install them.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        directory: PathBuf,
    },
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
    #[arg(long, value_enum, default_value_t = EngineSetting::Auto)]
    engine: EngineSetting,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The terminal belongs to top's screen: only errors may be logged over it.
    let set_log_level = init_logging(matches!(cli.command, Command::Top(_)));
    // A command a person runs says what went wrong in one plain line; the daemon logs.
    let said = |result: anyhow::Result<()>| match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("netgraph: {error:#}");
            ExitCode::FAILURE
        }
    };
    let result = match cli.command {
        Command::Top(args) => return said(top(args)),
        Command::Check(args) => return check(args),
        Command::Report(args) => return said(report(&args)),
        Command::Limit(args) => return said(netgraph::limits::command::run(args)),
        Command::Capture(args) => return said(capture(args)),
        Command::Man { directory } => return said(manual_pages(&directory)),
        Command::Run(mut args) => {
            // The packaged file where it exists, as `check` and `report` read it; a
            // reload reads the same file again.
            args.config = args.config.or_else(packaged_config);
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
                    if let Some(path) = &args.config {
                        tracing::info!(path = %path.display(), "configuration");
                    }
                    netgraph::startup::run(args, config)
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

const PACKAGED_CONFIG: &str = "/etc/netgraph/netgraph.toml";

/// The packaged configuration file, where it exists: what every command reads without
/// `--config`.
fn packaged_config() -> Option<PathBuf> {
    let packaged = PathBuf::from(PACKAGED_CONFIG);
    packaged.exists().then_some(packaged)
}

fn report(args: &netgraph::report::command::ReportArgs) -> anyhow::Result<()> {
    let path = args.config.clone().or_else(packaged_config);
    let config = match &path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    print!("{}", netgraph::report::command::run(args, &config)?);
    Ok(())
}

fn capture(args: netgraph::capture::command::CaptureArgs) -> anyhow::Result<()> {
    let path = args.config.clone().or_else(packaged_config);
    let config = match &path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    netgraph::capture::command::run(args, &config)
}

/// netgraph(1) and netgraph-COMMAND(1) for each command shown in `--help`.
fn manual_pages(directory: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use clap::CommandFactory;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    clap_mangen::generate_to(Cli::command(), directory)
        .with_context(|| format!("cannot write the manual pages into {}", directory.display()))
}

fn check(args: CheckArgs) -> ExitCode {
    let path = args.config.or_else(packaged_config);
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
    let daemon = netgraph::daemon_client::DaemonClient::new(&args.url, args.token.as_deref());
    if daemon.live().is_ok() {
        return netgraph::top::run(Source::Daemon(daemon));
    }
    // No daemon: run the pipeline here, into a live view only.
    let live = netgraph::sinks::live::SharedLive::default();
    let sinks: Vec<Box<dyn netgraph::sinks::Sink>> =
        vec![Box::new(netgraph::sinks::live::LiveSink::new(live.clone()))];
    // Counting here for a person watching: peers on, so that `p` shows them.
    let mut settings = Settings::defaults(args.engine);
    settings.recording = netgraph::engine::Recording {
        addresses: true,
        dns_answers: true,
        tls_hellos: false,
    };
    let accountant =
        Accountant::new(SystemTime::now()).with_peers(netgraph::accounting::DEFAULT_PER_PROCESS);
    let pipeline = netgraph::startup::pipeline(&settings, accountant, sinks, Vec::new())?;
    let requests = netgraph::requests::Requests::default();
    let stop = requests.clone();
    let counting = std::thread::spawn(move || pipeline.run(&stop));
    let shown = netgraph::top::run(Source::Local(live));
    requests.shutdown();
    let _ = counting.join();
    shown
}
