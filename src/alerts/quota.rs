//! A quota: bytes per day or per billing month. It fires once when the period's bytes
//! reach the limit, and clears when a new period begins.

use crate::periods::Period;

#[derive(Debug)]
pub struct QuotaWatch {
    pub limit: u64,
    /// The period being counted, and its bytes so far.
    pub period: Option<Period>,
    pub used: u64,
    pub firing: bool,
    /// The start of the period it fired in.
    fired_in: i64,
}

#[derive(Debug, PartialEq)]
pub enum QuotaChange {
    /// Reached in the running period.
    Fired,
    /// A new period began after one it fired in; the bytes of that period where this
    /// run counted it (not when it fired before a restart).
    Cleared { ended_start: i64, used: Option<u64> },
}

impl QuotaWatch {
    /// `firing`/`fired_in`: as remembered from before a restart.
    pub fn new(limit: u64, firing: bool, fired_in: i64) -> QuotaWatch {
        QuotaWatch {
            limit,
            period: None,
            used: 0,
            firing,
            fired_in,
        }
    }

    /// Whether `period` is not the one being counted (the caller then reads the store
    /// for it and calls `begin`).
    pub fn needs(&self, period: &Period) -> bool {
        self.period.as_ref().is_none_or(|p| p.start != period.start)
    }

    /// Starts counting `period` from `used` bytes (what the store holds of it). A quota
    /// that fired in an earlier period clears, also one remembered from before a restart.
    pub fn begin(&mut self, period: Period, used: u64) -> Option<QuotaChange> {
        let previous = self.period.replace(period);
        let start = self.period.as_ref().map_or(0, |p| p.start);
        let old_used = std::mem::replace(&mut self.used, used);
        if !self.firing || self.fired_in == start {
            return None;
        }
        self.firing = false;
        Some(QuotaChange::Cleared {
            ended_start: self.fired_in,
            used: previous
                .filter(|p| p.start == self.fired_in)
                .map(|_| old_used),
        })
    }

    /// One interval's bytes, in the period counted now.
    pub fn add(&mut self, bytes: u64) -> Option<QuotaChange> {
        let start = self.period.as_ref()?.start;
        self.used += bytes;
        if self.firing || self.used < self.limit {
            return None;
        }
        self.firing = true;
        self.fired_in = start;
        Some(QuotaChange::Fired)
    }

    pub fn ratio(&self) -> f64 {
        self.used as f64 / self.limit as f64
    }

    pub fn fired_in(&self) -> i64 {
        self.fired_in
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(start: i64) -> Period {
        Period {
            start,
            end: start + 86_400,
            label: format!("day {start}"),
        }
    }

    #[test]
    fn fires_once_per_period_and_clears_with_the_next() {
        let mut quota = QuotaWatch::new(100, false, 0);
        assert_eq!(quota.begin(day(0), 40), None);
        assert_eq!(quota.add(50), None);
        assert_eq!(quota.add(10), Some(QuotaChange::Fired));
        assert_eq!(quota.add(500), None);
        assert_eq!(quota.ratio(), 6.0);
        assert!(!quota.needs(&day(0)));
        assert!(quota.needs(&day(86_400)));
        assert_eq!(
            quota.begin(day(86_400), 0),
            Some(QuotaChange::Cleared {
                ended_start: 0,
                used: Some(600)
            })
        );
        assert_eq!(quota.add(99), None);
        assert_eq!(quota.add(1), Some(QuotaChange::Fired));
    }

    #[test]
    fn a_restart_in_the_same_period_does_not_fire_again() {
        let mut quota = QuotaWatch::new(100, true, 0);
        assert_eq!(quota.begin(day(0), 150), None);
        assert_eq!(quota.add(10), None);
        assert!(quota.firing);
    }

    #[test]
    fn a_restart_in_a_later_period_clears_what_fired_before() {
        let mut quota = QuotaWatch::new(100, true, 0);
        assert_eq!(
            quota.begin(day(86_400), 5),
            Some(QuotaChange::Cleared {
                ended_start: 0,
                used: None
            })
        );
        assert!(!quota.firing);
    }
}
