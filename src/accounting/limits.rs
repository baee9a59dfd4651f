//! Each limit's interval and its totals since netgraph started (monotonic, by name, so a
//! reload that renumbers the limits keeps them).

use crate::limits::{LimitCount, LimitFlow};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitRow {
    pub name: Arc<str>,
    /// Whom it covers, as a person reads it ("process restic").
    pub scope: String,
    pub covers: crate::config::limits::LimitScope,
    /// Bytes per second; None: not limited that way.
    pub egress_rate: Option<u64>,
    pub ingress_rate: Option<u64>,
    /// This interval.
    pub egress: LimitFlow,
    pub ingress: LimitFlow,
    /// Since start.
    pub egress_total: LimitFlow,
    pub ingress_total: LimitFlow,
}

impl LimitRow {
    /// Whether it held anything back this interval.
    pub fn holding(&self) -> bool {
        self.egress.held_packets + self.ingress.held_packets > 0
    }
}

#[derive(Default)]
pub struct LimitTotals {
    totals: HashMap<Arc<str>, (LimitFlow, LimitFlow)>,
}

impl LimitTotals {
    pub fn rows(&mut self, counts: Vec<LimitCount>) -> Vec<LimitRow> {
        // Only limits configured now: a removed one's totals go with it.
        self.totals
            .retain(|name, _| counts.iter().any(|count| count.rates.name == *name));
        counts
            .into_iter()
            .map(|count| {
                let totals = self.totals.entry(count.rates.name.clone()).or_default();
                totals.0.add(&count.egress);
                totals.1.add(&count.ingress);
                LimitRow {
                    name: count.rates.name,
                    scope: count.rates.scope,
                    covers: count.rates.covers,
                    egress_rate: count.rates.egress,
                    ingress_rate: count.rates.ingress,
                    egress: count.egress,
                    ingress: count.ingress,
                    egress_total: totals.0,
                    ingress_total: totals.1,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::LimitRates;

    fn count(name: &str, held: u64) -> LimitCount {
        LimitCount {
            rates: LimitRates {
                id: 1,
                name: name.into(),
                scope: "process a".into(),
                covers: crate::config::limits::LimitScope::Process("a".into()),
                egress: Some(1000),
                ingress: None,
            },
            egress: LimitFlow {
                held_bytes: held,
                held_packets: 1,
                ..LimitFlow::default()
            },
            ingress: LimitFlow::default(),
        }
    }

    #[test]
    fn totals_add_up_by_name_and_leave_with_the_limit() {
        let mut totals = LimitTotals::default();
        totals.rows(vec![count("a", 10)]);
        let rows = totals.rows(vec![count("a", 5)]);
        assert_eq!(rows[0].egress_total.held_bytes, 15);
        assert_eq!(rows[0].egress.held_bytes, 5);
        assert!(rows[0].holding());
        totals.rows(vec![count("b", 1)]);
        let rows = totals.rows(vec![count("a", 1)]);
        assert_eq!(rows[0].egress_total.held_bytes, 1);
    }
}
