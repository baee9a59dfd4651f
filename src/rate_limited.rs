//! Logging a failure that repeats: the first time at once, then at most once a
//! period with how often it happened in between, so a full disk or a dead server does
//! not write a line per interval.

use std::time::{Duration, Instant};

pub struct Repeats {
    period: Duration,
    /// The message last logged, when, and how often it came since.
    last: Option<(String, Instant, u64)>,
    /// The failure was over at the last `clear`; the same one coming back within the
    /// period is still held back (a disk that fills and frees by turns logs once).
    over: bool,
}

impl Repeats {
    pub fn every_minute() -> Repeats {
        Repeats::every(Duration::from_secs(60))
    }

    pub fn every(period: Duration) -> Repeats {
        Repeats {
            period,
            last: None,
            over: false,
        }
    }

    /// Whether to log `message` now: `Some` with a suffix that says how often it was
    /// held back (empty when it was not), `None` to stay quiet.
    pub fn check(&mut self, message: &str) -> Option<String> {
        self.check_at(message, Instant::now())
    }

    fn check_at(&mut self, message: &str, now: Instant) -> Option<String> {
        self.over = false;
        match &mut self.last {
            Some((last, logged, held)) if last == message && now - *logged < self.period => {
                *held += 1;
                None
            }
            Some((last, logged, held)) if last == message => {
                let suffix = held_back(*held, now - *logged);
                *logged = now;
                *held = 0;
                Some(suffix)
            }
            _ => {
                self.last = Some((message.to_string(), now, 0));
                Some(String::new())
            }
        }
    }

    /// The failure is over: says how many were held back since the last line, if any.
    pub fn clear(&mut self) -> Option<String> {
        if self.over {
            return None;
        }
        self.over = true;
        let (_, logged, held) = self.last.as_mut()?;
        let held = std::mem::take(held);
        (held > 0).then(|| held_back(held, logged.elapsed()))
    }
}

fn held_back(held: u64, over: Duration) -> String {
    if held == 0 {
        return String::new();
    }
    format!(
        " (and {held} more times in the last {}s)",
        over.as_secs().max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_back_within_the_period_after_a_success_is_counted_not_logged() {
        let mut repeats = Repeats::every(Duration::from_secs(60));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(repeats.check_at("disk full", at(0)), Some(String::new()));
        assert_eq!(repeats.check_at("disk full", at(1)), None);
        assert!(repeats.clear().is_some(), "one held back, said at recovery");
        assert_eq!(repeats.clear(), None, "said once");
        assert_eq!(repeats.check_at("disk full", at(2)), None);
        assert_eq!(
            repeats.check_at("disk full", at(61)),
            Some(" (and 1 more times in the last 61s)".into())
        );
        assert_eq!(
            repeats.check_at("another failure", at(62)),
            Some(String::new())
        );
    }

    #[test]
    fn first_at_once_then_a_count_each_period() {
        let mut repeats = Repeats::every(Duration::from_secs(60));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(repeats.check_at("disk full", at(0)), Some(String::new()));
        for s in 1..30 {
            assert_eq!(repeats.check_at("disk full", at(s)), None);
        }
        assert_eq!(
            repeats.check_at("disk full", at(61)),
            Some(" (and 29 more times in the last 61s)".into())
        );
        // Another failure is news at once.
        assert_eq!(repeats.check_at("timed out", at(62)), Some(String::new()));
        assert_eq!(repeats.check_at("timed out", at(63)), None);
        assert!(repeats.clear().is_some());
        assert_eq!(repeats.clear(), None);
    }
}
