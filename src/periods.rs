//! Periods of time in the host's local time, shared by reports, quotas and the page:
//! days, and billing months that start on a configured day (as a provider bills), and
//! the projection of a period that is still running.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone};

/// What the user asked to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    Today,
    Yesterday,
    /// The current billing month.
    Month,
    LastMonth,
    /// Unix seconds, `[from, to)`.
    Range {
        from: i64,
        to: i64,
    },
}

/// How the selection is cut into rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Whole,
    Daily,
    Monthly,
}

/// `[start, end)` in Unix seconds, and how it is shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Period {
    pub start: i64,
    pub end: i64,
    pub label: String,
}

impl Period {
    /// The total the period will reach if the rest of it goes as it went so far: the
    /// amount so far scaled by the period's length over the time elapsed, both counted
    /// from when recording began (`recorded_since`) where that is later than the
    /// period's start. `None` for a period that is over, or whose recorded part is
    /// under an hour: too little to tell.
    pub fn projection(&self, so_far: u64, now: i64, recorded_since: Option<i64>) -> Option<u64> {
        let start = recorded_since.map_or(self.start, |since| since.max(self.start));
        let elapsed = now - start;
        if now >= self.end || elapsed < 3600 {
            return None;
        }
        let length = (self.end - start) as f64;
        Some((so_far as f64 * length / elapsed as f64).round() as u64)
    }
}

fn midnight<Tz: TimeZone>(zone: &Tz, date: NaiveDate) -> i64 {
    let naive = date
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists as a time");
    // A midnight skipped by a clock change (Santiago, Havana, Beirut) falls to the
    // first minute of the day that exists.
    (0..24 * 60)
        .find_map(|minute| {
            zone.from_local_datetime(&(naive + Duration::minutes(minute)))
                .earliest()
        })
        .map_or_else(|| naive.and_utc().timestamp(), |t| t.timestamp())
}

fn day<Tz: TimeZone>(zone: &Tz, date: NaiveDate) -> Period {
    Period {
        start: midnight(zone, date),
        end: midnight(zone, date + Duration::days(1)),
        label: date.format("%Y-%m-%d").to_string(),
    }
}

/// The billing month starting on `billing_day` that holds `date`.
fn billing_month_start(date: NaiveDate, billing_day: u32) -> NaiveDate {
    let this_month = date
        .with_day(billing_day)
        .expect("billing days are 1 to 28");
    if date >= this_month {
        this_month
    } else {
        previous_month(this_month)
    }
}

fn previous_month(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month() == 1 {
        (date.year() - 1, 12)
    } else {
        (date.year(), date.month() - 1)
    };
    NaiveDate::from_ymd_opt(year, month, date.day()).expect("days up to 28 exist in every month")
}

fn next_month(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, date.day()).expect("days up to 28 exist in every month")
}

fn billing_month<Tz: TimeZone>(zone: &Tz, start: NaiveDate) -> Period {
    let end = next_month(start);
    let label = if start.day() == 1 {
        start.format("%Y-%m").to_string()
    } else {
        format!(
            "{} to {}",
            start.format("%Y-%m-%d"),
            (end - Duration::days(1)).format("%Y-%m-%d")
        )
    };
    Period {
        start: midnight(zone, start),
        end: midnight(zone, end),
        label,
    }
}

/// The periods of `selection` at `now`, cut as `split` says, in `zone`'s local time.
pub fn periods<Tz: TimeZone>(
    zone: &Tz,
    now: DateTime<Tz>,
    selection: Selection,
    split: Split,
    billing_day: u32,
) -> Vec<Period> {
    let today = now.date_naive();
    let whole = match selection {
        Selection::Today => day(zone, today),
        Selection::Yesterday => day(zone, today - Duration::days(1)),
        Selection::Month => billing_month(zone, billing_month_start(today, billing_day)),
        Selection::LastMonth => billing_month(
            zone,
            previous_month(billing_month_start(today, billing_day)),
        ),
        Selection::Range { from, to } => Period {
            start: from,
            end: to,
            label: format!("{from} to {to}"),
        },
    };
    let date_of = |t: i64| zone.timestamp_opt(t, 0).earliest().map(|t| t.date_naive());
    let (Some(first), Some(last)) = (date_of(whole.start), date_of(whole.end - 1)) else {
        return vec![whole];
    };
    let mut cut = Vec::new();
    match split {
        Split::Whole => return vec![whole],
        Split::Daily => {
            // Days yet to come have nothing to show.
            let mut date = first;
            while date <= last.min(today) {
                cut.push(day(zone, date));
                date += Duration::days(1);
            }
        }
        Split::Monthly => {
            let mut start = billing_month_start(first, billing_day);
            while start <= last {
                cut.push(billing_month(zone, start));
                start = next_month(start);
            }
        }
    }
    // Clipped to what was asked for.
    for period in &mut cut {
        period.start = period.start.max(whole.start);
        period.end = period.end.min(whole.end);
    }
    cut
}

/// The last `count` days up to today, oldest first.
pub fn last_days<Tz: TimeZone>(zone: &Tz, now: DateTime<Tz>, count: u32) -> Vec<Period> {
    let today = now.date_naive();
    (0..i64::from(count))
        .rev()
        .map(|back| day(zone, today - Duration::days(back)))
        .collect()
}

/// The last `count` billing months up to the current one, oldest first.
pub fn last_billing_months<Tz: TimeZone>(
    zone: &Tz,
    now: DateTime<Tz>,
    count: u32,
    billing_day: u32,
) -> Vec<Period> {
    let mut start = billing_month_start(now.date_naive(), billing_day);
    let mut months = Vec::new();
    for _ in 0..count {
        months.push(billing_month(zone, start));
        start = previous_month(start);
    }
    months.reverse();
    months
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, Utc};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn labels(periods: &[Period]) -> Vec<&str> {
        periods.iter().map(|p| p.label.as_str()).collect()
    }

    #[test]
    fn days_and_calendar_months() {
        let now = at("2026-11-26T19:00:00Z");
        let today = periods(&Utc, now, Selection::Today, Split::Whole, 1);
        assert_eq!(labels(&today), ["2026-11-26"]);
        assert_eq!(today[0].end - today[0].start, 86_400);
        assert_eq!(today[0].start, at("2026-11-26T00:00:00Z").timestamp());
        let yesterday = periods(&Utc, now, Selection::Yesterday, Split::Whole, 1);
        assert_eq!(labels(&yesterday), ["2026-11-25"]);
        let month = periods(&Utc, now, Selection::Month, Split::Whole, 1);
        assert_eq!(labels(&month), ["2026-11"]);
        assert_eq!(month[0].end, at("2026-12-01T00:00:00Z").timestamp());
        // Up to today: the month's days yet to come are not rows of zeros.
        let daily = periods(&Utc, now, Selection::Month, Split::Daily, 1);
        assert_eq!(daily.len(), 26);
        assert_eq!(daily[25].label, "2026-11-26");
    }

    #[test]
    fn billing_months_start_on_their_day_across_the_year() {
        let now = at("2026-01-10T08:00:00Z");
        let month = periods(&Utc, now, Selection::Month, Split::Whole, 15);
        assert_eq!(labels(&month), ["2025-12-15 to 2026-01-14"]);
        let last = periods(&Utc, now, Selection::LastMonth, Split::Whole, 15);
        assert_eq!(labels(&last), ["2025-11-15 to 2025-12-14"]);
        let from = at("2025-10-20T00:00:00Z").timestamp();
        let to = now.timestamp();
        let monthly = periods(&Utc, now, Selection::Range { from, to }, Split::Monthly, 15);
        assert_eq!(
            labels(&monthly),
            [
                "2025-10-15 to 2025-11-14",
                "2025-11-15 to 2025-12-14",
                "2025-12-15 to 2026-01-14"
            ]
        );
        // Clipped to the range asked for.
        assert_eq!(monthly[0].start, from);
        assert_eq!(monthly[2].end, to);
    }

    #[test]
    fn local_days_follow_the_zone() {
        let berlin = FixedOffset::east_opt(3600).unwrap();
        let now = at("2026-11-26T23:30:00Z").with_timezone(&berlin);
        let today = periods(&berlin, now, Selection::Today, Split::Whole, 1);
        assert_eq!(labels(&today), ["2026-11-27"]);
        assert_eq!(today[0].start, at("2026-11-26T23:00:00Z").timestamp());
    }

    #[test]
    fn a_running_period_is_projected_from_its_rate_so_far() {
        let now = at("2026-11-11T00:00:00Z");
        let month = &periods(&Utc, now, Selection::Month, Split::Whole, 1)[0];
        // 10 of 30 days gone, 10 GB so far: 30 GB at this rate.
        assert_eq!(
            month.projection(10_000_000_000, now.timestamp(), None),
            Some(30_000_000_000)
        );
        assert_eq!(
            month.projection(5, month.start + 60, None),
            None,
            "too early to tell"
        );
        assert_eq!(month.projection(5, month.end, None), None, "over");
        // Recording began on the 10th: one day recorded, 21 from then to the month's end.
        let tenth = at("2026-11-10T00:00:00Z").timestamp();
        assert_eq!(
            month.projection(1_000, now.timestamp(), Some(tenth)),
            Some(21_000)
        );
        // Two minutes after the first start: too little to tell.
        let start = now.timestamp() - 120;
        assert_eq!(month.projection(186, now.timestamp(), Some(start)), None);
    }
}
