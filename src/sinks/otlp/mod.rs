//! The OTLP sink: each interval becomes one OTLP metrics request (OpenTelemetry's
//! protobuf), spooled on disk at once; a writer thread sends the spool to the collector
//! over OTLP/HTTP with InfluxDB's guarantees: neither an outage nor a restart loses an
//! interval.

mod destination;
mod metrics;
mod peers;
mod series;

use super::delivery::{open_spool, BatchSize, Delivering, Writer};
use super::self_metrics::SelfMetrics;
use super::Sink;
use crate::accounting::IntervalReport;
use crate::config::otlp::{OtlpConfig, Temporality};
use anyhow::Context;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use peers::PeerSeats;
use prost::Message;
use series::Series;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ureq::tls::{RootCerts, TlsConfig};

/// Its spool directory and the name logs and self metrics give it.
const NAME: &str = "otlp";
/// Intervals per request at most (a 413 halves it).
const BATCH_INTERVALS: usize = 20;
/// Spooled intervals are sent this soon: a collector wants them as they come.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

pub struct OtlpSink {
    series: Series,
    peers: PeerSeats,
    with_pid: bool,
    resource: Resource,
    delivery: Delivering,
}

impl OtlpSink {
    pub fn start(
        config: &OtlpConfig,
        hostname: &str,
        state_directory: &Path,
        metrics: &SelfMetrics,
    ) -> anyhow::Result<OtlpSink> {
        let sink = || "OTLP sink".to_string();
        let directory = state_directory.join("spool").join(NAME);
        let spool = open_spool(&directory, config.spool_max_mib << 20, NAME, "intervals")
            .with_context(sink)?;
        let url = config.url();
        let writer = Writer {
            name: NAME.to_string(),
            destination: destination::OtlpDestination {
                url: url.clone(),
                headers: config.headers.clone().into_iter().collect(),
                gzip: config.gzip,
                agent: agent(config).with_context(sink)?,
            },
            spool: spool.clone(),
            metrics: metrics.for_sink(NAME),
            stop: Arc::new(AtomicBool::new(false)),
            batch: BatchSize::new(BATCH_INTERVALS),
            flush_interval: FLUSH_INTERVAL,
            jitter: 0.0,
            max_retry_delay: MAX_RETRY_DELAY,
        };
        let delivery = Delivering::start("otlp".into(), writer)?;
        tracing::info!(sink = NAME, url = %url, temporality = ?config.temporality, "sending metrics over OTLP");
        Ok(OtlpSink {
            series: Series::new(config.temporality),
            peers: PeerSeats::new(config.peers),
            with_pid: config.temporality == Temporality::Delta,
            resource: resource(hostname),
            delivery,
        })
    }

    fn request(&mut self, report: &IntervalReport) -> ExportMetricsServiceRequest {
        self.series.begin(nanos(report.start), nanos(report.end));
        metrics::record(&mut self.series, report, self.with_pid);
        self.peers.record(&mut self.series, &report.peers);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "netgraph".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: self.series.finish(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

fn agent(config: &OtlpConfig) -> anyhow::Result<ureq::Agent> {
    let roots = match &config.ca_file {
        Some(path) => RootCerts::new_with_certs(&[crate::config::read_ca_file(path)?]),
        None => RootCerts::PlatformVerifier,
    };
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .new_agent())
}

/// The host every series comes from.
fn resource(hostname: &str) -> Resource {
    let text = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    Resource {
        attributes: vec![
            text("service.name", "netgraph"),
            text("service.version", env!("CARGO_PKG_VERSION")),
            text("host.name", hostname),
        ],
        ..Default::default()
    }
}

fn nanos(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
}

impl Sink for OtlpSink {
    fn name(&self) -> &str {
        NAME
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let request = self.request(report).encode_to_vec();
        self.delivery.push(&[destination::to_line(&request)])
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
