//! A limit held for a while: fires when a value measured each interval (a rate in
//! bytes per second, or a measure of TCP's health) has stayed at or above the limit for
//! `held`, clears when it has stayed below for `held` again (so a value hovering at the
//! limit does not flap).

#[derive(Debug)]
pub struct RateWatch {
    /// The limit, in the value's unit (bytes per second for a rate).
    pub bytes_per_second: f64,
    pub held: f64,
    pub firing: bool,
    /// Since when (Unix seconds, fractional) the rate has been on the other side.
    crossed_since: Option<f64>,
    pub rate: f64,
}

#[derive(Debug, PartialEq)]
pub enum RateChange {
    Fired,
    Cleared,
}

impl RateWatch {
    pub fn new(bytes_per_second: f64, held: f64, firing: bool) -> RateWatch {
        RateWatch {
            bytes_per_second,
            held,
            firing,
            crossed_since: None,
            rate: 0.0,
        }
    }

    /// One interval `[start, end)` and its bytes.
    pub fn add(&mut self, bytes: u64, start: f64, end: f64) -> Option<RateChange> {
        let length = end - start;
        if length <= 0.0 {
            return None;
        }
        self.observe(bytes as f64 / length, start, end)
    }

    /// One interval `[start, end)` and the value measured over it.
    pub fn observe(&mut self, value: f64, start: f64, end: f64) -> Option<RateChange> {
        if end <= start {
            return None;
        }
        self.rate = value;
        let above = self.rate >= self.bytes_per_second;
        if above != self.firing {
            let since = *self.crossed_since.get_or_insert(start);
            if end - since >= self.held {
                self.firing = above;
                self.crossed_since = None;
                return Some(if above {
                    RateChange::Fired
                } else {
                    RateChange::Cleared
                });
            }
        } else {
            self.crossed_since = None;
        }
        None
    }

    pub fn ratio(&self) -> f64 {
        self.rate / self.bytes_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_held_above_and_clears_after_held_below() {
        let mut rate = RateWatch::new(1000.0, 3.0, false);
        let mut t = 0.0;
        let mut step = |rate: &mut RateWatch, bytes| {
            t += 1.0;
            rate.add(bytes, t - 1.0, t)
        };
        assert_eq!(step(&mut rate, 2000), None);
        assert_eq!(step(&mut rate, 2000), None);
        // A dip restarts the count.
        assert_eq!(step(&mut rate, 10), None);
        assert_eq!(step(&mut rate, 2000), None);
        assert_eq!(step(&mut rate, 2000), None);
        assert_eq!(step(&mut rate, 1000), Some(RateChange::Fired));
        assert!(rate.ratio() >= 1.0);
        assert_eq!(step(&mut rate, 0), None);
        assert_eq!(step(&mut rate, 0), None);
        assert_eq!(step(&mut rate, 0), Some(RateChange::Cleared));
        assert_eq!(step(&mut rate, 0), None);
    }
}
