//! Keeps the last interval in memory for the live views (the web page's top list and
//! `netgraph top`), which must not wait for the store.

use super::Sink;
use crate::accounting::IntervalReport;
use crate::config::limits::LimitScope;
use crate::engine::features::EngineStatus;
use crate::store::seconds;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct LiveRow {
    pub name: String,
    pub uid: Option<u32>,
    pub interface: String,
    pub attributed: bool,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    /// The container (its name, else its short id), pod and namespace, and the
    /// systemd unit; absent from daemons older than these fields.
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// Bytes per second over the last interval.
    pub sent_rate: f64,
    pub recv_rate: f64,
    /// Since netgraph started.
    pub sent_total: u64,
    pub recv_total: u64,
    /// TCP's smoothed RTT over the last interval (traffic-weighted), where known.
    #[serde(default)]
    pub rtt_us: Option<u32>,
    /// Segments retransmitted in the last interval, and since netgraph started.
    #[serde(default)]
    pub retransmits: u64,
    #[serde(default)]
    pub retransmits_total: u64,
    /// Connects that failed in the last interval.
    #[serde(default)]
    pub connect_failures: u64,
}

/// One series' traffic with one peer over the last interval (with `[peers]`).
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct LivePeer {
    /// The series, as in [`LiveRow`].
    pub name: String,
    pub uid: Option<u32>,
    pub interface: String,
    pub container: Option<String>,
    /// The address, or `other`.
    pub peer: String,
    pub peer_name: Option<String>,
    pub service: Option<String>,
    pub sent_rate: f64,
    pub recv_rate: f64,
    #[serde(default)]
    pub rtt_us: Option<u32>,
    #[serde(default)]
    pub retransmits: u64,
}

impl LiveLimit {
    /// Whether this limit covers a row's process (as the kernel side matches it: the
    /// name's first 15 bytes; a cgroup with those below it).
    pub fn covers(&self, row: &LiveRow) -> bool {
        if let Some(process) = &self.process {
            return crate::limits::kernel_name(&row.name) == crate::limits::kernel_name(process);
        }
        if let Some(uid) = self.uid {
            return row.uid == Some(uid);
        }
        if let Some(unit) = &self.unit {
            return row.unit.as_deref() == Some(unit.as_str())
                || row
                    .cgroup
                    .as_deref()
                    .is_some_and(|cgroup| cgroup.split('/').any(|part| part == unit));
        }
        if let Some(path) = &self.cgroup {
            let path = path.trim_matches('/');
            return row.cgroup.as_deref().is_some_and(|cgroup| {
                let cgroup = cgroup.trim_start_matches('/');
                cgroup == path
                    || cgroup
                        .strip_prefix(path)
                        .is_some_and(|rest| rest.starts_with('/'))
            });
        }
        if let Some(container) = &self.container {
            // The row shows the container's name, else its short id.
            return row.container.as_deref().is_some_and(|shown| {
                shown == container
                    || (container.len() >= 12
                        && (container.starts_with(shown) || shown.starts_with(container.as_str())))
            });
        }
        if let Some(pod) = &self.pod {
            return match pod.split_once('/') {
                Some((namespace, name)) => {
                    row.namespace.as_deref() == Some(namespace) && row.pod.as_deref() == Some(name)
                }
                None => row.pod.as_deref() == Some(pod.as_str()),
            };
        }
        false
    }
}

/// A bandwidth limit over the last interval.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct LiveLimit {
    pub name: String,
    pub scope: String,
    /// Whom it covers: one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// Bytes per second; None: not limited that way.
    pub egress_limit: Option<u64>,
    pub ingress_limit: Option<u64>,
    /// Whether it held anything back in the last interval.
    pub holding: bool,
    /// Bytes per second let through and held back over the last interval.
    pub sent_rate: f64,
    pub recv_rate: f64,
    pub sent_held_rate: f64,
    pub recv_held_rate: f64,
    /// Held back since netgraph started.
    pub sent_held_total: u64,
    pub recv_held_total: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct LiveSnapshot {
    /// The interval's end, in Unix seconds.
    pub time: i64,
    pub interval_seconds: f64,
    pub processes: Vec<LiveRow>,
    /// Empty unless peers are on (and from daemons older than this field).
    #[serde(default)]
    pub peers: Vec<LivePeer>,
    /// The engine counting and its features (absent from older daemons).
    #[serde(default)]
    pub engine: EngineStatus,
    /// The bandwidth limits configured (absent from older daemons).
    #[serde(default)]
    pub limits: Vec<LiveLimit>,
}

pub type SharedLive = Arc<RwLock<LiveSnapshot>>;

pub struct LiveSink {
    shared: SharedLive,
}

impl LiveSink {
    pub fn new(shared: SharedLive) -> LiveSink {
        LiveSink { shared }
    }
}

impl Sink for LiveSink {
    fn name(&self) -> &str {
        "live"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let seconds_long = report.duration().as_secs_f64().max(1e-9);
        let processes = report
            .processes
            .iter()
            .map(|row| (row, row.workload.as_deref()))
            .map(|(row, workload)| LiveRow {
                name: row.key.name.to_string(),
                uid: row.key.uid,
                interface: row.key.interface.to_string(),
                attributed: row.attributed,
                pid: row.pid,
                exe: row.exe.clone(),
                cgroup: row.cgroup.clone(),
                container: workload.and_then(|w| w.container_label().map(String::from)),
                pod: workload.and_then(|w| w.pod.clone()),
                namespace: workload.and_then(|w| w.namespace.clone()),
                unit: workload.and_then(|w| w.unit.clone()),
                sent_rate: row.last.sent.bytes as f64 / seconds_long,
                recv_rate: row.last.recv.bytes as f64 / seconds_long,
                sent_total: row.total.sent.bytes,
                recv_total: row.total.recv.bytes,
                rtt_us: row.last.tcp.rtt_us(),
                retransmits: row.last.tcp.retransmits,
                retransmits_total: row.total.tcp.retransmits,
                connect_failures: row.last.tcp.connect_failures(),
            })
            .collect();
        let peers = report
            .peers
            .iter()
            .map(|row| LivePeer {
                name: row.key.name.to_string(),
                uid: row.key.uid,
                interface: row.key.interface.to_string(),
                container: row
                    .workload
                    .as_deref()
                    .and_then(|w| w.container_label().map(String::from)),
                peer: row.peer_label(),
                peer_name: row.name.as_deref().map(String::from),
                service: row.service.map(|s| s.to_string()),
                sent_rate: row.last.sent.bytes as f64 / seconds_long,
                recv_rate: row.last.recv.bytes as f64 / seconds_long,
                rtt_us: row.last.tcp.rtt_us(),
                retransmits: row.last.tcp.retransmits,
            })
            .collect();
        let snapshot = LiveSnapshot {
            time: seconds(report.end),
            interval_seconds: seconds_long,
            processes,
            peers,
            engine: (*report.engine).clone(),
            limits: report
                .limits
                .iter()
                .map(|row| LiveLimit {
                    name: row.name.to_string(),
                    scope: row.scope.clone(),
                    process: match &row.covers {
                        LimitScope::Process(name) => Some(name.clone()),
                        _ => None,
                    },
                    uid: match row.covers {
                        LimitScope::Uid(uid) => Some(uid),
                        _ => None,
                    },
                    unit: match &row.covers {
                        LimitScope::Unit(unit) => Some(unit.clone()),
                        _ => None,
                    },
                    cgroup: match &row.covers {
                        LimitScope::Cgroup(path) => Some(path.clone()),
                        _ => None,
                    },
                    container: match &row.covers {
                        LimitScope::Container(container) => Some(container.clone()),
                        _ => None,
                    },
                    pod: match &row.covers {
                        LimitScope::Pod(pod) => Some(pod.clone()),
                        _ => None,
                    },
                    egress_limit: row.egress_rate,
                    ingress_limit: row.ingress_rate,
                    holding: row.holding(),
                    sent_rate: row.egress.passed_bytes as f64 / seconds_long,
                    recv_rate: row.ingress.passed_bytes as f64 / seconds_long,
                    sent_held_rate: row.egress.held_bytes as f64 / seconds_long,
                    recv_held_rate: row.ingress.held_bytes as f64 / seconds_long,
                    sent_held_total: row.egress_total.held_bytes,
                    recv_held_total: row.ingress_total.held_bytes,
                })
                .collect(),
        };
        *crate::locks::write(&self.shared) = snapshot;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(container: Option<&str>, pod: Option<&str>, namespace: Option<&str>) -> LiveRow {
        LiveRow {
            name: "nginx".into(),
            container: container.map(String::from),
            pod: pod.map(String::from),
            namespace: namespace.map(String::from),
            ..LiveRow::default()
        }
    }

    #[test]
    fn containers_and_pods_are_covered_as_the_kernel_side_finds_them() {
        let by_container = |container: &str| LiveLimit {
            container: Some(container.into()),
            ..LiveLimit::default()
        };
        let web = row(Some("web"), None, None);
        assert!(by_container("web").covers(&web));
        assert!(!by_container("db").covers(&web));
        // Unnamed containers show their short id; a longer id given covers them.
        let unnamed = row(Some("e51ba2bf58d6"), None, None);
        assert!(by_container("e51ba2bf58d6c1f1a5ad").covers(&unnamed));
        assert!(!by_container("e51b").covers(&unnamed));
        assert!(!by_container("web").covers(&row(None, None, None)));
        let by_pod = |pod: &str| LiveLimit {
            pod: Some(pod.into()),
            ..LiveLimit::default()
        };
        let api = row(Some("api"), Some("api-1"), Some("shop"));
        assert!(by_pod("shop/api-1").covers(&api));
        assert!(by_pod("api-1").covers(&api));
        assert!(!by_pod("other/api-1").covers(&api));
        assert!(!by_pod("api-2").covers(&api));
    }
}
