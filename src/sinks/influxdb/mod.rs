//! The InfluxDB sink: every interval's points go to an on-disk spool at once, and a
//! writer thread delivers them to the v1, v2 or v3 write API, so that neither an outage
//! nor a restart loses a point.

mod destination;
mod endpoint;
mod verdict;

use super::delivery::{open_spool, BatchSize, Delivering, Writer};
use super::line_protocol;
use super::self_metrics::SelfMetrics;
use super::Sink;
use crate::accounting::IntervalReport;
use crate::config::InfluxConfig;
use anyhow::Context;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub struct InfluxSink {
    name: String,
    hostname: String,
    delivery: Delivering,
}

/// For `netgraph check`: a write of no points, which the server answers like any
/// other, so reachability, TLS, credentials and the database are all tested without
/// storing anything.
pub fn probe(config: &InfluxConfig) -> anyhow::Result<()> {
    let endpoint = endpoint::Endpoint::new(config)?;
    let mut request = endpoint.agent.post(&endpoint.url);
    if let Some(authorization) = &endpoint.authorization {
        request = request.header("Authorization", authorization);
    }
    let mut response = request
        .send(&b""[..])
        .with_context(|| format!("cannot reach {}", config.url))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    match verdict::classify(status, None, &body, std::time::SystemTime::now()) {
        super::delivery::Verdict::Written => Ok(()),
        // An empty body is "malformed" to some servers, but they read the credentials.
        super::delivery::Verdict::Rejected { .. } => Ok(()),
        super::delivery::Verdict::Retry { message, .. } => Err(anyhow::anyhow!("{message}")),
        other => Err(anyhow::anyhow!("unexpected answer {status}: {other:?}")),
    }
}

impl InfluxSink {
    pub fn start(
        name: &str,
        config: &InfluxConfig,
        hostname: &str,
        state_directory: &Path,
        metrics: &SelfMetrics,
    ) -> anyhow::Result<InfluxSink> {
        let sink = || format!("InfluxDB sink {name}");
        let endpoint = endpoint::Endpoint::new(config).with_context(sink)?;
        let directory = state_directory.join("spool").join(name);
        let spool = open_spool(&directory, config.spool_max_mib << 20, name, "points")
            .with_context(sink)?;
        let writer = Writer {
            name: name.to_string(),
            destination: destination::InfluxDestination {
                endpoint,
                gzip: config.gzip,
            },
            spool: spool.clone(),
            metrics: metrics.for_sink(name),
            stop: Arc::new(AtomicBool::new(false)),
            batch: BatchSize::new(config.batch_lines),
            flush_interval: config.flush_interval,
            jitter: config.jitter,
            max_retry_delay: config.max_retry_delay,
        };
        let delivery = Delivering::start(format!("influx-{name}"), writer)?;
        tracing::info!(sink = name, url = %config.url, api = ?config.api(), "writing to InfluxDB");
        Ok(InfluxSink {
            name: name.to_string(),
            hostname: hostname.to_string(),
            delivery,
        })
    }
}

impl Sink for InfluxSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let lines = line_protocol::encode(report, &self.hostname);
        self.delivery.push(&lines)
    }

    fn release(&mut self) -> anyhow::Result<()> {
        self.delivery.release();
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.delivery.finish();
        Ok(())
    }
}
