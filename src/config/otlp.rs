//! `[otlp]`: metrics for an OpenTelemetry collector over OTLP/HTTP (protobuf).

use super::{check_between, check_url, HOUR, MILLISECOND};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP address, "http://HOST:4318"; `/v1/metrics` is added
    /// unless a path is given.
    pub endpoint: String,
    #[serde(default)]
    pub temporality: Temporality,
    /// Sent with every request (an `Authorization` a gateway wants, a tenant id).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM file with the CA that signs the collector's certificate; default: system roots.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "yes")]
    pub gzip: bool,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests kept on disk while the collector is away; the oldest go beyond it.
    #[serde(default = "default_spool_max_mib")]
    pub spool_max_mib: u64,
    /// (process, peer) series to export at most, the busiest; 0: none.
    #[serde(default)]
    pub peers: usize,
}

/// How counters are reported: running totals since netgraph started (what Prometheus
/// keeps), or each interval's amount (what delta back ends such as Datadog want).
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    #[default]
    Cumulative,
    Delta,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_spool_max_mib() -> u64 {
    256
}

/// The most peer series a collector is sent; each is a series of its own.
const MOST_PEERS: usize = 100_000;

impl OtlpConfig {
    /// Where requests go: the endpoint, with OTLP's metrics path unless it has a path.
    pub fn url(&self) -> String {
        let base = self.endpoint.trim_end_matches('/');
        let has_path = url::Url::parse(base).is_ok_and(|url| url.path() != "/");
        if has_path {
            base.to_string()
        } else {
            format!("{base}/v1/metrics")
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        check_url(&self.endpoint).map_err(|error| {
            anyhow::anyhow!("[otlp] endpoint: {error:#} (OTLP/HTTP listens on port 4318)")
        })?;
        for (name, value) in &self.headers {
            let valid_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name {
                anyhow::bail!("[otlp] headers: {name:?} is no HTTP header name: use letters, digits and dashes (e.g. \"Authorization\")");
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                anyhow::bail!("[otlp] headers: the value of {name:?} holds a control character (a line break?): give it on one line");
            }
            if name.eq_ignore_ascii_case("content-type")
                || name.eq_ignore_ascii_case("content-encoding")
            {
                anyhow::bail!(
                    "[otlp] headers: {name} is netgraph's to set (protobuf, gzip): leave it out"
                );
            }
        }
        check_between("[otlp] timeout", self.timeout, MILLISECOND * 100, HOUR)?;
        if self.spool_max_mib == 0 {
            anyhow::bail!(
                "[otlp] spool_max_mib = 0 keeps nothing across an outage: give at least 1"
            );
        }
        if self.peers > MOST_PEERS {
            anyhow::bail!(
                "[otlp] peers = {}: export at most {MOST_PEERS} peer series (each is a series of its own)",
                self.peers
            );
        }
        if let Some(path) = &self.ca_file {
            super::read_ca_file(path).map_err(|e| anyhow::anyhow!("[otlp] {e:#}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> anyhow::Result<OtlpConfig> {
        let config: OtlpConfig = toml::from_str(toml)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_the_metrics_path() {
        let otlp = config("endpoint = \"http://127.0.0.1:4318\"").unwrap();
        assert_eq!(otlp.temporality, Temporality::Cumulative);
        assert!(otlp.gzip);
        assert_eq!(otlp.peers, 0);
        assert_eq!(otlp.url(), "http://127.0.0.1:4318/v1/metrics");
        let slash = config("endpoint = \"http://collector:4318/\"").unwrap();
        assert_eq!(slash.url(), "http://collector:4318/v1/metrics");
        let path = config("endpoint = \"https://gw.example/otlp/v1/metrics\"").unwrap();
        assert_eq!(path.url(), "https://gw.example/otlp/v1/metrics");
        let delta = config("endpoint = \"http://h:4318\"\ntemporality = \"delta\"").unwrap();
        assert_eq!(delta.temporality, Temporality::Delta);
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        for (bad, says) in [
            ("endpoint = \"collector:4318\"", "must start with http"),
            ("endpoint = \"grpc://h:4317\"", "must start with http"),
            (
                "endpoint = \"http://h:4318\"\nheaders = { \"X Tenant\" = \"a\" }",
                "no HTTP header name",
            ),
            (
                "endpoint = \"http://h:4318\"\nheaders = { \"X-Tenant\" = \"a\\nb\" }",
                "control character",
            ),
            (
                "endpoint = \"http://h:4318\"\nheaders = { \"Content-Type\" = \"x\" }",
                "netgraph's to set",
            ),
            (
                "endpoint = \"http://h:4318\"\ntimeout = \"1ms\"",
                "out of range",
            ),
            (
                "endpoint = \"http://h:4318\"\nspool_max_mib = 0",
                "at least 1",
            ),
            ("endpoint = \"http://h:4318\"\npeers = 1000000", "at most"),
            (
                "endpoint = \"http://h:4318\"\nca_file = \"/nonexistent.pem\"",
                "readable PEM",
            ),
        ] {
            let error = format!("{:#}", config(bad).unwrap_err());
            assert!(error.contains(says), "{bad}: {error}");
        }
        assert!(config("endpoint = \"http://h:4318\"\ntemporality = \"both\"").is_err());
        assert!(config("endpoint = \"http://h:4318\"\nprotocol = \"grpc\"").is_err());
    }
}
