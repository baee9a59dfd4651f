//! The configuration file (TOML). Every option has a default, so no file at all is a
//! valid configuration; `examples/netgraph.toml` documents each one.

use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How traffic is observed: "auto" (default), "ebpf" or "capture".
    pub engine: Option<EngineSetting>,
    /// Length of one accounting interval (default 1s, 100ms to 1 day).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Capture engine: only these interfaces (default: every interface that is up).
    pub interfaces: Option<Vec<String>>,
    /// Capture engine: count loopback traffic too (default true).
    pub loopback: Option<bool>,
    /// Log level or filter ("warn", "netgraph=debug"); RUST_LOG or LOG_LEVEL win.
    pub log_level: Option<String>,
    /// Overrides the `hostname` tag; default: the host's name.
    pub hostname: Option<String>,
    /// Where spools (and later the embedded store) live; default: `$STATE_DIRECTORY`
    /// (set by systemd) or `/var/lib/netgraph`.
    pub state_directory: Option<PathBuf>,
    /// One JSON line per series and interval on standard output.
    pub json_lines: Option<bool>,
    #[serde(default)]
    pub influxdb: Vec<InfluxConfig>,
    pub prometheus: Option<PrometheusConfig>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub web: WebConfig,
    pub geoip: Option<GeoipConfig>,
    #[serde(default)]
    pub containers: ContainersConfig,
    /// Each process's traffic by remote peer (off by default).
    #[serde(default)]
    pub peers: PeersConfig,
    /// `netgraph report`: where the billing month starts.
    #[serde(default)]
    pub report: ReportConfig,
    /// Quotas, rate limits and first contacts, and where their notices go.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Bandwidth limits by process, user, unit or cgroup (eBPF engine).
    #[serde(default)]
    pub limits: Vec<limits::LimitConfig>,
    /// Processes no limit touches (default: sshd, the way in to fix a limit).
    pub never_limit: Option<limits::NeverLimit>,
    /// Flow records for an IPFIX collector (turns on `[peers]`).
    pub ipfix: Option<ipfix::IpfixConfig>,
    /// Metrics for an OpenTelemetry collector (OTLP/HTTP).
    pub otlp: Option<otlp::OtlpConfig>,
    /// The GeoIP database of `geoip`, opened once when the file is loaded.
    #[serde(skip)]
    pub geo: Option<crate::geo::Geo>,
}

/// GeoIP enrichment (off unless a database is given).
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct GeoipConfig {
    /// A MaxMind database (.mmdb) with countries, such as GeoLite2-Country.mmdb; a
    /// relative path is taken from the configuration file's directory.
    pub database: PathBuf,
    /// Also break each process's traffic down by remote country (more series).
    #[serde(default)]
    pub countries_per_process: bool,
}

/// `netgraph report`'s periods.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// The day of the month a billing month starts on (1 to 28), as the provider bills.
    #[serde(default = "default_billing_day")]
    pub billing_day: u32,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            billing_day: default_billing_day(),
        }
    }
}

fn default_billing_day() -> u32 {
    1
}

/// The peer breakdown: each series' traffic by remote address.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// Off by default: it costs each packet about half again its kernel time
    /// (docs/measured.md).
    #[serde(default)]
    pub enabled: bool,
    /// The largest peers kept per series per interval; the rest are summed as `other`.
    #[serde(default = "default_peers_per_process")]
    pub per_process: usize,
    /// Where names for addresses come from.
    #[serde(default = "default_name_sources")]
    pub names: Vec<NameSource>,
    /// How long the store keeps peer rows (the process rows keep theirs); at most
    /// the store's own retention.
    #[serde(default = "default_peers_retention", with = "humantime_serde")]
    pub retention: std::time::Duration,
}

/// A source of names for peers' addresses.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NameSource {
    /// The DNS answers the host's processes receive (UDP and TCP); no query of our own.
    Dns,
    /// The server name in the TLS ClientHellos the host's processes send.
    Sni,
    /// Reverse DNS (PTR) lookups by netgraph, for addresses nothing else named.
    Reverse,
}

impl PeersConfig {
    pub fn names_from(&self, source: NameSource) -> bool {
        self.names.contains(&source)
    }
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            enabled: false,
            per_process: default_peers_per_process(),
            names: default_name_sources(),
            retention: default_peers_retention(),
        }
    }
}

fn default_name_sources() -> Vec<NameSource> {
    vec![NameSource::Dns]
}

fn default_peers_retention() -> std::time::Duration {
    std::time::Duration::from_secs(90 * 86_400)
}

fn default_peers_per_process() -> usize {
    crate::accounting::DEFAULT_PER_PROCESS
}

/// Naming containers: where the runtimes' APIs listen.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ContainersConfig {
    /// Unix sockets of the Docker Engine API (Docker; podman's `podman system
    /// service`); default: /run/podman/podman.sock and /run/docker.sock.
    pub docker_api: Option<Vec<PathBuf>>,
    /// containerd's sockets; default: /run/containerd/containerd.sock.
    pub containerd: Option<Vec<PathBuf>>,
}

impl ContainersConfig {
    pub fn runtime_sockets(&self) -> crate::workload::RuntimeSockets {
        let default = crate::workload::RuntimeSockets::default();
        crate::workload::RuntimeSockets {
            docker_api: self.docker_api.clone().unwrap_or(default.docker_api),
            containerd: self.containerd.clone().unwrap_or(default.containerd),
        }
    }
}

/// The embedded history (on by default).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long each resolution is kept.
    #[serde(default = "default_keep_seconds", with = "humantime_serde")]
    pub keep_seconds: Duration,
    #[serde(default = "default_keep_minutes", with = "humantime_serde")]
    pub keep_minutes: Duration,
    #[serde(default = "default_keep_hours", with = "humantime_serde")]
    pub keep_hours: Duration,
    /// Bound on the store's data on disk.
    #[serde(default = "default_store_max_mib")]
    pub max_size_mib: u64,
}

impl StoreConfig {
    fn check(&self) -> anyhow::Result<()> {
        for (key, value) in [
            ("keep_seconds", self.keep_seconds),
            ("keep_minutes", self.keep_minutes),
            ("keep_hours", self.keep_hours),
        ] {
            check_between(&format!("[store] {key}"), value, MINUTE, DAY * 36_500)?;
        }
        if self.max_size_mib == 0 {
            anyhow::bail!("[store] max_size_mib must be at least 1");
        }
        Ok(())
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            keep_seconds: default_keep_seconds(),
            keep_minutes: default_keep_minutes(),
            keep_hours: default_keep_hours(),
            max_size_mib: default_store_max_mib(),
        }
    }
}

/// The built-in page and its JSON API (on by default, on loopback).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_web_listen")]
    pub listen: std::net::SocketAddr,
    /// Required to listen beyond loopback.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            listen: default_web_listen(),
            token: None,
            token_file: None,
            token_env: None,
        }
    }
}

impl WebConfig {
    pub fn token(&self) -> anyhow::Result<Option<Secret>> {
        SecretSource::new(
            self.token.clone(),
            self.token_file.clone(),
            self.token_env.clone(),
        )
        .resolve("token")
    }
}

fn default_keep_seconds() -> Duration {
    Duration::from_secs(3600)
}
fn default_keep_minutes() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_keep_hours() -> Duration {
    Duration::from_secs(730 * 86_400)
}
fn default_store_max_mib() -> u64 {
    512
}
/// The accounting interval unless configured.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The address the README tells users to open.
pub const DEFAULT_WEB_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9800),
);
fn default_web_listen() -> std::net::SocketAddr {
    DEFAULT_WEB_LISTEN
}

/// How traffic is observed (`engine` in the file, `--engine` on the command line).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineSetting {
    /// eBPF where the kernel allows it, else packet capture.
    Auto,
    /// Count in the kernel per socket (needs BTF, cgroup v2, CAP_BPF/CAP_PERFMON/CAP_NET_ADMIN).
    Ebpf,
    /// libpcap on every interface, as nethogs does.
    Capture,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Address of the `/metrics` endpoint, e.g. `127.0.0.1:9810`.
    pub listen: std::net::SocketAddr,
    /// Peer counters (with `[peers]`): at most this many (process, peer) series, the
    /// busiest; 0, the default, exports none (each peer is a series of its own).
    #[serde(default)]
    pub peers: usize,
    /// Required of every scrape where set (`Authorization: Bearer TOKEN`, Prometheus'
    /// `authorization` or `bearer_token_file`), as the page's token is.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl PrometheusConfig {
    pub fn token(&self) -> anyhow::Result<Option<Secret>> {
        SecretSource::new(
            self.token.clone(),
            self.token_file.clone(),
            self.token_env.clone(),
        )
        .resolve("[prometheus] token")
    }
}

fn yes() -> bool {
    true
}

impl Config {
    /// Reads and checks a configuration file; errors name the file and what to fix.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let config: Config = if legacy::is_legacy(path, &text) {
            let (config, toml) = legacy::read(path, &text)?;
            tracing::warn!(
                "{} is the original netgraph's INI format: read for now, but please migrate to TOML (netgraph run --config netgraph.toml); its equivalent:\n{toml}",
                path.display()
            );
            config
        } else {
            toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), describe(&e, &text)))?
        };
        let mut config = config;
        if let Some(geoip) = &mut config.geoip {
            if geoip.database.is_relative() {
                let base = path.parent().unwrap_or(Path::new("."));
                geoip.database = base.join(&geoip.database);
            }
        }
        let place = || path.display().to_string();
        config.check().with_context(place)?;
        // Flow records and OTLP's peer series are made of the per-peer accounting.
        if config.ipfix.is_some() || config.otlp.as_ref().is_some_and(|o| o.peers > 0) {
            config.peers.enabled = true;
        }
        if let Some(geoip) = &config.geoip {
            config.geo = Some(
                crate::geo::Geo::open(&geoip.database, geoip.countries_per_process)
                    .with_context(place)?,
            );
        }
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        if let Some(level) = &self.log_level {
            check_log_level(level)?;
        }
        if let Some(interval) = self.interval {
            check_interval(interval)?;
        }
        self.store.check()?;
        if !(1..=28).contains(&self.report.billing_day) {
            anyhow::bail!(
                "[report] billing_day = {}: give a day from 1 to 28 (every month has it)",
                self.report.billing_day
            );
        }
        if !(1..=1000).contains(&self.peers.per_process) {
            anyhow::bail!(
                "[peers] per_process = {}: keep between 1 and 1000 peers per process",
                self.peers.per_process
            );
        }
        self.alerts
            .check(self.peers.enabled, self.geoip.is_some())?;
        limits::check_all(&self.limits)?;
        if let Some(ipfix) = &self.ipfix {
            ipfix.check()?;
        }
        if let Some(otlp) = &self.otlp {
            otlp.check()?;
        }
        if self.web.enabled {
            // Read now, so that `check` and `run` refuse the same files and variables.
            let token = self.web.token()?;
            if token.as_ref().is_some_and(Secret::is_empty) {
                anyhow::bail!(
                    "[web] token is empty or only white space: give a real token (e.g. from openssl rand -base64 24), or none on 127.0.0.1"
                );
            }
            if !self.web.listen.ip().is_loopback() && token.is_none() {
                anyhow::bail!(
                    "[web] listen = \"{}\" reaches beyond this host without a token (none, or an empty one): set a non-empty token, token_file or token_env, or listen on 127.0.0.1",
                    self.web.listen
                );
            }
        }
        if let Some(prometheus) = &self.prometheus {
            if prometheus.token()?.as_ref().is_some_and(Secret::is_empty) {
                anyhow::bail!(
                    "[prometheus] token is empty or only white space: give a real token, or none"
                );
            }
        }
        for (index, sink) in self.influxdb.iter().enumerate() {
            let what = format!(
                "[[influxdb]] number {} ({})",
                index + 1,
                sink.sink_name(index)
            );
            sink.check().context(what)?;
        }
        Ok(())
    }

    /// The limits as checked, and the processes none of them touches.
    pub fn limit_setup(&self) -> anyhow::Result<crate::limits::LimitSetup> {
        Ok(crate::limits::LimitSetup {
            limits: limits::check_all(&self.limits)?,
            never: self
                .never_limit
                .as_ref()
                .map(|never| never.processes.clone())
                .unwrap_or_else(limits::default_never_limit),
        })
    }

    pub fn state_directory(&self) -> PathBuf {
        self.state_directory.clone().unwrap_or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/lib/netgraph"))
        })
    }
}

pub(crate) const MILLISECOND: Duration = Duration::from_millis(1);
pub(crate) const MINUTE: Duration = Duration::from_secs(60);
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

/// The accounting interval's bounds: finer costs more than it tells, coarser is no
/// longer a time series (and a huge one would never close an interval).
pub fn check_interval(interval: Duration) -> anyhow::Result<()> {
    check_between("interval", interval, MILLISECOND * 100, DAY)
}

pub(crate) fn check_between(
    key: &str,
    value: Duration,
    least: Duration,
    most: Duration,
) -> anyhow::Result<()> {
    let (bound, limit) = match value {
        value if value < least => ("at least", least),
        value if value > most => ("at most", most),
        _ => return Ok(()),
    };
    anyhow::bail!(
        "{key} = {:?} is out of range: it must be {bound} {}",
        humantime::format_duration(value).to_string(),
        humantime::format_duration(limit)
    )
}

/// A level, or comma-separated `target=level` directives: what RUST_LOG takes, without
/// the forms that silently match nothing (a bare word that is no level is a target).
pub fn check_log_level(filter: &str) -> anyhow::Result<()> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |word: &str| LEVELS.contains(&word.to_ascii_lowercase().as_str());
    let is_target = |word: &str| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let valid = !filter.trim().is_empty()
        && filter
            .split(',')
            .all(|directive| match directive.trim().split_once('=') {
                Some((target, level)) => is_target(target) && is_level(level),
                None => is_level(directive.trim()),
            });
    if !valid {
        anyhow::bail!(
            "log_level = {filter:?} is not a level: use error, warn, info, debug or trace, or directives such as \"warn,netgraph=debug\""
        );
    }
    Ok(())
}

/// An InfluxDB URL: http or https, a host, a port in range, and no credentials (they
/// would be logged with the URL; they belong in username/password or token).
/// A PEM file with the CA that signs a server's certificate (`ca_file`).
pub(crate) fn read_ca_file(path: &Path) -> anyhow::Result<ureq::tls::Certificate<'static>> {
    let pem = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!("ca_file {}: {e}; give a readable PEM file", path.display())
    })?;
    let certificate = ureq::tls::Certificate::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("ca_file {}: not a PEM certificate ({e})", path.display()))?;
    Ok(certificate.to_owned())
}

pub(crate) fn check_url(text: &str) -> anyhow::Result<()> {
    let text = &redact_userinfo(text);
    let url = url::Url::parse(text).map_err(|e| {
        anyhow::anyhow!("url {text:?} is not a valid URL ({e}); write it as http://host:8086")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("url {text:?} must start with http:// or https://");
    }
    if url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("url {text:?} names no host; write it as http://host:8086");
    }
    if text.contains("***@") {
        anyhow::bail!(
            "url: credentials in the URL are refused (they would be logged); give them as username and password_file (v1) or token_file (v2, v3)"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        anyhow::bail!("url {text:?}: no query or fragment; the write path is added by netgraph");
    }
    Ok(())
}

/// The URL with any `user:password@` replaced, so that no message shows it.
pub fn redact_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

/// One line: where (line and column), what, and for an unknown key the closest known one.
fn describe(error: &toml::de::Error, text: &str) -> String {
    let message = error.message().trim().replace('\n', " ");
    let place = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        let key = text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(key, _)| format!("key `{}`: ", key.trim()))
            .unwrap_or_default();
        format!("line {line}, column {column}: {key}")
    });
    let hint = closest_key(&message)
        .map(|key| format!(" (did you mean `{key}`?)"))
        .unwrap_or_default();
    format!("{}{message}{hint}", place.unwrap_or_default())
}

/// serde says "unknown field `x`, expected one of `a`, `b`": suggests the nearest.
fn closest_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|key| (strsim::jaro_winkler(unknown, key), key))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, key)| key.to_string())
}

pub mod alerts;
mod influx;
pub mod ipfix;
mod legacy;
pub mod limits;
pub mod otlp;
mod secret;

pub use alerts::AlertsConfig;
pub use influx::{InfluxApi, InfluxConfig, InfluxFile, InfluxTarget};
pub use secret::{Secret, SecretSource};

#[cfg(test)]
mod tests;
