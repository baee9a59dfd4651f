//! One `[[influxdb]]` sink: the keys as written (every API's, so that a typo is refused
//! with the closest known key), turned at load into settings that hold only what the
//! chosen write API takes.

use super::secret::{Secret, SecretSource};
use super::{check_between, check_url, DAY, HOUR, MILLISECOND};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    V1,
    V2,
    V3,
}

/// Where points go, per write API, with that API's settings only.
#[derive(Clone, Debug)]
pub enum InfluxTarget {
    V1 {
        database: String,
        retention_policy: Option<String>,
        /// Basic authentication: a user and its password.
        username: Option<String>,
        password: SecretSource,
    },
    V2 {
        org: String,
        bucket: String,
        token: SecretSource,
    },
    V3 {
        database: String,
        token: SecretSource,
    },
}

/// One sink's settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "InfluxFile")]
pub struct InfluxConfig {
    /// Names the sink in logs, metrics and its spool directory.
    pub name: Option<String>,
    pub url: String,
    pub target: InfluxTarget,
    /// PEM file with the CA that signs the server's certificate; default: system roots.
    pub ca_file: Option<PathBuf>,
    pub gzip: bool,
    pub batch_lines: usize,
    pub flush_interval: Duration,
    /// Each wait before a flush is lengthened by up to this share, so a fleet spreads out.
    pub jitter: f64,
    pub max_retry_delay: Duration,
    pub timeout: Duration,
    pub spool_max_mib: u64,
}

/// `[[influxdb]]` as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxFile {
    pub name: Option<String>,
    pub url: String,
    pub api: InfluxApi,
    pub database: Option<String>,
    pub retention_policy: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    pub ca_file: Option<PathBuf>,
    #[serde(default = "yes")]
    pub gzip: bool,
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
    #[serde(default = "default_flush_interval", with = "humantime_serde")]
    pub flush_interval: Duration,
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    #[serde(default = "default_max_retry_delay", with = "humantime_serde")]
    pub max_retry_delay: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default = "default_spool_max_mib")]
    pub spool_max_mib: u64,
}

impl InfluxFile {
    /// A sink with every option at its default.
    pub fn new(url: String, api: InfluxApi) -> InfluxFile {
        InfluxFile {
            name: None,
            url,
            api,
            database: None,
            retention_policy: None,
            username: None,
            password: None,
            password_file: None,
            password_env: None,
            org: None,
            bucket: None,
            token: None,
            token_file: None,
            token_env: None,
            ca_file: None,
            gzip: true,
            batch_lines: default_batch_lines(),
            flush_interval: default_flush_interval(),
            jitter: default_jitter(),
            max_retry_delay: default_max_retry_delay(),
            timeout: default_timeout(),
            spool_max_mib: default_spool_max_mib(),
        }
    }

    /// The keys of other APIs that were given, named for the error.
    fn foreign_keys(&self) -> Vec<&'static str> {
        let given = |present: bool, key: &'static str| present.then_some(key);
        let password =
            self.password.is_some() || self.password_file.is_some() || self.password_env.is_some();
        let token = self.token.is_some() || self.token_file.is_some() || self.token_env.is_some();
        let candidates = match self.api {
            InfluxApi::V1 => vec![
                given(self.org.is_some(), "org"),
                given(self.bucket.is_some(), "bucket"),
                given(token, "token"),
            ],
            InfluxApi::V2 => vec![
                given(self.database.is_some(), "database"),
                given(self.retention_policy.is_some(), "retention_policy"),
                given(self.username.is_some(), "username"),
                given(password, "password"),
            ],
            InfluxApi::V3 => vec![
                given(self.org.is_some(), "org"),
                given(self.bucket.is_some(), "bucket"),
                given(self.retention_policy.is_some(), "retention_policy"),
                given(self.username.is_some(), "username"),
                given(password, "password"),
            ],
        };
        candidates.into_iter().flatten().collect()
    }
}

impl TryFrom<InfluxFile> for InfluxConfig {
    type Error = String;

    fn try_from(file: InfluxFile) -> Result<InfluxConfig, String> {
        let api = file.api;
        if let Some(key) = file.foreign_keys().first() {
            return Err(format!(
                "api {api:?} does not take {key}: it belongs to another write API (v1: database, retention_policy, username, password; v2: org, bucket, token; v3: database, token)"
            ));
        }
        let missing = |key: &str| format!("api {api:?} needs {key}");
        let token = SecretSource::new(file.token, file.token_file, file.token_env);
        let target = match api {
            InfluxApi::V1 => InfluxTarget::V1 {
                database: file.database.ok_or_else(|| missing("database"))?,
                retention_policy: file.retention_policy,
                username: file.username,
                password: SecretSource::new(file.password, file.password_file, file.password_env),
            },
            InfluxApi::V2 => InfluxTarget::V2 {
                org: file.org.ok_or_else(|| missing("org"))?,
                bucket: file.bucket.ok_or_else(|| missing("bucket"))?,
                token,
            },
            InfluxApi::V3 => InfluxTarget::V3 {
                database: file.database.ok_or_else(|| missing("database"))?,
                token,
            },
        };
        Ok(InfluxConfig {
            name: file.name,
            url: file.url,
            target,
            ca_file: file.ca_file,
            gzip: file.gzip,
            batch_lines: file.batch_lines,
            flush_interval: file.flush_interval,
            jitter: file.jitter,
            max_retry_delay: file.max_retry_delay,
            timeout: file.timeout,
            spool_max_mib: file.spool_max_mib,
        })
    }
}

impl InfluxConfig {
    /// The sink's name in logs, metrics, `check` and its spool directory: the configured
    /// `name` (made safe as a file name), else `influxdb`, `influxdb-2`, ... by position.
    pub fn sink_name(&self, index: usize) -> String {
        let name = self.name.clone().unwrap_or_else(|| match index {
            0 => "influxdb".into(),
            n => format!("influxdb-{}", n + 1),
        });
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }

    pub fn api(&self) -> InfluxApi {
        match self.target {
            InfluxTarget::V1 { .. } => InfluxApi::V1,
            InfluxTarget::V2 { .. } => InfluxApi::V2,
            InfluxTarget::V3 { .. } => InfluxApi::V3,
        }
    }

    /// Values in range, and every secret and file readable now.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        check_url(&self.url)?;
        if self.batch_lines == 0 {
            anyhow::bail!("batch_lines must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            anyhow::bail!("jitter must be between 0 and 1");
        }
        check_between(
            "flush_interval",
            self.flush_interval,
            MILLISECOND * 10,
            HOUR,
        )?;
        check_between("timeout", self.timeout, MILLISECOND * 100, HOUR)?;
        check_between(
            "max_retry_delay",
            self.max_retry_delay,
            MILLISECOND * 100,
            DAY,
        )?;
        if self.spool_max_mib == 0 {
            anyhow::bail!("spool_max_mib must be at least 1");
        }
        // Read now: a missing file or variable is a configuration error, found by `check`.
        self.password()?;
        self.token()?;
        self.ca_certificate()?;
        Ok(())
    }

    /// The certificate authority in `ca_file`, if one is configured.
    pub fn ca_certificate(&self) -> anyhow::Result<Option<ureq::tls::Certificate<'static>>> {
        self.ca_file.as_deref().map(super::read_ca_file).transpose()
    }

    /// v1's password, read from where it is kept.
    pub fn password(&self) -> anyhow::Result<Option<Secret>> {
        match &self.target {
            InfluxTarget::V1 { password, .. } => password.resolve("password"),
            _ => Ok(None),
        }
    }

    /// v2's or v3's token, read from where it is kept.
    pub fn token(&self) -> anyhow::Result<Option<Secret>> {
        match &self.target {
            InfluxTarget::V2 { token, .. } | InfluxTarget::V3 { token, .. } => {
                token.resolve("token")
            }
            InfluxTarget::V1 { .. } => Ok(None),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_batch_lines() -> usize {
    5000
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_jitter() -> f64 {
    0.2
}
fn default_max_retry_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_spool_max_mib() -> u64 {
    256
}
