//! Everything downstream of accounting, built from the configuration: the sinks, and
//! the web server that reads what the store and live sinks keep.

use crate::alerts::board::AlertBoard;
use crate::alerts::delivery::Deliveries;
use crate::alerts::Alerts;
use crate::attribution::RememberedName;
use crate::config::{Config, DEFAULT_WEB_LISTEN};
use crate::sinks::influxdb::InfluxSink;
use crate::sinks::ipfix::IpfixSink;
use crate::sinks::json_lines::JsonLinesSink;
use crate::sinks::live::{LiveSink, SharedLive};
use crate::sinks::otlp::OtlpSink;
use crate::sinks::prometheus::PrometheusSink;
use crate::sinks::self_metrics::SelfMetrics;
use crate::sinks::store::StoreSink;
use crate::sinks::Sink;
use crate::store::{Retention, Store, StoreWriter};
use std::sync::Arc;

/// The outputs that live as long as the process (the live view, the store, the
/// Prometheus and web listeners), and what SIGHUP rebuilds from a reloaded configuration.
pub struct Outputs {
    pub lasting: Vec<Box<dyn Sink>>,
    pub reloadable: Vec<Box<dyn Sink>>,
    pub shared: Shared,
    /// Peer names the store kept from the previous run, for attribution to take up.
    pub remembered_names: Vec<RememberedName>,
}

/// What the reloadable outputs report into and the lasting ones show, across reloads.
#[derive(Clone, Default)]
pub struct Shared {
    /// Shared by every InfluxDB sink, old and new, and shown by Prometheus.
    pub self_metrics: SelfMetrics,
    /// The alert rules' state, shown by Prometheus and the page.
    pub alerts: AlertBoard,
    /// Sends the alert rules' notices; finished at shutdown.
    pub deliveries: Deliveries,
    /// The limits quotas apply while they fire.
    pub throttles: crate::limits::Throttles,
    /// The captures alert rules ask for when they fire.
    pub captures: crate::capture::Captures,
}

/// Starts every configured output; one that cannot start stops netgraph before it runs,
/// except the default web address being taken, which only costs the page.
pub fn start(config: &Config, json_lines: bool) -> anyhow::Result<Outputs> {
    let state_directory = config.state_directory();
    let shared = Shared::default();
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(prometheus) = &config.prometheus {
        sinks.push(Box::new(PrometheusSink::start(
            prometheus.listen,
            prometheus.peers,
            prometheus.token()?,
            &shared.self_metrics,
            &shared.alerts,
        )?));
    }
    let live = SharedLive::default();
    sinks.push(Box::new(LiveSink::new(live.clone())));
    let mut reader = None;
    let mut remembered_names = Vec::new();
    if config.store.enabled {
        let retention = Retention {
            seconds: config.store.keep_seconds,
            minutes: config.store.keep_minutes,
            hours: config.store.keep_hours,
            max_bytes: config.store.max_size_mib << 20,
            peers: config.peers.retention,
        };
        // History is worth much, but not stopping the accounting and the other sinks for.
        match Store::open(&state_directory, retention).and_then(|store| {
            remembered_names = store
                .remembered_names(crate::store::seconds(std::time::SystemTime::now()))
                .unwrap_or_else(|error| {
                    tracing::warn!("the store's peer names cannot be read ({error:#}); names are learnt afresh");
                    Vec::new()
                });
            let readers = store.readers();
            let moved_aside = store.moved_aside().is_some();
            let path = store.path().to_owned();
            Ok((readers, moved_aside, path, StoreWriter::start(store)?))
        }) {
            Ok((readers, moved_aside, path, writer)) => {
                if moved_aside {
                    shared.self_metrics.store_moved_aside.inc();
                }
                tracing::info!(path = %path.display(), "keeping history in the embedded store");
                reader = Some(Arc::new(readers));
                sinks.push(Box::new(StoreSink::new(writer)));
            }
            Err(error) => tracing::error!("{error:#}; running without history"),
        }
    }
    if config.web.enabled {
        let listen = config.web.listen;
        let state = crate::web::ApiState {
            live,
            reader,
            alerts: shared.alerts.clone(),
            billing_day: config.report.billing_day,
        };
        match crate::web::start(listen, config.web.token()?, state) {
            Ok(()) => tracing::info!("web page and API on http://{listen}/"),
            Err(error) if listen == DEFAULT_WEB_LISTEN => {
                tracing::warn!("{error:#}; running without the web page")
            }
            Err(error) => return Err(error),
        }
    }
    // After the store: alert rules read it and keep their state in it.
    let reloadable = reloadable(config, json_lines, &shared)?;
    Ok(Outputs {
        lasting: sinks,
        reloadable,
        shared,
        remembered_names,
    })
}

/// The sinks a SIGHUP rebuilds: JSON lines, InfluxDB and OTLP (whose spools carry over), IPFIX and
/// the alert rules (whose state is in the store).
pub fn reloadable(
    config: &Config,
    json_lines: bool,
    shared: &Shared,
) -> anyhow::Result<Vec<Box<dyn Sink>>> {
    let hostname = config.hostname.clone().unwrap_or_else(host_name);
    let state_directory = config.state_directory();
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if json_lines || config.json_lines.unwrap_or(false) {
        sinks.push(Box::new(JsonLinesSink::new(std::io::stdout())));
    }
    for (index, influx) in config.influxdb.iter().enumerate() {
        let name = influx.sink_name(index);
        let sink = InfluxSink::start(
            &name,
            influx,
            &hostname,
            &state_directory,
            &shared.self_metrics,
        )?;
        sinks.push(Box::new(sink));
    }
    if let Some(ipfix) = &config.ipfix {
        sinks.push(Box::new(IpfixSink::start(ipfix)?));
    }
    if let Some(otlp) = &config.otlp {
        let sink = OtlpSink::start(otlp, &hostname, &state_directory, &shared.self_metrics)?;
        sinks.push(Box::new(sink));
    }
    if let Some(alerts) = Alerts::start(config, &hostname, shared) {
        sinks.push(Box::new(alerts));
    }
    Ok(sinks)
}

/// The kernel's host name, as the `hostname` tag.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}
