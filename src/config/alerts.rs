//! `[alerts]`: quotas on bytes per day or billing month, limits on a rate held for a
//! while, and first contacts with a new peer, each a `[[alerts.rule]]`; where notices
//! go (log, webhook, command).

use bytesize::ByteSize;
use serde::Deserialize;
use std::time::Duration;

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where every rule's notices are POSTed, unless the rule names its own.
    pub webhook: Option<url::Url>,
    /// Run for every notice (the notice as JSON on standard input), unless the rule
    /// names its own.
    pub command: Option<Vec<String>>,
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    /// Captures rules write (`capture = "60s"`) kept in the state directory's
    /// `captures/`; the oldest go first.
    #[serde(default = "default_captures_kept")]
    pub captures_kept: usize,
    /// Largest capture a rule writes, in MiB.
    #[serde(default = "default_capture_max_mib")]
    pub capture_max_mib: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook: None,
            command: None,
            rules: Vec::new(),
            captures_kept: default_captures_kept(),
            capture_max_mib: default_capture_max_mib(),
        }
    }
}

fn default_captures_kept() -> usize {
    10
}

fn default_capture_max_mib() -> u64 {
    20
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    /// What the rule watches; none of them: the whole host.
    pub process: Option<String>,
    /// A user name or uid.
    pub user: Option<UserSetting>,
    pub interface: Option<String>,
    /// A container's name, or the start of its id.
    pub container: Option<String>,
    #[serde(default)]
    pub traffic: TrafficSide,
    /// A quota: this many bytes per `per` (e.g. "5 GB", "500 MiB").
    #[serde(default, deserialize_with = "size")]
    pub limit: Option<ByteSize>,
    pub per: Option<QuotaPeriod>,
    /// A rate limit: bytes or bits per second (e.g. "10 MB/s", "50 Mbit/s") held for
    /// `held`.
    pub rate: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub held: Option<Duration>,
    /// A notice the first time a process talks to a peer (by name where known) or a
    /// country it never talked to before, once `learning` has passed.
    pub first_contact: Option<ContactBy>,
    #[serde(default, with = "humantime_serde")]
    pub learning: Option<Duration>,
    /// TCP health: the share of the segments sent that were sent again (0.02: 2%),
    /// held for `held`.
    pub retransmit_ratio: Option<f64>,
    /// TCP health: the traffic-weighted smoothed round-trip time ("200ms"), held.
    #[serde(default, with = "humantime_serde")]
    pub rtt: Option<Duration>,
    /// TCP health: this many failed connects in an interval (held: 0 unless given).
    pub connect_failures: Option<u64>,
    pub webhook: Option<url::Url>,
    pub command: Option<Vec<String>>,
    /// What a quota does when it fires, besides its notice: "throttle" the scope's
    /// traffic to `throttle_to`, or "block" it, until the period ends.
    pub action: Option<RuleAction>,
    pub throttle_to: Option<String>,
    /// When the rule fires, capture its scope's packets this long into the state
    /// directory (eBPF engine).
    #[serde(default, with = "humantime_serde")]
    pub capture: Option<Duration>,
}

#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Notify,
    Throttle,
    Block,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum UserSetting {
    Uid(u32),
    Name(String),
}

#[derive(Deserialize, serde::Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrafficSide {
    #[default]
    Both,
    Sent,
    Received,
}

impl TrafficSide {
    /// The bytes of `(sent, received)` a rule counts.
    pub fn of(self, sent: u64, received: u64) -> u64 {
        match self {
            TrafficSide::Both => sent + received,
            TrafficSide::Sent => sent,
            TrafficSide::Received => received,
        }
    }
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    Day,
    /// The billing month, from `[report] billing_day`.
    Month,
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ContactBy {
    Peer,
    Country,
}

/// What a rule watches for, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum RuleKind {
    Quota {
        limit: u64,
        per: QuotaPeriod,
    },
    Rate {
        bytes_per_second: f64,
        held: Duration,
    },
    FirstContact {
        by: ContactBy,
        learning: Duration,
    },
    Health {
        measure: HealthMeasure,
        /// In the measure's unit: a ratio, microseconds, failed connects.
        limit: f64,
        held: Duration,
    },
}

/// What a TCP health rule measures each interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthMeasure {
    RetransmitRatio,
    Rtt,
    ConnectFailures,
}

impl HealthMeasure {
    pub fn key(self) -> &'static str {
        match self {
            HealthMeasure::RetransmitRatio => "retransmit_ratio",
            HealthMeasure::Rtt => "rtt",
            HealthMeasure::ConnectFailures => "connect_failures",
        }
    }
}

/// How long a rate must stay above its limit (and then below it) when `held` is not
/// given.
pub const DEFAULT_HELD: Duration = Duration::from_secs(60);
pub const DEFAULT_LEARNING: Duration = Duration::from_secs(86_400);

impl RuleConfig {
    /// The uid of `user`, a name looked up in the host's user database.
    pub fn uid(&self) -> anyhow::Result<Option<u32>> {
        match &self.user {
            None => Ok(None),
            Some(UserSetting::Uid(uid)) => Ok(Some(*uid)),
            Some(UserSetting::Name(name)) => match nix::unistd::User::from_name(name) {
                Ok(Some(user)) => Ok(Some(user.uid.as_raw())),
                Ok(None) => anyhow::bail!(
                    "[[alerts.rule]] \"{}\": no user {name} on this host; give an existing user or a uid (user = 1000)",
                    self.name
                ),
                Err(error) => anyhow::bail!(
                    "[[alerts.rule]] \"{}\": cannot look user {name} up ({error}); give a uid (user = 1000)",
                    self.name
                ),
            },
        }
    }

    /// The rule's kind; exactly one of `limit`, `rate` and `first_contact` is set.
    pub fn kind(&self) -> anyhow::Result<RuleKind> {
        let name = &self.name;
        let health = self.health_kind()?;
        let kind = match (&self.limit, &self.rate, &self.first_contact, health) {
            (None, None, None, Some(health)) => health,
            (Some(limit), None, None, None) => {
                let Some(per) = self.per else {
                    anyhow::bail!(
                        "[[alerts.rule]] \"{name}\": a limit needs per = \"day\" or per = \"month\""
                    );
                };
                if limit.as_u64() == 0 {
                    anyhow::bail!("[[alerts.rule]] \"{name}\": limit must be more than 0 bytes");
                }
                RuleKind::Quota {
                    limit: limit.as_u64(),
                    per,
                }
            }
            (None, Some(rate), None, None) => RuleKind::Rate {
                bytes_per_second: parse_rate(rate).map_err(|e| {
                    anyhow::anyhow!("[[alerts.rule]] \"{name}\": rate = \"{rate}\": {e}")
                })?,
                held: self.held.unwrap_or(DEFAULT_HELD),
            },
            (None, None, Some(by), None) => RuleKind::FirstContact {
                by: *by,
                learning: self.learning.unwrap_or(DEFAULT_LEARNING),
            },
            _ => anyhow::bail!(
                "[[alerts.rule]] \"{name}\": give exactly one of limit (with per), rate (with held), first_contact, retransmit_ratio, rtt or connect_failures"
            ),
        };
        let misplaced = match kind {
            RuleKind::Quota { .. } => [
                ("held", self.held.is_some()),
                ("learning", self.learning.is_some()),
            ],
            RuleKind::Rate { .. } => [
                ("per", self.per.is_some()),
                ("learning", self.learning.is_some()),
            ],
            RuleKind::FirstContact { .. } => {
                [("per", self.per.is_some()), ("held", self.held.is_some())]
            }
            RuleKind::Health { .. } => [
                ("per", self.per.is_some()),
                ("learning", self.learning.is_some()),
            ],
        };
        if let Some((key, _)) = misplaced.iter().find(|(_, set)| *set) {
            anyhow::bail!(
                "[[alerts.rule]] \"{name}\": {key} does not apply to this kind of rule; remove it"
            );
        }
        Ok(kind)
    }
}

impl RuleConfig {
    /// The limit a quota applies while it fires (`action`), if any.
    pub fn throttle(&self) -> anyhow::Result<Option<crate::config::limits::Limit>> {
        use crate::config::limits::{Limit, LimitScope};
        let name = &self.name;
        let action = self.action.unwrap_or_default();
        if action == RuleAction::Notify {
            if self.throttle_to.is_some() {
                anyhow::bail!(
                    "[[alerts.rule]] \"{name}\": throttle_to needs action = \"throttle\""
                );
            }
            return Ok(None);
        }
        if !matches!(self.kind()?, RuleKind::Quota { .. }) {
            anyhow::bail!("[[alerts.rule]] \"{name}\": action = \"throttle\" or \"block\" applies to quotas (limit with per) only");
        }
        let scope = match (&self.process, self.uid()?, &self.container, &self.interface) {
            (Some(process), None, None, None) => LimitScope::Process(process.clone()),
            (None, Some(uid), None, None) => LimitScope::Uid(uid),
            (None, None, Some(container), None) => LimitScope::Container(container.clone()),
            _ => anyhow::bail!("[[alerts.rule]] \"{name}\": a quota that throttles or blocks needs one scope, process, user or container (not an interface, nor two at once)"),
        };
        let rate = match (action, &self.throttle_to) {
            (RuleAction::Block, None) => 0,
            (RuleAction::Block, Some(_)) => anyhow::bail!("[[alerts.rule]] \"{name}\": action = \"block\" takes no throttle_to; remove it"),
            (_, None) => anyhow::bail!("[[alerts.rule]] \"{name}\": action = \"throttle\" needs throttle_to (e.g. \"1 Mbit/s\")"),
            (_, Some(text)) => (parse_rate(text).map_err(|e| {
                anyhow::anyhow!("[[alerts.rule]] \"{name}\": throttle_to = \"{text}\": {e}")
            })?
            .round() as u64)
                .max(1),
        };
        let (egress, ingress) = match self.traffic {
            TrafficSide::Sent => (Some(rate), None),
            TrafficSide::Received => (None, Some(rate)),
            TrafficSide::Both => (Some(rate), Some(rate)),
        };
        Ok(Some(Limit {
            name: name.clone(),
            scope,
            egress,
            ingress,
        }))
    }

    /// The TCP health rule this is, if any (at most one measure).
    fn health_kind(&self) -> anyhow::Result<Option<RuleKind>> {
        let name = &self.name;
        let measures = [
            self.retransmit_ratio
                .map(|ratio| (HealthMeasure::RetransmitRatio, ratio)),
            self.rtt
                .map(|rtt| (HealthMeasure::Rtt, rtt.as_secs_f64() * 1e6)),
            self.connect_failures
                .map(|failures| (HealthMeasure::ConnectFailures, failures as f64)),
        ];
        let mut given = measures.into_iter().flatten();
        let Some((measure, limit)) = given.next() else {
            return Ok(None);
        };
        if given.next().is_some() {
            anyhow::bail!("[[alerts.rule]] \"{name}\": give one of retransmit_ratio, rtt and connect_failures per rule");
        }
        let valid = match measure {
            HealthMeasure::RetransmitRatio => limit > 0.0 && limit < 1.0,
            HealthMeasure::Rtt | HealthMeasure::ConnectFailures => limit > 0.0,
        };
        if !valid {
            anyhow::bail!(match measure {
                HealthMeasure::RetransmitRatio => format!("[[alerts.rule]] \"{name}\": retransmit_ratio = {limit} is a share of the segments sent: give more than 0 and less than 1 (0.02 is 2%)"),
                HealthMeasure::Rtt => format!("[[alerts.rule]] \"{name}\": rtt must be more than 0 (rtt = \"200ms\")"),
                HealthMeasure::ConnectFailures => format!("[[alerts.rule]] \"{name}\": connect_failures must be 1 or more"),
            });
        }
        // A failed connect is an event: noticed in its interval unless told to wait.
        let held = match measure {
            HealthMeasure::ConnectFailures => self.held.unwrap_or_default(),
            _ => self.held.unwrap_or(DEFAULT_HELD),
        };
        Ok(Some(RuleKind::Health {
            measure,
            limit,
            held,
        }))
    }
}

/// "10 MB/s", "10MiB/s", "50 Mbit/s", "1 Gbps", or a number of bytes per second.
pub fn parse_rate(text: &str) -> anyhow::Result<f64> {
    let trimmed = text.trim();
    let per_second = trimmed
        .strip_suffix("/s")
        .or_else(|| trimmed.strip_suffix("ps"))
        .unwrap_or(trimmed)
        .trim();
    let (amount, divisor) = match per_second.strip_suffix("bit") {
        Some(bits) => (format!("{}B", bits.trim()), 8.0),
        None => match per_second.strip_suffix('b') {
            Some(bits) => (format!("{}B", bits.trim()), 8.0),
            None => (per_second.to_string(), 1.0),
        },
    };
    let bytes: ByteSize = amount.parse().map_err(|_| {
        anyhow::anyhow!(
            "not a rate: write bytes or bits per second, like \"10 MB/s\" or \"50 Mbit/s\""
        )
    })?;
    if bytes.as_u64() == 0 {
        anyhow::bail!("a rate of 0 is always crossed; give more than 0");
    }
    Ok(bytes.as_u64() as f64 / divisor)
}

/// A size as a person writes it ("5 GB", "500 MiB", or a number of bytes), with the
/// fix in the error.
fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<ByteSize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Bytes(u64),
        Text(String),
    }
    match Written::deserialize(deserializer)? {
        Written::Bytes(bytes) => Ok(Some(ByteSize::b(bytes))),
        Written::Text(text) => text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not a size: write a number and a unit, like \"5 GB\" or \"500 MiB\""
            ))
        }),
    }
}

/// A webhook netgraph will POST to: HTTP(S) to a real port, with no credentials in the
/// URL (they would end up in logs; a token in the path or query is redacted there).
fn check_webhook(url: &url::Url, owner: &str) -> anyhow::Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!(
            "{owner}: webhook = \"{}:...\" is not HTTP: give an http:// or https:// URL",
            url.scheme()
        );
    }
    if !url.username().is_empty() || url.password().is_some() {
        anyhow::bail!(
            "{owner}: webhook URLs with user:password@ are refused (they would be logged); put a token in the path or query, which logs leave out"
        );
    }
    if url.port() == Some(0) || url.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("{owner}: webhook needs a host and a port other than 0");
    }
    Ok(())
}

impl AlertsConfig {
    pub fn check(&self, peers_enabled: bool, geoip: bool) -> anyhow::Result<()> {
        if let Some(url) = &self.webhook {
            check_webhook(url, "[alerts]")?;
        }
        if self.captures_kept == 0 || self.capture_max_mib == 0 {
            anyhow::bail!("[alerts] captures_kept and capture_max_mib must be more than 0");
        }
        let mut names = std::collections::HashSet::new();
        for rule in &self.rules {
            if rule.name.is_empty() || !names.insert(rule.name.as_str()) {
                anyhow::bail!(
                    "[[alerts.rule]] name = \"{}\": every rule needs a name of its own",
                    rule.name
                );
            }
            rule.uid()?;
            rule.throttle()?;
            if rule.capture.is_some_and(|duration| duration.is_zero()) {
                anyhow::bail!(
                    "[[alerts.rule]] \"{}\": capture = \"0s\" captures nothing; give how long (e.g. \"60s\") or remove it",
                    rule.name
                );
            }
            if let Some(url) = &rule.webhook {
                check_webhook(url, &format!("[[alerts.rule]] \"{}\"", rule.name))?;
            }
            match rule.kind()? {
                RuleKind::FirstContact {
                    by: ContactBy::Peer,
                    ..
                } if !peers_enabled => anyhow::bail!(
                    "[[alerts.rule]] \"{}\": first_contact = \"peer\" needs the peers: set [peers] enabled = true",
                    rule.name
                ),
                RuleKind::FirstContact {
                    by: ContactBy::Country,
                    ..
                } if !geoip => anyhow::bail!(
                    "[[alerts.rule]] \"{}\": first_contact = \"country\" needs [geoip] with a database",
                    rule.name
                ),
                _ => {}
            }
            for command in [&rule.command, &self.command].into_iter().flatten() {
                if command.is_empty() || command[0].is_empty() {
                    anyhow::bail!(
                        "[[alerts.rule]] \"{}\": command = [] names no program; give [\"/path/to/program\", \"argument\", ...]",
                        rule.name
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_bytes_and_bits() {
        assert_eq!(parse_rate("10 MB/s").unwrap(), 10e6);
        assert_eq!(parse_rate("1 MiB/s").unwrap(), 1_048_576.0);
        assert_eq!(parse_rate("50 Mbit/s").unwrap(), 50e6 / 8.0);
        assert_eq!(parse_rate("8kbit").unwrap(), 1000.0);
        assert_eq!(parse_rate("1 Gbps").unwrap(), 1e9 / 8.0);
        assert_eq!(parse_rate("4096").unwrap(), 4096.0);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0 MB/s").is_err());
    }

    #[test]
    fn a_size_that_is_not_one_says_how_to_write_it() {
        let parsed = |limit: &str| {
            toml::from_str::<AlertsConfig>(&format!(
                "[[rule]]\nname = \"r\"\nper = \"day\"\nlimit = {limit}\n"
            ))
            .map(|c| c.rules[0].limit.map(|l| l.as_u64()))
            .map_err(|e| e.to_string())
        };
        assert_eq!(parsed("\"5 GB\""), Ok(Some(5_000_000_000)));
        assert_eq!(parsed("\"500 MiB\""), Ok(Some(500 << 20)));
        assert_eq!(parsed("1000"), Ok(Some(1000)));
        let error = parsed("\"5 GBB\"").unwrap_err();
        assert!(
            error.contains("\"5 GBB\" is not a size: write a number and a unit"),
            "{error}"
        );
    }

    fn rule(extra: &str) -> anyhow::Result<RuleKind> {
        let config: AlertsConfig =
            toml::from_str(&format!("[[rule]]\nname = \"r\"\n{extra}")).unwrap();
        config.check(true, true)?;
        config.rules[0].kind()
    }

    fn throttle(extra: &str) -> anyhow::Result<Option<crate::config::limits::Limit>> {
        let config: AlertsConfig =
            toml::from_str(&format!("[[rule]]\nname = \"q\"\n{extra}")).unwrap();
        config.check(true, true)?;
        config.rules[0].throttle()
    }

    #[test]
    fn quotas_throttle_or_block_their_scope_the_way_they_count() {
        use crate::config::limits::LimitScope;
        let quota = "limit = \"5 MB\"\nper = \"day\"\nprocess = \"curl\"\n";
        let limit = throttle(&format!(
            "{quota}action = \"throttle\"\nthrottle_to = \"8 Mbit/s\"\ntraffic = \"sent\""
        ))
        .unwrap()
        .unwrap();
        assert_eq!(limit.scope, LimitScope::Process("curl".into()));
        assert_eq!((limit.egress, limit.ingress), (Some(1_000_000), None));
        let blocked = throttle(&format!("{quota}action = \"block\""))
            .unwrap()
            .unwrap();
        assert_eq!((blocked.egress, blocked.ingress), (Some(0), Some(0)));
        assert_eq!(throttle(quota).unwrap(), None);
        for (extra, says) in [
            ("action = \"throttle\"", "needs throttle_to"),
            ("throttle_to = \"1 Mbit/s\"", "needs action"),
            (
                "action = \"block\"\nthrottle_to = \"1 Mbit/s\"",
                "takes no throttle_to",
            ),
        ] {
            let error = throttle(&format!("{quota}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{extra}: {error}");
        }
        let error = throttle("rate = \"1 MB/s\"\nprocess = \"curl\"\naction = \"block\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("quotas"), "{error}");
        let error = throttle("limit = \"5 MB\"\nper = \"day\"\naction = \"block\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("one scope"), "{error}");
        let container =
            throttle("limit = \"5 MB\"\nper = \"day\"\ncontainer = \"web\"\naction = \"block\"")
                .unwrap()
                .unwrap();
        assert_eq!(container.scope, LimitScope::Container("web".into()));
    }

    #[test]
    fn each_kind_and_its_mistakes() {
        assert_eq!(
            rule("limit = \"5 MB\"\nper = \"day\"").unwrap(),
            RuleKind::Quota {
                limit: 5_000_000,
                per: QuotaPeriod::Day
            }
        );
        assert_eq!(
            rule("rate = \"1 MB/s\"\nheld = \"3s\"").unwrap(),
            RuleKind::Rate {
                bytes_per_second: 1e6,
                held: Duration::from_secs(3)
            }
        );
        assert_eq!(
            rule("first_contact = \"peer\"").unwrap(),
            RuleKind::FirstContact {
                by: ContactBy::Peer,
                learning: DEFAULT_LEARNING
            }
        );
        let error = |extra| rule(extra).unwrap_err().to_string();
        assert!(error("limit = \"5 MB\"").contains("per = \"day\""));
        assert!(error("").contains("exactly one of"));
        assert!(error("limit = \"5 MB\"\nrate = \"1 MB/s\"\nper = \"day\"").contains("exactly one"));
        assert!(
            error("limit = \"5 MB\"\nper = \"day\"\nheld = \"1m\"").contains("held does not apply")
        );
        assert!(error("rate = \"slow\"").contains("not a rate"));
        assert!(error("limit = \"5 MB\"\nper = \"day\"\ncommand = []").contains("names no program"));
    }

    #[test]
    fn tcp_health_rules_and_their_mistakes() {
        assert_eq!(
            rule("retransmit_ratio = 0.02\nheld = \"30s\"").unwrap(),
            RuleKind::Health {
                measure: HealthMeasure::RetransmitRatio,
                limit: 0.02,
                held: Duration::from_secs(30)
            }
        );
        assert_eq!(
            rule("rtt = \"250ms\"").unwrap(),
            RuleKind::Health {
                measure: HealthMeasure::Rtt,
                limit: 250_000.0,
                held: DEFAULT_HELD
            }
        );
        // A failed connect is noticed in its interval unless told to wait.
        assert_eq!(
            rule("connect_failures = 3").unwrap(),
            RuleKind::Health {
                measure: HealthMeasure::ConnectFailures,
                limit: 3.0,
                held: Duration::ZERO
            }
        );
        let error = |extra| rule(extra).unwrap_err().to_string();
        assert!(error("retransmit_ratio = 2").contains("0.02 is 2%"));
        assert!(error("connect_failures = 0").contains("1 or more"));
        assert!(error("rtt = \"200ms\"\nconnect_failures = 1").contains("one of retransmit_ratio"));
        assert!(error("rtt = \"200ms\"\nrate = \"1 MB/s\"").contains("exactly one"));
        assert!(error("rtt = \"200ms\"\nper = \"day\"").contains("per does not apply"));
    }

    #[test]
    fn first_contacts_need_what_they_watch() {
        let config: AlertsConfig =
            toml::from_str("[[rule]]\nname = \"new\"\nfirst_contact = \"peer\"").unwrap();
        let error = config.check(false, false).unwrap_err().to_string();
        assert!(error.contains("[peers] enabled = true"), "{error}");
        let config: AlertsConfig =
            toml::from_str("[[rule]]\nname = \"new\"\nfirst_contact = \"country\"").unwrap();
        let error = config.check(true, false).unwrap_err().to_string();
        assert!(error.contains("[geoip]"), "{error}");
    }

    #[test]
    fn users_by_name_or_uid() {
        let rule = |user: &str| -> RuleConfig {
            let config: AlertsConfig = toml::from_str(&format!(
                "[[rule]]\nname = \"r\"\nrate = \"1 MB/s\"\nuser = {user}"
            ))
            .unwrap();
            config.rules[0].clone()
        };
        assert_eq!(rule("1000").uid().unwrap(), Some(1000));
        assert_eq!(rule("\"root\"").uid().unwrap(), Some(0));
        let error = rule("\"no-such-user-here\"").uid().unwrap_err().to_string();
        assert!(error.contains("no user no-such-user-here"), "{error}");
    }

    #[test]
    fn webhooks_are_http_without_credentials_or_port_0() {
        let check = |url: &str| {
            let config: AlertsConfig = toml::from_str(&format!(
                "webhook = \"{url}\"\n[[rule]]\nname = \"a\"\nrate = \"1 MB/s\""
            ))
            .unwrap();
            config.check(false, false).map_err(|e| e.to_string())
        };
        assert!(check("https://alerts.example.org/hook?token=x").is_ok());
        assert!(check("http://127.0.0.1:8080/").is_ok());
        let error = check("https://user:secret@alerts.example.org/").unwrap_err();
        assert!(
            error.contains("user:password@") && !error.contains("secret"),
            "{error}"
        );
        assert!(check("ftp://files.example.org/")
            .unwrap_err()
            .contains("not HTTP"));
        assert!(check("http://127.0.0.1:0/")
            .unwrap_err()
            .contains("port other than 0"));
    }

    #[test]
    fn rule_names_are_unique() {
        let config: AlertsConfig = toml::from_str(
            "[[rule]]\nname = \"a\"\nrate = \"1 MB/s\"\n[[rule]]\nname = \"a\"\nrate = \"2 MB/s\"",
        )
        .unwrap();
        assert!(config.check(true, true).is_err());
    }
}
