//! Where and how one InfluxDB sink writes: the URL and credentials of the v1, v2 or v3
//! write API, and an HTTP agent trusting the system roots or a given CA.

use crate::config::{InfluxConfig, InfluxTarget, Secret};
use crate::sinks::line_protocol::{PRECISION_V1_V2, PRECISION_V3};
use ureq::tls::{RootCerts, TlsConfig};

pub struct Endpoint {
    pub url: String,
    /// The value of the `Authorization` header, if any.
    pub authorization: Option<String>,
    pub agent: ureq::Agent,
}

impl Endpoint {
    pub fn new(config: &InfluxConfig) -> anyhow::Result<Endpoint> {
        let base = config.url.trim_end_matches('/');
        let mut query: Vec<(&str, String)> = Vec::new();
        let (path, authorization) = match &config.target {
            InfluxTarget::V1 {
                database,
                retention_policy,
                username,
                ..
            } => {
                query.push(("db", database.clone()));
                if let Some(rp) = retention_policy {
                    query.push(("rp", rp.clone()));
                }
                query.push(("precision", PRECISION_V1_V2.into()));
                let basic = match (username, config.password()?) {
                    (Some(user), password) => Some(basic_auth(
                        user,
                        password.as_ref().map_or("", Secret::expose),
                    )),
                    (None, _) => None,
                };
                ("/write", basic)
            }
            InfluxTarget::V2 { org, bucket, .. } => {
                query.push(("org", org.clone()));
                query.push(("bucket", bucket.clone()));
                query.push(("precision", PRECISION_V1_V2.into()));
                (
                    "/api/v2/write",
                    config.token()?.map(|t| format!("Token {}", t.expose())),
                )
            }
            InfluxTarget::V3 { database, .. } => {
                query.push(("db", database.clone()));
                query.push(("precision", PRECISION_V3.into()));
                (
                    "/api/v3/write_lp",
                    config.token()?.map(|t| format!("Bearer {}", t.expose())),
                )
            }
        };
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        Ok(Endpoint {
            url: format!("{base}{path}?{}", query.join("&")),
            authorization,
            agent: agent(config)?,
        })
    }
}

fn agent(config: &InfluxConfig) -> anyhow::Result<ureq::Agent> {
    let roots = match config.ca_certificate()? {
        Some(certificate) => RootCerts::new_with_certs(&[certificate]),
        None => RootCerts::PlatformVerifier,
    };
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(config.timeout))
        .tls_config(TlsConfig::builder().root_certs(roots).build())
        .build()
        .new_agent();
    Ok(agent)
}

fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// Query values are names chosen by the user (databases, buckets, orgs).
fn percent_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
