//! A notice: what a rule says when it fires or clears, or when a process makes a first
//! contact. The same JSON document goes to the webhook and to a command's standard
//! input; the log line is its `message`.

use super::scope::Scope;
use crate::config::alerts::TrafficSide;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Firing,
    Cleared,
    /// A first contact: nothing to clear.
    Notice,
}

#[derive(Clone, Debug, Serialize)]
pub struct Notice {
    pub rule: String,
    /// "quota", "rate", "first_contact" or "health".
    pub kind: &'static str,
    pub state: State,
    pub message: String,
    pub hostname: String,
    /// RFC 3339, UTC; and the same as Unix seconds.
    pub time: String,
    pub unix_time: i64,
    pub scope: Scope,
    pub traffic: TrafficSide,
    #[serde(flatten)]
    pub details: Details,
}

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Details {
    Quota {
        used_bytes: u64,
        limit_bytes: u64,
        ratio: f64,
        period: PeriodFacts,
        /// What the quota does to its scope's traffic while it fires.
        #[serde(skip_serializing_if = "Option::is_none")]
        throttle: Option<ThrottleFacts>,
    },
    Rate {
        rate_bytes_per_second: f64,
        limit_bytes_per_second: f64,
        held_seconds: f64,
        ratio: f64,
    },
    Contact(Box<ContactFacts>),
    /// A measure of TCP's health: `retransmit_ratio` (a share), `rtt` (microseconds)
    /// or `connect_failures` (per interval).
    Health {
        measure: &'static str,
        value: f64,
        limit: f64,
        held_seconds: f64,
    },
}

/// A quota's action: "throttle" to these rates (bytes per second) or "block".
#[derive(Clone, Debug, Serialize)]
pub struct ThrottleFacts {
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress_bytes_per_second: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress_bytes_per_second: Option<u64>,
}

impl ThrottleFacts {
    /// A blocked way has rate 0 (see `RuleConfig::throttle`).
    pub fn of(limit: &crate::config::limits::Limit) -> ThrottleFacts {
        let blocked = [limit.egress, limit.ingress].contains(&Some(0));
        ThrottleFacts {
            action: if blocked { "block" } else { "throttle" },
            egress_bytes_per_second: limit.egress.filter(|rate| *rate > 0),
            ingress_bytes_per_second: limit.ingress.filter(|rate| *rate > 0),
        }
    }

    pub fn describe(&self) -> String {
        let rate = self
            .egress_bytes_per_second
            .or(self.ingress_bytes_per_second)
            .map(|rate| crate::units::bits_per_second(rate as f64))
            .unwrap_or_default();
        match self.action {
            "block" => "its traffic is blocked".into(),
            _ => format!("its traffic is throttled to {rate}"),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct PeriodFacts {
    /// "day" or "month" (the billing month).
    pub per: &'static str,
    pub label: String,
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ContactFacts {
    pub process: String,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub interface: String,
    /// What is new to the process: the peer's name (else its address), or a country.
    pub contact: String,
    pub peer_address: Option<String>,
    pub peer_name: Option<String>,
    pub service: Option<String>,
    pub country: Option<String>,
}
