//! `netgraph check`: validates the configuration and the environment (privileges,
//! kernel features for each engine, interfaces, every sink) and reports each finding.

use crate::config::Config;
use crate::engine::capture;
use crate::engine::ebpf::EbpfEngine;
use crate::engine::Engine;
use crate::sinks::influxdb;
use crate::store::Store;

pub struct Finding {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

fn finding(what: impl Into<String>, result: anyhow::Result<String>) -> Finding {
    match result {
        Ok(detail) => Finding {
            ok: true,
            what: what.into(),
            detail,
        },
        Err(error) => Finding {
            ok: false,
            what: what.into(),
            detail: format!("{error:#}"),
        },
    }
}

/// An engine being unavailable is only a problem if no engine is.
pub fn run(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut features = Vec::new();
    let ebpf = EbpfEngine::start(crate::engine::Recording {
        addresses: config.geoip.is_some() || config.peers.enabled,
        ..Default::default()
    })
    .map(|engine| {
        features = engine.features();
        let degraded = features.iter().filter(|f| f.is_degraded()).count();
        drop(engine);
        match degraded {
            0 => "loads and attaches (the default engine), every feature used".to_string(),
            n => format!("loads and attaches (the default engine), {n} feature(s) degraded, below"),
        }
    })
    .map_err(anyhow::Error::from);
    let ebpf_loads = ebpf.is_ok();
    let capture = capture::probe().map(|up| format!("can capture on {}", up.join(", ")));
    let any_engine = ebpf.is_ok() || capture.is_ok();
    for (what, result) in [("eBPF engine", ebpf), ("capture engine", capture)] {
        let mut item = finding(what, result);
        if !item.ok && any_engine {
            item.ok = true;
            item.detail = format!("unavailable, another engine will count: {}", item.detail);
        }
        findings.push(item);
        if what == "eBPF engine" {
            // One line per optional part: used, or refused/absent and what it costs.
            for feature in features.drain(..) {
                findings.push(Finding {
                    ok: true,
                    what: format!("eBPF {}", feature.name),
                    detail: feature.describe_state(),
                });
            }
        }
    }
    let throttles = config
        .alerts
        .rules
        .iter()
        .filter(|rule| rule.throttle().ok().flatten().is_some())
        .count();
    if !config.limits.is_empty() || throttles > 0 {
        let configured = format!(
            "{} limit(s), {throttles} quota(s) that throttle or block",
            config.limits.len()
        );
        findings.push(finding(
            "bandwidth limits",
            if ebpf_loads {
                Ok(format!("{configured}: enforced by the eBPF engine"))
            } else {
                Err(anyhow::anyhow!("{configured}, but the eBPF engine does not load here, and only it can enforce limits: see the eBPF engine's finding"))
            },
        ));
    }
    for (index, sink) in config.influxdb.iter().enumerate() {
        let name = sink.sink_name(index);
        findings.push(finding(
            format!(
                "InfluxDB sink {name} ({}, {})",
                sink.url,
                format!("{:?}", sink.api()).to_lowercase()
            ),
            influxdb::probe(sink).map(|()| "reachable, credentials and database accepted".into()),
        ));
    }
    if let Some(prometheus) = &config.prometheus {
        findings.push(finding(
            "Prometheus endpoint",
            free(prometheus.listen).map(|()| format!("{} is free", prometheus.listen)),
        ));
    }
    if config.store.enabled {
        let directory = config.state_directory();
        findings.push(finding("embedded store", Store::inspect(&directory)));
    }
    if let Some(geoip) = &config.geoip {
        findings.push(finding(
            "GeoIP database",
            crate::geo::Geo::open(&geoip.database, geoip.countries_per_process)
                .map(|geo| format!("{}: {}", geoip.database.display(), geo.describe()))
                .map_err(anyhow::Error::from),
        ));
    }
    if config.web.enabled {
        findings.push(finding(
            "web page",
            free(config.web.listen).map(|()| format!("http://{}/ is free", config.web.listen)),
        ));
    }
    findings
}

/// Whether an address can be listened on (a running netgraph holds its own).
fn free(address: std::net::SocketAddr) -> anyhow::Result<()> {
    std::net::TcpListener::bind(address).map(drop).map_err(|e| {
        anyhow::anyhow!("cannot listen on {address}: {e} (is netgraph already running?)")
    })
}
