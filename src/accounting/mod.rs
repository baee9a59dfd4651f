//! Accounting: rolls attributed traffic into intervals per (process name, uid, interface),
//! with monotonic totals since start and rates.

use crate::attribution::{
    AttributedReport, AttributedTraffic, Owner, ProcessIdentity, RememberedName, Unowned,
};
use crate::engine::features::EngineStatus;
use crate::engine::{CaptureStats, InterfaceName, InterfaceTraffic};
use crate::geo::Geo;
use crate::traffic::{Counter, Traffic};
use crate::workload::Workload;
pub use limits::LimitRow;
use limits::LimitTotals;
#[cfg(test)]
pub use peers::sample_row as sample_peer_row;
use peers::{PeerId, PeerTally};
pub use peers::{PeerRow, DEFAULT_PER_PROCESS};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Bound on the series whose totals are kept; the longest idle are forgotten first.
const MAX_SERIES: usize = 50_000;
/// A peer idle this long is forgotten: its totals start afresh if it comes back. A
/// scanner (or a busy server's clients) meets new peers without end; each would
/// otherwise hold its totals until the bound.
const PEER_IDLE: Duration = Duration::from_secs(3600);

/// What identifies a series: the schema's `name`, `uid` and `device_name` tags, and
/// the container (the `container` tag), so that the same program in two containers
/// is two series.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub name: Arc<str>,
    /// `None` for unattributed buckets.
    pub uid: Option<u32>,
    pub interface: InterfaceName,
    /// The container's short id; `None` outside containers.
    pub container: Option<Arc<str>>,
    /// Why an `unknown` row has no process; `None` for processes.
    pub reason: Option<Unowned>,
}

#[derive(Clone, Debug)]
pub struct ProcessRow {
    pub key: SeriesKey,
    /// Whether a process owns this traffic (false for the `unknown ...` buckets).
    pub attributed: bool,
    /// The process that moved the most bytes in this series during the interval.
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub cgroup: Option<String>,
    /// The unit, container or pod of that process.
    pub workload: Option<Arc<Workload>>,
    /// This interval's traffic.
    pub last: Traffic,
    /// Since netgraph started; never decreases.
    pub total: Traffic,
}

/// A process's traffic with one remote country (the opt-in GeoIP breakdown).
#[derive(Clone, Debug)]
pub struct CountryRow {
    pub key: SeriesKey,
    pub country: Arc<str>,
    pub workload: Option<Arc<Workload>>,
    pub last: Traffic,
    pub total: Traffic,
}

#[derive(Clone, Debug)]
pub struct InterfaceRow {
    pub interface: InterfaceName,
    /// All IP traffic with a local end this interval; process rows of this interface sum to it.
    pub last: Traffic,
    pub total: Traffic,
    pub malformed: Counter,
    pub non_ip: Counter,
    pub overflow: Counter,
    pub capture: CaptureStats,
}

#[derive(Clone, Debug)]
pub struct IntervalReport {
    pub start: SystemTime,
    pub end: SystemTime,
    pub processes: Vec<ProcessRow>,
    /// Each process's traffic by remote country; empty unless GeoIP's breakdown is on.
    pub countries: Vec<CountryRow>,
    /// Each series' traffic by remote peer this interval; empty unless peers are on.
    pub peers: Vec<PeerRow>,
    pub interfaces: Vec<InterfaceRow>,
    /// Events the engine could not record this interval: records its maps refused when
    /// full, and its tracing programs' runs the kernel skipped.
    pub lost: u64,
    /// Since start.
    pub lost_total: u64,
    /// The engine counting, and what it runs with.
    pub engine: Arc<EngineStatus>,
    /// Peer names learnt or kept in use this interval, for the store to remember.
    pub names: Vec<RememberedName>,
    /// Each configured limit: what it let through and held back.
    pub limits: Vec<LimitRow>,
}

impl IntervalReport {
    /// An interval of these process rows and nothing else (no countries, peers,
    /// interfaces or losses): what tests and benchmarks write to a store.
    pub fn of(start: SystemTime, end: SystemTime, processes: Vec<ProcessRow>) -> IntervalReport {
        IntervalReport {
            start,
            end,
            processes,
            countries: Vec::new(),
            peers: Vec::new(),
            interfaces: Vec::new(),
            lost: 0,
            lost_total: 0,
            engine: Default::default(),
            names: Vec::new(),
            limits: Vec::new(),
        }
    }

    pub fn duration(&self) -> Duration {
        self.end.duration_since(self.start).unwrap_or_default()
    }

    /// KiB per second over the interval, as the original's `sent_kbs` / `recv_kbs`.
    pub fn kib_per_second(&self, bytes: u64) -> f64 {
        let seconds = self.duration().as_secs_f64();
        if seconds > 0.0 {
            bytes as f64 / 1024.0 / seconds
        } else {
            0.0
        }
    }
}

/// The processes behind one series in an interval, with their bytes and workloads.
type Contributors = Vec<(u64, Arc<ProcessIdentity>, Option<Arc<Workload>>)>;

struct SeriesTotal {
    traffic: Traffic,
    last_active: u64,
}

pub struct Accountant {
    series: HashMap<SeriesKey, SeriesTotal>,
    countries: HashMap<(SeriesKey, Arc<str>), SeriesTotal>,
    /// Each series' totals by peer (`None`: its `other`).
    peer_totals: HashMap<(SeriesKey, Option<PeerId>), SeriesTotal>,
    geo: Option<Geo>,
    /// Peers kept per series per interval; `None`: no peer breakdown.
    peers_per_process: Option<usize>,
    interfaces: HashMap<InterfaceName, Traffic>,
    interval_start: SystemTime,
    intervals: u64,
    lost_total: u64,
    engine: Arc<EngineStatus>,
    limit_totals: LimitTotals,
}

impl Accountant {
    pub fn new(start: SystemTime) -> Accountant {
        Accountant {
            series: HashMap::new(),
            countries: HashMap::new(),
            peer_totals: HashMap::new(),
            geo: None,
            peers_per_process: None,
            interfaces: HashMap::new(),
            interval_start: start,
            intervals: 0,
            lost_total: 0,
            engine: Arc::default(),
            limit_totals: LimitTotals::default(),
        }
    }

    /// Names unattributed traffic by the countries of its ends, and breaks each
    /// process's traffic down by remote country if `geo.per_process`.
    pub fn with_geo(mut self, geo: Geo) -> Accountant {
        self.geo = Some(geo);
        self
    }

    /// Breaks every series' traffic down by remote peer, the largest `per_process`
    /// each interval and the rest as `other`.
    pub fn with_peers(mut self, per_process: usize) -> Accountant {
        self.peers_per_process = Some(per_process);
        self
    }

    /// The engine that counts, as it started (reported with every interval).
    pub fn set_engine(&mut self, engine: EngineStatus) {
        self.engine = Arc::new(engine);
    }

    /// Replaces the GeoIP database (a reload); `None` turns GeoIP off.
    pub fn set_geo(&mut self, geo: Option<Geo>) {
        self.geo = geo;
    }

    pub fn close_interval(&mut self, report: AttributedReport, end: SystemTime) -> IntervalReport {
        self.intervals += 1;
        let (rows, by_country, peers) = self.group(report.traffic);
        let processes = self.process_rows(rows);
        let countries = self.country_rows(by_country);
        let peers = self.peer_rows(peers, &processes);
        bound(&mut self.series);
        bound(&mut self.countries);
        self.forget_idle_peers(end);
        bound(&mut self.peer_totals);
        crate::bounded::shrink_when_sparse(&mut self.series);
        crate::bounded::shrink_when_sparse(&mut self.countries);
        crate::bounded::shrink_when_sparse(&mut self.peer_totals);
        let interfaces = self.interface_rows(report.interfaces);
        let start = std::mem::replace(&mut self.interval_start, end);
        self.lost_total += report.lost;
        IntervalReport {
            start,
            end,
            processes,
            countries,
            peers,
            interfaces,
            lost: report.lost,
            lost_total: self.lost_total,
            engine: self.engine.clone(),
            names: report.names,
            limits: self.limit_totals.rows(report.limits),
        }
    }

    /// This interval's traffic by series (with the processes that moved it), by
    /// series and remote country when GeoIP breaks processes down by country, and by
    /// series and peer when peers are on.
    fn group(&mut self, traffic: Vec<AttributedTraffic>) -> (Rows, ByCountry, PeerTally) {
        let mut rows = Rows::new();
        let mut by_country = ByCountry::new();
        let mut peers = PeerTally::default();
        for item in traffic {
            if item.traffic.is_zero() {
                continue;
            }
            let reason = match &item.owner {
                Owner::Unknown(_, reason) => Some(*reason),
                Owner::Process(_) => None,
            };
            let (name, uid, process) = match (item.owner, &item.ends, &mut self.geo) {
                (Owner::Process(p), ..) => (p.name.as_str().into(), Some(p.uid), Some(p)),
                (Owner::Unknown(..), Some(ends), Some(geo)) => {
                    (geo.unattributed_name(ends).into(), None, None)
                }
                (Owner::Unknown(protocol, _), ..) => (protocol.unknown_bucket().into(), None, None),
            };
            let key = SeriesKey {
                name,
                uid,
                interface: item.interface,
                container: item
                    .workload
                    .as_ref()
                    .and_then(|w| w.container_id.as_deref())
                    .map(Arc::from),
                reason,
            };
            if let (Some(_), Some(ends), Some(geo)) = (&process, &item.ends, &mut self.geo) {
                if geo.per_process {
                    let country = geo.country(ends.far);
                    let (traffic, workload) = by_country.entry((key.clone(), country)).or_default();
                    traffic.merge(item.traffic);
                    workload.clone_from(&item.workload);
                }
            }
            if self.peers_per_process.is_some() {
                let peer = item.ends.as_ref().map(|ends| PeerId {
                    address: ends.far,
                    service: ends.service,
                });
                let name = item.peer_name.as_ref();
                let near = item
                    .ends
                    .as_ref()
                    .filter(|ends| ends.near_is_host)
                    .map(|ends| ends.near);
                peers.add(&key, item.workload.as_ref(), peer, near, name, item.traffic);
            }
            let (traffic, contributors) = rows.entry(key).or_default();
            traffic.merge(item.traffic);
            if let Some(process) = process {
                let bytes = item.traffic.sent.bytes + item.traffic.recv.bytes;
                match contributors
                    .iter_mut()
                    .find(|(_, p, _)| p.pid == process.pid)
                {
                    Some((sum, ..)) => *sum += bytes,
                    None => contributors.push((bytes, process, item.workload)),
                }
            }
        }
        (rows, by_country, peers)
    }

    /// One row per series, named after the process that moved most of its bytes.
    fn process_rows(&mut self, rows: Rows) -> Vec<ProcessRow> {
        let mut processes: Vec<ProcessRow> = rows
            .into_iter()
            .map(|(key, (last, contributors))| {
                let busiest = contributors.into_iter().max_by_key(|(bytes, ..)| *bytes);
                let total = add_to_total(&mut self.series, key.clone(), last, self.intervals);
                ProcessRow {
                    attributed: busiest.is_some(),
                    pid: busiest.as_ref().map(|(_, p, _)| p.pid),
                    exe: busiest.as_ref().and_then(|(_, p, _)| p.exe.clone()),
                    cgroup: busiest.as_ref().and_then(|(_, p, _)| p.cgroup.clone()),
                    workload: busiest.and_then(|(.., w)| w),
                    key,
                    last,
                    total,
                }
            })
            .collect();
        processes.sort_by(|a, b| a.key.cmp(&b.key));
        processes
    }

    /// The largest peers of each series and its `other`, with their totals, the
    /// series' process and, with GeoIP, their countries.
    fn peer_rows(&mut self, peers: PeerTally, processes: &[ProcessRow]) -> Vec<PeerRow> {
        let Some(per_process) = self.peers_per_process else {
            return Vec::new();
        };
        let mut rows = peers.rows(per_process);
        for row in &mut rows {
            let id = row.peer.map(|address| PeerId {
                address,
                service: row.service,
            });
            let series = (row.key.clone(), id);
            row.total = add_to_total(&mut self.peer_totals, series, row.last, self.intervals);
            row.pid = processes
                .binary_search_by(|p| p.key.cmp(&row.key))
                .ok()
                .and_then(|at| processes[at].pid);
            if let (Some(geo), Some(address)) = (&mut self.geo, row.peer) {
                row.country = Some(geo.country(address));
            }
        }
        rows
    }

    /// Forgets the totals of peers idle for `PEER_IDLE`, counted in intervals of the
    /// length of the one that just ended.
    fn forget_idle_peers(&mut self, end: SystemTime) {
        let length = end
            .duration_since(self.interval_start)
            .unwrap_or_default()
            .max(Duration::from_millis(100));
        let idle_intervals = (PEER_IDLE.as_secs_f64() / length.as_secs_f64()).ceil() as u64;
        let now = self.intervals;
        self.peer_totals
            .retain(|_, total| now - total.last_active <= idle_intervals);
    }

    fn country_rows(&mut self, by_country: ByCountry) -> Vec<CountryRow> {
        let mut countries: Vec<CountryRow> = by_country
            .into_iter()
            .map(|((key, country), (last, workload))| {
                let series = (key.clone(), country.clone());
                let total = add_to_total(&mut self.countries, series, last, self.intervals);
                CountryRow {
                    key,
                    country,
                    workload,
                    last,
                    total,
                }
            })
            .collect();
        countries.sort_by(|a, b| (&a.key, &a.country).cmp(&(&b.key, &b.country)));
        countries
    }

    fn interface_rows(&mut self, reported: Vec<InterfaceTraffic>) -> Vec<InterfaceRow> {
        let mut interfaces: HashMap<InterfaceName, InterfaceRow> = HashMap::new();
        for traffic in reported {
            let row = interfaces
                .entry(traffic.interface.clone())
                .or_insert_with(|| InterfaceRow {
                    interface: traffic.interface.clone(),
                    last: Traffic::default(),
                    total: Traffic::default(),
                    malformed: Counter::default(),
                    non_ip: Counter::default(),
                    overflow: Counter::default(),
                    capture: CaptureStats::default(),
                });
            row.last.merge(traffic.captured);
            row.malformed.merge(traffic.malformed);
            row.non_ip.merge(traffic.non_ip);
            row.overflow.merge(traffic.overflow);
            row.capture.received += traffic.capture.received;
            row.capture.dropped += traffic.capture.dropped;
            row.capture.if_dropped += traffic.capture.if_dropped;
        }
        let mut interfaces: Vec<InterfaceRow> = interfaces
            .into_values()
            .map(|mut row| {
                let total = self.interfaces.entry(row.interface.clone()).or_default();
                total.merge(row.last);
                row.total = *total;
                row
            })
            .collect();
        interfaces.sort_by(|a, b| a.interface.cmp(&b.interface));
        interfaces
    }
}

/// This interval's traffic by series, with the processes that moved it.
type Rows = HashMap<SeriesKey, (Traffic, Contributors)>;
/// This interval's traffic by series and remote country, with the series' workload.
type ByCountry = HashMap<(SeriesKey, Arc<str>), (Traffic, Option<Arc<Workload>>)>;

/// Adds `last` to the series' monotonic total, marks it active, and returns the total.
fn add_to_total<K: std::hash::Hash + Eq>(
    totals: &mut HashMap<K, SeriesTotal>,
    key: K,
    last: Traffic,
    interval: u64,
) -> Traffic {
    let total = totals.entry(key).or_insert(SeriesTotal {
        traffic: Traffic::default(),
        last_active: 0,
    });
    total.traffic.merge(last);
    total.last_active = interval;
    total.traffic
}

/// Keeps at most MAX_SERIES totals, forgetting the longest idle first.
fn bound<K: std::hash::Hash + Eq>(series: &mut HashMap<K, SeriesTotal>) {
    crate::bounded::keep_most_recent(series, MAX_SERIES, |s| s.last_active);
}

mod limits;
mod peers;

#[cfg(test)]
mod tests;
