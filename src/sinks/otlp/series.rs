//! The data points of one interval, in the configured temporality. Cumulative counters
//! are running totals from the interval a series first moved in, and every series
//! known is sent again each interval (as `/metrics` shows every counter); delta counters
//! are the interval's amounts, sent only for series that moved. Gauges are what was
//! measured in the interval.

use crate::config::otlp::Temporality;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (bytes, packets, events).
    Counter,
    /// A level measured in the interval (a round-trip time, a rate, a state).
    Gauge,
}

/// One metric as the collector is told it.
#[derive(Debug)]
pub struct MetricSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// UCUM, as OpenTelemetry's conventions write it (`By`, `s`, `{packet}`).
    pub unit: &'static str,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Value {
    Text(String),
    Integer(i64),
}

/// A data point's attributes, in the order they were given.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attributes(Vec<(&'static str, Value)>);

impl Attributes {
    pub fn text(mut self, key: &'static str, value: impl Into<String>) -> Attributes {
        self.0.push((key, Value::Text(value.into())));
        self
    }

    /// Left out where there is nothing to say (no container, no reason).
    pub fn text_if(self, key: &'static str, value: Option<&str>) -> Attributes {
        match value.filter(|v| !v.is_empty()) {
            Some(value) => self.text(key, value),
            None => self,
        }
    }

    pub fn integer(mut self, key: &'static str, value: i64) -> Attributes {
        self.0.push((key, Value::Integer(value)));
        self
    }

    fn key_values(&self) -> Vec<KeyValue> {
        self.0
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.to_string(),
                value: Some(AnyValue {
                    value: Some(match value {
                        Value::Text(text) => any_value::Value::StringValue(text.clone()),
                        Value::Integer(n) => any_value::Value::IntValue(*n),
                    }),
                }),
                ..Default::default()
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Amount {
    Integer(u64),
    Double(f64),
}

struct Point {
    /// Cumulative: when the series began; delta and gauges: the interval's start.
    start: u64,
    amount: Amount,
}

struct MetricPoints {
    spec: &'static MetricSpec,
    points: BTreeMap<Attributes, Point>,
}

pub struct Series {
    temporality: Temporality,
    metrics: Vec<MetricPoints>,
    /// The current interval, in nanoseconds since the epoch.
    start: u64,
    end: u64,
}

impl Series {
    pub fn new(temporality: Temporality) -> Series {
        Series {
            temporality,
            metrics: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// A new interval: delta counters and gauges start empty.
    pub fn begin(&mut self, start: u64, end: u64) {
        self.start = start;
        self.end = end;
        let cumulative = self.temporality == Temporality::Cumulative;
        for metric in &mut self.metrics {
            if !(cumulative && metric.spec.kind == Kind::Counter) {
                metric.points.clear();
            }
        }
    }

    /// Counts `amount` on a counter's series.
    pub fn add(&mut self, spec: &'static MetricSpec, attributes: Attributes, amount: u64) {
        debug_assert_eq!(spec.kind, Kind::Counter, "{}", spec.name);
        let start = self.start;
        let point = self.metric(spec).points.entry(attributes).or_insert(Point {
            start,
            amount: Amount::Integer(0),
        });
        if let Amount::Integer(total) = &mut point.amount {
            *total = total.saturating_add(amount);
        }
    }

    /// Sets a gauge's series for this interval.
    pub fn set(&mut self, spec: &'static MetricSpec, attributes: Attributes, value: f64) {
        debug_assert_eq!(spec.kind, Kind::Gauge, "{}", spec.name);
        let start = self.start;
        self.metric(spec).points.insert(
            attributes,
            Point {
                start,
                amount: Amount::Double(value),
            },
        );
    }

    /// Drops a series (a peer that gave way to a busier one): it is no longer sent.
    pub fn forget(&mut self, spec: &'static MetricSpec, attributes: &Attributes) {
        self.metric(spec).points.remove(attributes);
    }

    fn metric(&mut self, spec: &'static MetricSpec) -> &mut MetricPoints {
        let index = match self.metrics.iter().position(|m| m.spec.name == spec.name) {
            Some(index) => index,
            None => {
                self.metrics.push(MetricPoints {
                    spec,
                    points: BTreeMap::new(),
                });
                self.metrics.len() - 1
            }
        };
        &mut self.metrics[index]
    }

    /// This interval's metrics, each with its data points.
    pub fn finish(&self) -> Vec<Metric> {
        let temporality = match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        };
        self.metrics
            .iter()
            .filter(|metric| !metric.points.is_empty())
            .map(|metric| {
                let data_points = metric
                    .points
                    .iter()
                    .map(|(attributes, point)| NumberDataPoint {
                        attributes: attributes.key_values(),
                        start_time_unix_nano: point.start,
                        time_unix_nano: self.end,
                        value: Some(match point.amount {
                            Amount::Integer(n) => number_data_point::Value::AsInt(
                                i64::try_from(n).unwrap_or(i64::MAX),
                            ),
                            Amount::Double(x) => number_data_point::Value::AsDouble(x),
                        }),
                        ..Default::default()
                    })
                    .collect();
                let data = match metric.spec.kind {
                    Kind::Counter => metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: temporality as i32,
                        is_monotonic: true,
                    }),
                    Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
                };
                Metric {
                    name: metric.spec.name.to_string(),
                    description: metric.spec.description.to_string(),
                    unit: metric.spec.unit.to_string(),
                    data: Some(data),
                    ..Default::default()
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: MetricSpec = MetricSpec {
        name: "process.network.io",
        description: "bytes",
        unit: "By",
        kind: Kind::Counter,
    };
    static RTT: MetricSpec = MetricSpec {
        name: "netgraph.tcp.rtt",
        description: "rtt",
        unit: "s",
        kind: Kind::Gauge,
    };

    fn curl() -> Attributes {
        Attributes::default()
            .text("process.executable.name", "curl")
            .text_if("container.name", None)
            .integer("process.user.id", 1000)
    }

    /// (start, time, value) of each point of `name`.
    fn points(series: &Series, name: &str) -> Vec<(u64, u64, String)> {
        let metrics = series.finish();
        let Some(metric) = metrics.iter().find(|m| m.name == name) else {
            return Vec::new();
        };
        let points = match metric.data.as_ref().unwrap() {
            metric::Data::Sum(sum) => &sum.data_points,
            metric::Data::Gauge(gauge) => &gauge.data_points,
            other => panic!("{other:?}"),
        };
        points
            .iter()
            .map(|p| {
                let value = match p.value.unwrap() {
                    number_data_point::Value::AsInt(n) => n.to_string(),
                    number_data_point::Value::AsDouble(x) => x.to_string(),
                };
                (p.start_time_unix_nano, p.time_unix_nano, value)
            })
            .collect()
    }

    #[test]
    fn cumulative_counters_keep_their_start_and_are_sent_while_idle() {
        let mut series = Series::new(Temporality::Cumulative);
        series.begin(10, 20);
        series.add(&BYTES, curl(), 5);
        series.add(&BYTES, curl(), 2);
        series.set(&RTT, curl(), 0.25);
        assert_eq!(
            points(&series, "process.network.io"),
            [(10, 20, "7".into())]
        );
        assert_eq!(
            points(&series, "netgraph.tcp.rtt"),
            [(10, 20, "0.25".into())]
        );
        series.begin(20, 30);
        assert_eq!(
            points(&series, "process.network.io"),
            [(10, 30, "7".into())]
        );
        assert!(
            points(&series, "netgraph.tcp.rtt").is_empty(),
            "not measured"
        );
        series.begin(30, 40);
        series.add(&BYTES, curl(), 3);
        assert_eq!(
            points(&series, "process.network.io"),
            [(10, 40, "10".into())]
        );
        series.forget(&BYTES, &curl());
        assert!(points(&series, "process.network.io").is_empty());
    }

    #[test]
    fn delta_counters_are_the_interval_and_only_what_moved() {
        let mut series = Series::new(Temporality::Delta);
        series.begin(10, 20);
        series.add(&BYTES, curl(), 5);
        series.begin(20, 30);
        assert!(points(&series, "process.network.io").is_empty());
        series.add(&BYTES, curl(), 3);
        assert_eq!(
            points(&series, "process.network.io"),
            [(20, 30, "3".into())]
        );
        let metrics = series.finish();
        let metric::Data::Sum(sum) = metrics[0].data.as_ref().unwrap() else {
            panic!()
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert!(sum.is_monotonic);
        let names: Vec<&str> = sum.data_points[0]
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(names, ["process.executable.name", "process.user.id"]);
    }
}
