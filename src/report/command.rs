//! The `netgraph report` command line: which periods, grouped how, printed how.

use crate::config::Config;
use crate::periods::{periods, Selection, Split};
use crate::store::GroupBy;
use chrono::{Local, NaiveDate, TimeZone};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Today (the default).
    #[arg(long, group = "range")]
    pub today: bool,
    /// Yesterday, midnight to midnight (local time).
    #[arg(long, group = "range")]
    pub yesterday: bool,
    /// The current billing month ([report] billing_day, default the 1st).
    #[arg(long, group = "range")]
    pub month: bool,
    /// The billing month before the current one.
    #[arg(long, group = "range")]
    pub last_month: bool,
    /// From this time on: YYYY-MM-DD (local midnight), RFC 3339, or Unix seconds.
    #[arg(long, conflicts_with = "range")]
    pub from: Option<String>,
    /// Up to this time (excluded), in the same forms [default: now].
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// One set of rows per day.
    #[arg(long, conflicts_with = "monthly")]
    pub daily: bool,
    /// One set of rows per billing month.
    #[arg(long)]
    pub monthly: bool,
    /// Group by process, user, interface, unit, container, pod, namespace, cgroup,
    /// peer, domain or reason.
    #[arg(long, default_value = "process")]
    pub by: String,
    /// Groups shown per period (the period's total counts them all).
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// One JSON document instead of the table.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// CSV (one row per period and group) instead of the table.
    #[arg(long)]
    pub csv: bool,
    /// Configuration file (state_directory, [report] billing_day); default:
    /// /etc/netgraph/netgraph.toml where it exists.
    #[arg(short = 'c', long)]
    pub config: Option<PathBuf>,
    /// The daemon's web address; the store file is read when it does not answer.
    #[arg(long, default_value = "http://127.0.0.1:9800")]
    pub url: String,
    /// The daemon's web token, if it has one.
    #[arg(long, env = "NETGRAPH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

fn group_by(name: &str) -> anyhow::Result<GroupBy> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        anyhow::anyhow!(
            "--by {name}: give one of process, user, interface, unit, container, pod, namespace, cgroup, peer, domain, reason"
        )
    })
}

/// Unix seconds from YYYY-MM-DD (local midnight), RFC 3339 or a number.
fn time(text: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists as a time");
        if let Some(local) = Local.from_local_datetime(&midnight).earliest() {
            return Ok(local.timestamp());
        }
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|_| anyhow::anyhow!("{text}: give YYYY-MM-DD, an RFC 3339 time or Unix seconds"))
}

/// The report as text: a table, JSON or CSV.
pub fn run(args: &ReportArgs, config: &Config) -> anyhow::Result<String> {
    let selection = match (&args.from, &args.to) {
        (Some(from), to) => {
            let to = match to {
                Some(to) => time(to)?,
                None => Local::now().timestamp(),
            };
            let from = time(from)?;
            if from >= to {
                anyhow::bail!("--from must be before --to");
            }
            Selection::Range { from, to }
        }
        _ if args.yesterday => Selection::Yesterday,
        _ if args.month => Selection::Month,
        _ if args.last_month => Selection::LastMonth,
        _ => Selection::Today,
    };
    let split = match (args.daily, args.monthly) {
        (true, _) => Split::Daily,
        (_, true) => Split::Monthly,
        _ => Split::Whole,
    };
    let grouping = group_by(&args.by)?;
    let now = Local::now();
    let periods = periods(&Local, now, selection, split, config.report.billing_day);
    let source = super::Source::find(&args.url, args.token.as_deref(), &config.state_directory())?;
    let rows = super::rows(
        &source,
        &periods,
        grouping,
        args.top.clamp(1, 1000),
        now.timestamp(),
    )?;
    Ok(if args.json {
        serde_json::to_string_pretty(&rows)? + "\n"
    } else if args.csv {
        super::csv(&rows, &args.by)
    } else {
        super::table(&rows, &args.by)
    })
}
