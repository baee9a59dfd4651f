//! Reading the store: totals over a range and time series, grouped by process, user,
//! interface, cgroup, systemd unit, container, pod, namespace, peer or domain, from the
//! finest resolution that still covers the range.

use super::ranges;
use super::schema::{Resolution, Samples};
use super::Reader;
use rusqlite::params_from_iter;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Process,
    User,
    Interface,
    /// The cgroup path.
    Cgroup,
    /// The innermost systemd unit.
    Unit,
    /// The container's name, or its short id while the runtime has not named it.
    Container,
    /// The Kubernetes pod and namespace.
    Pod,
    Namespace,
    /// The remote address (`other`: the peers beyond each series' largest).
    Peer,
    /// The peer's name (as looked up, or from its ClientHello), else its address.
    Domain,
    /// Why `unknown` traffic has no process (empty for processes).
    Reason,
}

impl GroupBy {
    /// The series column, as text: the group's key in answers.
    fn column(self) -> &'static str {
        match self {
            GroupBy::Process => "s.name",
            GroupBy::User => "coalesce(CAST(s.uid AS TEXT), '')",
            GroupBy::Interface => "s.interface",
            GroupBy::Cgroup => "s.cgroup",
            GroupBy::Unit => "s.unit",
            GroupBy::Container => "coalesce(nullif(s.container, ''), s.container_id)",
            GroupBy::Pod => "s.pod",
            GroupBy::Namespace => "s.namespace",
            GroupBy::Peer => "p.address",
            GroupBy::Domain => "coalesce(nullif(p.name, ''), p.address)",
            GroupBy::Reason => "s.reason",
        }
    }

    /// Whether the grouping is by peer, which only the peer tables hold.
    fn by_peer(self) -> bool {
        matches!(self, GroupBy::Peer | GroupBy::Domain)
    }
}

/// The sample tables a query reads, and how their rows join their series (and peers).
fn samples_for(group_by: GroupBy, only: Option<&Only>) -> (Samples, &'static str) {
    if group_by.by_peer() || only.is_some_and(|o| o.group_by.by_peer()) {
        (
            Samples::Peers,
            "JOIN series s ON s.id = x.series JOIN peers p ON p.id = x.peer",
        )
    } else {
        (Samples::Series, "JOIN series s ON s.id = x.series")
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Total {
    pub key: String,
    /// For processes: false for the `unknown ...` buckets.
    pub attributed: bool,
    /// By peer: the names it had, and the services used there (comma-separated). By
    /// user: the user's name on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<String>,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub sent_packets: u64,
    pub recv_packets: u64,
    /// How TCP fared over the range, where anything happened to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTotals>,
    /// Packets the kernel dropped over the range, where it dropped any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<DropTotals>,
}

/// Drops over a range: packets by the layer that dropped them, and their bytes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DropTotals {
    pub packets: u64,
    pub bytes: u64,
    pub netfilter: u64,
    pub policy: u64,
    pub socket: u64,
    pub tcp: u64,
    pub queue: u64,
    pub other: u64,
}

impl DropTotals {
    /// From the sums of the drop columns (bytes, then packets by kind); None where
    /// nothing was dropped.
    fn of(sums: [i64; 7]) -> Option<DropTotals> {
        let [bytes, netfilter, policy, socket, tcp, queue, other] = sums.map(|n| n.max(0) as u64);
        let packets = netfilter + policy + socket + tcp + queue + other;
        (packets > 0).then_some(DropTotals {
            packets,
            bytes,
            netfilter,
            policy,
            socket,
            tcp,
            queue,
            other,
        })
    }
}

/// TCP's health over a range: counts, and the traffic-weighted RTT.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpTotals {
    pub retransmits: u64,
    pub retransmit_bytes: u64,
    pub connects: u64,
    pub connect_failures: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_us: Option<u64>,
}

impl TcpTotals {
    /// From the sums (retransmits, retransmit bytes, connects, failures, Σ rtt × bytes,
    /// bytes weighed, largest RTT); None where all are zero.
    fn of(sums: (i64, i64, i64, i64, f64, i64, i64)) -> Option<TcpTotals> {
        let (retransmits, retransmit_bytes, connects, failures, weighted, weight, max) = sums;
        let totals = TcpTotals {
            retransmits: retransmits.max(0) as u64,
            retransmit_bytes: retransmit_bytes.max(0) as u64,
            connects: connects.max(0) as u64,
            connect_failures: failures.max(0) as u64,
            rtt_us: (weight > 0).then(|| (weighted / weight as f64).round() as u64),
            rtt_max_us: (max > 0).then_some(max as u64),
        };
        (totals != TcpTotals::default()).then_some(totals)
    }
}

#[derive(Debug, Serialize)]
pub struct History {
    /// The bucket length of the points, in seconds.
    pub step: i64,
    /// The resolution read (1, 60 or 3600 seconds).
    pub resolution: i64,
    pub keys: Vec<String>,
    /// (bucket start, then sent and received bytes per key in `keys` order).
    pub points: Vec<HistoryPoint>,
}

#[derive(Debug, Serialize)]
pub struct HistoryPoint {
    pub t: i64,
    pub sent: Vec<u64>,
    pub recv: Vec<u64>,
    /// TCP per key: segments retransmitted, and the traffic-weighted RTT where known.
    pub retransmits: Vec<u64>,
    pub rtt_us: Vec<Option<u64>>,
}

/// A filter on one group, such as the process clicked on the page.
#[derive(Clone, Copy, Debug)]
pub struct Only<'a> {
    pub group_by: GroupBy,
    pub key: &'a str,
}

impl Reader {
    /// Totals per group over `[from, to)`, largest first, at most `top` groups; with the
    /// bucket the range's start was rounded down to (1 where it is exact). By user, each
    /// row carries the user's name.
    pub fn totals(
        &self,
        from: i64,
        to: i64,
        group_by: GroupBy,
        top: usize,
        only: Option<Only>,
    ) -> anyhow::Result<(i64, Vec<Total>)> {
        let (samples, join) = samples_for(group_by, only.as_ref());
        let (parts, bucket) = ranges::parts(&self.tables(samples)?, from, to);
        let (filter, values) = conditions(only.as_slice(), 1);
        let details = if group_by == GroupBy::Peer {
            "group_concat(DISTINCT nullif(p.name, '')), group_concat(DISTINCT nullif(p.service, ''))"
        } else {
            "NULL, NULL"
        };
        let sql = format!(
            "SELECT {key} AS k, max(s.attributed), sum(x.sent), sum(x.recv), sum(x.sent_packets), sum(x.recv_packets), {details},
               sum(x.retransmits), sum(x.retransmit_bytes), sum(x.connects), sum(x.connect_failures),
               sum(x.rtt_weighted), sum(x.rtt_bytes), max(x.rtt_max),
               sum(x.drop_bytes), sum(x.drops_netfilter), sum(x.drops_policy), sum(x.drops_socket),
               sum(x.drops_tcp), sum(x.drops_queue), sum(x.drops_other)
             FROM {rows} x {join}
             GROUP BY k ORDER BY sum(x.sent) + sum(x.recv) DESC LIMIT {top}",
            key = group_by.column(),
            rows = ranges::union(&parts, samples, &filter),
        );
        let mut statement = self.connection.prepare(&sql)?;
        let rows = statement
            .query_map(params_from_iter(values.iter()), |r| {
                Ok(Total {
                    key: r.get(0)?,
                    attributed: r.get::<_, i64>(1)? != 0,
                    sent_bytes: r.get::<_, i64>(2)? as u64,
                    recv_bytes: r.get::<_, i64>(3)? as u64,
                    sent_packets: r.get::<_, i64>(4)? as u64,
                    recv_packets: r.get::<_, i64>(5)? as u64,
                    names: r.get(6)?,
                    services: r.get(7)?,
                    tcp: TcpTotals::of((
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                        r.get(11)?,
                        r.get(12)?,
                        r.get(13)?,
                        r.get(14)?,
                    )),
                    drops: DropTotals::of([
                        r.get(15)?,
                        r.get(16)?,
                        r.get(17)?,
                        r.get(18)?,
                        r.get(19)?,
                        r.get(20)?,
                        r.get(21)?,
                    ]),
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = rows;
        if group_by == GroupBy::User {
            for row in &mut rows {
                row.names = user_name(&row.key);
            }
        }
        Ok((bucket, rows))
    }

    /// Bytes sent and received over `[from, to)` by the series that pass every filter
    /// (none: the whole host).
    pub fn sum(&self, from: i64, to: i64, filters: &[Only]) -> anyhow::Result<(u64, u64)> {
        let (parts, _) = ranges::parts(&self.tables(Samples::Series)?, from, to);
        let (filter, values) = conditions(filters, 1);
        let sql = format!(
            "SELECT coalesce(sum(x.sent), 0), coalesce(sum(x.recv), 0)
             FROM {rows} x",
            rows = ranges::union(&parts, Samples::Series, &filter),
        );
        let (sent, recv): (i64, i64) =
            self.connection
                .query_row(&sql, params_from_iter(values.iter()), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        Ok((sent as u64, recv as u64))
    }

    /// Bytes per `step` seconds over `[from, to)` for the `top` largest groups, from the
    /// coarsest table whose buckets fit in a step and that is complete from `from`.
    pub fn history(
        &self,
        from: i64,
        to: i64,
        step: i64,
        group_by: GroupBy,
        top: usize,
        only: Option<Only>,
    ) -> anyhow::Result<History> {
        let step = step.max(1);
        let (samples, join) = samples_for(group_by, only.as_ref());
        let tables = self.tables(samples)?;
        let table = tables
            .iter()
            .rev()
            .find(|t| t.bucket <= step && t.since <= from - from.rem_euclid(t.bucket))
            .copied()
            .or_else(|| ranges::anchor(&tables, from));
        let (table, resolution) = table.map_or((Resolution::Second.table_of(samples), 1), |t| {
            (t.name, t.bucket)
        });
        let step = (step + resolution - 1) / resolution * resolution;
        let keys: Vec<String> = self
            .totals(from, to, group_by, top, only)?
            .1
            .into_iter()
            .map(|t| t.key)
            .collect();
        let mut points: Vec<HistoryPoint> = Vec::new();
        if keys.is_empty() {
            return Ok(History {
                step,
                resolution,
                keys,
                points,
            });
        }
        let (filter, mut values) = conditions(only.as_slice(), 3);
        let from = from - from.rem_euclid(resolution);
        // Only the rows of the top groups: their series (or peers) by id first.
        let first_key = values.len() + 3;
        let placeholders: Vec<String> = (0..keys.len())
            .map(|i| format!("?{}", first_key + i))
            .collect();
        let (id, dimension, alias) = if group_by.by_peer() {
            ("x.peer", "peers", "p")
        } else {
            ("x.series", "series", "s")
        };
        let of_keys = format!(
            "{id} IN (SELECT {alias}.id FROM {dimension} {alias} WHERE {} IN ({}))",
            group_by.column(),
            placeholders.join(", ")
        );
        values.splice(0..0, [from.to_string(), to.to_string()]);
        values.extend(keys.iter().cloned());
        let sql = format!(
            "SELECT x.t - (x.t % {step}) AS bucket, {key} AS k, sum(x.sent), sum(x.recv),
               sum(x.retransmits), sum(x.rtt_weighted), sum(x.rtt_bytes)
             FROM {table} x {join}
             WHERE x.t >= ?1 AND x.t < ?2 AND {of_keys} {filter}
             GROUP BY bucket, k ORDER BY bucket",
            key = group_by.column(),
        );
        let mut statement = self.connection.prepare(&sql)?;
        let mut rows = statement.query(params_from_iter(values.iter()))?;
        while let Some(row) = rows.next()? {
            let t: i64 = row.get(0)?;
            let key: String = row.get(1)?;
            let Some(index) = keys.iter().position(|k| *k == key) else {
                continue;
            };
            if points.last().is_none_or(|p| p.t != t) {
                points.push(HistoryPoint {
                    t,
                    sent: vec![0; keys.len()],
                    recv: vec![0; keys.len()],
                    retransmits: vec![0; keys.len()],
                    rtt_us: vec![None; keys.len()],
                });
            }
            let point = points.last_mut().expect("pushed above");
            point.sent[index] = row.get::<_, i64>(2)? as u64;
            point.recv[index] = row.get::<_, i64>(3)? as u64;
            point.retransmits[index] = row.get::<_, i64>(4)?.max(0) as u64;
            let (weighted, weight): (f64, i64) = (row.get(5)?, row.get(6)?);
            point.rtt_us[index] = (weight > 0).then(|| (weighted / weight as f64).round() as u64);
        }
        Ok(History {
            step,
            resolution,
            keys,
            points,
        })
    }
}

/// The name of the user whose uid `key` is, where this host knows it.
fn user_name(key: &str) -> Option<String> {
    let uid = key.parse::<u32>().ok()?;
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok()??;
    Some(user.name)
}

/// `AND` of one condition per filter on the rows' series (`s`) and peers (`p`),
/// numbered from `?first`: each the ids of the series or peers it passes, so that the
/// sample rows are filtered before any join.
fn conditions(filters: &[Only], first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut values = Vec::new();
    for (index, only) in filters.iter().enumerate() {
        let n = first + index;
        let condition = if only.group_by == GroupBy::Container {
            // A container is its name, or its id (short or full, or the start of either).
            format!(
                "s.container = ?{n} OR (s.container_id <> '' AND (substr(?{n}, 1, length(s.container_id)) = s.container_id OR substr(s.container_id, 1, length(?{n})) = ?{n}))"
            )
        } else {
            format!("{} = ?{n}", only.group_by.column())
        };
        sql += &if only.group_by.by_peer() {
            format!(" AND peer IN (SELECT p.id FROM peers p WHERE {condition})")
        } else {
            format!(" AND series IN (SELECT s.id FROM series s WHERE {condition})")
        };
        values.push(only.key.to_string());
    }
    (sql, values)
}
