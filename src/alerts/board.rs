//! The rules' state as others read it: the Prometheus gauges (one per rule) and the
//! page's list of quotas with how much of each is used.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// One rule as the page shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleStatus {
    pub rule: String,
    pub kind: &'static str,
    /// What it watches, as a person reads it.
    pub watches: String,
    pub traffic: crate::config::alerts::TrafficSide,
    pub firing: bool,
    /// Quotas: bytes so far in the period and the limit; rates: bytes per second now and
    /// the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// A quota's period at its present pace (see `netgraph report`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected: Option<u64>,
    /// First contacts: contacts known, and until when they are learnt silently.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_contacts: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_until: Option<i64>,
    /// A quota's action: "throttle to 1.0 Mbit/s" or "block", and whether it is applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub throttling: bool,
}

#[derive(Clone, Default)]
pub struct AlertBoard {
    rules: Arc<Mutex<Vec<RuleStatus>>>,
    used_ratio: Family<RuleLabel, Gauge<f64, AtomicU64>>,
    firing: Family<RuleLabel, Gauge>,
}

impl AlertBoard {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "netgraph_quota_used_ratio",
            "A quota rule's bytes this period over its limit, or a rate rule's rate over its limit (1: reached)",
            self.used_ratio.clone(),
        );
        registry.register(
            "netgraph_alert_firing",
            "1 while an alert rule is firing",
            self.firing.clone(),
        );
    }

    /// Publishes the rules' state; rules no longer configured disappear.
    pub fn publish(&self, rules: Vec<RuleStatus>) {
        let mut shown = crate::locks::lock(&self.rules);
        for gone in shown
            .iter()
            .filter(|old| !rules.iter().any(|r| r.rule == old.rule))
        {
            let label = RuleLabel {
                rule: gone.rule.clone(),
            };
            self.used_ratio.remove(&label);
            self.firing.remove(&label);
        }
        for rule in &rules {
            let label = RuleLabel {
                rule: rule.rule.clone(),
            };
            if let Some(ratio) = rule.ratio {
                self.used_ratio.get_or_create(&label).set(ratio);
            }
            self.firing
                .get_or_create(&label)
                .set(i64::from(rule.firing));
        }
        *shown = rules;
    }

    pub fn rules(&self) -> Vec<RuleStatus> {
        crate::locks::lock(&self.rules).clone()
    }
}
