//! Alerts: quotas (bytes per day or billing month), rates held for a while, and first
//! contacts, each a rule of `[alerts]`. It reads what accounting produced, as the sinks
//! do; notices go to the log at once and to webhooks and commands from a thread of
//! their own. What has fired, and the contacts known, are kept in the store, so a
//! restart does not notice them again.

pub mod board;
pub mod delivery;
mod first_contact;
mod notice;
mod quota;
mod rate;
mod scope;

use crate::accounting::IntervalReport;
use crate::config::alerts::{
    ContactBy, HealthMeasure, QuotaPeriod, RuleConfig, RuleKind, TrafficSide,
};
use crate::config::limits::Limit;
use crate::config::Config;
use crate::limits::Throttles;
use crate::outputs::Shared;
use crate::periods::{periods, Period, Selection, Split};
use crate::sinks::Sink;
use crate::store::{AlertLedger, Reader, RuleState};
use crate::units::bytes as human;
use board::{AlertBoard, RuleStatus};
use delivery::{Queue, Targets};
use first_contact::ContactWatch;
use notice::{ContactFacts, Details, Notice, PeriodFacts, State, ThrottleFacts};
use quota::{QuotaChange, QuotaWatch};
use rate::{RateChange, RateWatch};
use scope::Scope;
use std::time::{SystemTime, UNIX_EPOCH};

enum Watch {
    Quota {
        watch: QuotaWatch,
        per: QuotaPeriod,
    },
    Rate(RateWatch),
    Contacts(ContactWatch),
    /// A measure of TCP's health held above its limit.
    Health {
        watch: RateWatch,
        measure: HealthMeasure,
    },
}

struct Rule {
    name: String,
    scope: Scope,
    traffic: TrafficSide,
    targets: Targets,
    watch: Watch,
    /// A quota's limit while it fires (`action = "throttle"` or `"block"`).
    throttle: Option<Limit>,
    /// How long its scope's packets are captured when it fires.
    capture: Option<std::time::Duration>,
}

pub struct Alerts {
    rules: Vec<Rule>,
    /// None without the store: state then lasts as long as the process.
    ledger: Option<AlertLedger>,
    reader: Option<Reader>,
    /// When the store's history begins, once it has any: projections start there.
    recorded_since: std::cell::Cell<Option<i64>>,
    board: AlertBoard,
    delivery: Queue,
    hostname: String,
    billing_day: u32,
    /// Where quotas that throttle or block apply their limits.
    throttles: Throttles,
    /// Where rules that capture ask for their captures, and where those are kept.
    captures: crate::capture::Captures,
    kept_captures: crate::capture::KeptCaptures,
}

fn seconds_f(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The day or billing month holding `t`, in local time.
fn period_at(per: QuotaPeriod, t: i64, billing_day: u32) -> Period {
    let zone = chrono::Local;
    let now = chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .with_timezone(&zone);
    let selection = match per {
        QuotaPeriod::Day => Selection::Today,
        QuotaPeriod::Month => Selection::Month,
    };
    periods(&zone, now, selection, Split::Whole, billing_day)
        .into_iter()
        .next()
        .unwrap_or(Period {
            start: t,
            end: t + 86_400,
            label: String::new(),
        })
}

impl Alerts {
    /// The configured rules with their remembered state; `None` when there are none.
    pub fn start(config: &Config, hostname: &str, shared: &Shared) -> Option<Alerts> {
        let (board, deliveries) = (&shared.alerts, &shared.deliveries);
        let alerts = &config.alerts;
        // Throttles of rules removed or changed since go (a changed one starts again
        // below if it still fires).
        shared.throttles.keep_only(&[]);
        if alerts.rules.is_empty() {
            board.publish(Vec::new());
            return None;
        }
        let state_directory = config.state_directory();
        let (mut ledger, reader) = if config.store.enabled {
            let opened = AlertLedger::open(&state_directory)
                .and_then(|ledger| Ok((ledger, Reader::open(&state_directory)?)));
            match opened {
                Ok((ledger, reader)) => (Some(ledger), Some(reader)),
                Err(error) => {
                    tracing::warn!("alerts: {error:#}; fired alerts and known contacts are not kept across restarts");
                    (None, None)
                }
            }
        } else {
            tracing::warn!("alerts: [store] enabled = false: fired alerts and known contacts are not kept across restarts, and quotas count from netgraph's start");
            (None, None)
        };
        let names: Vec<&str> = alerts.rules.iter().map(|r| r.name.as_str()).collect();
        if let Some(ledger) = &mut ledger {
            if let Err(error) = ledger.keep_only(&names) {
                tracing::warn!("alerts: cannot forget removed rules in the store: {error:#}");
            }
        }
        let mut started = Alerts {
            rules: Vec::new(),
            ledger,
            reader,
            recorded_since: std::cell::Cell::new(None),
            board: board.clone(),
            delivery: deliveries.queue(),
            hostname: hostname.to_string(),
            billing_day: config.report.billing_day,
            throttles: shared.throttles.clone(),
            captures: shared.captures.clone(),
            kept_captures: crate::capture::KeptCaptures::new(
                &state_directory,
                alerts.captures_kept,
                alerts.capture_max_mib,
            ),
        };
        let now = crate::store::seconds(SystemTime::now());
        for rule in &alerts.rules {
            let Ok(kind) = rule.kind() else { continue };
            let targets = Targets {
                webhook: rule.webhook.clone().or_else(|| alerts.webhook.clone()),
                command: rule.command.clone().or_else(|| alerts.command.clone()),
            };
            let built = started.rule(rule, kind, targets, now);
            started.rules.push(built);
        }
        // A quota that fired in a period now over clears (also across a restart).
        for index in 0..started.rules.len() {
            started.begin_period(index, now);
        }
        // One still firing from before a restart or reload throttles again.
        for rule in &started.rules {
            if let (Watch::Quota { watch, .. }, Some(limit)) = (&rule.watch, &rule.throttle) {
                if watch.firing {
                    started.throttles.start(limit.clone());
                }
            }
        }
        started.publish(now);
        tracing::info!(rules = started.rules.len(), "alert rules on");
        Some(started)
    }

    fn rule(&self, config: &RuleConfig, kind: RuleKind, targets: Targets, now: i64) -> Rule {
        let state = match &self.ledger {
            Some(ledger) => ledger.rule(&config.name, now).unwrap_or_else(|error| {
                tracing::warn!(
                    rule = config.name,
                    "alerts: cannot read the rule's state: {error:#}"
                );
                RuleState {
                    since: now,
                    ..RuleState::default()
                }
            }),
            None => RuleState {
                since: now,
                ..RuleState::default()
            },
        };
        let watch = match kind {
            RuleKind::Quota { limit, per } => Watch::Quota {
                watch: QuotaWatch::new(limit, state.firing, state.period_start),
                per,
            },
            RuleKind::Rate {
                bytes_per_second,
                held,
            } => Watch::Rate(RateWatch::new(
                bytes_per_second,
                held.as_secs_f64(),
                state.firing,
            )),
            RuleKind::Health {
                measure,
                limit,
                held,
            } => Watch::Health {
                watch: RateWatch::new(limit, held.as_secs_f64(), state.firing),
                measure,
            },
            RuleKind::FirstContact { by, learning } => {
                let known = match &self.ledger {
                    Some(ledger) => ledger.contacts(&config.name).unwrap_or_default(),
                    None => Default::default(),
                };
                let learning_until = state.since.saturating_add(learning.as_secs() as i64);
                Watch::Contacts(ContactWatch::new(by, learning_until, known))
            }
        };
        Rule {
            name: config.name.clone(),
            scope: Scope::of(config),
            traffic: config.traffic,
            targets,
            watch,
            // Checked when the configuration loaded.
            throttle: config.throttle().ok().flatten(),
            capture: config.capture,
        }
    }

    /// Moves a quota to the period holding `t` if it counts another, starting from
    /// what the store holds of the new period.
    fn begin_period(&mut self, index: usize, t: i64) {
        let billing_day = self.billing_day;
        let rule = &self.rules[index];
        let Watch::Quota { watch, per } = &rule.watch else {
            return;
        };
        let period = period_at(*per, t, billing_day);
        if !watch.needs(&period) {
            return;
        }
        // Only when the rule starts: later the store already holds the interval being
        // counted, which the rule adds itself.
        let used = match (&self.reader, watch.period.is_none()) {
            (Some(reader), true) => {
                let filters = rule.scope.store_filters();
                match reader.sum(period.start, t + 3600, &scope::as_only(&filters)) {
                    Ok((sent, received)) => rule.traffic.of(sent, received),
                    Err(error) => {
                        tracing::warn!(rule = rule.name, "alerts: cannot read the period's bytes from the store: {error:#}; counting from now");
                        0
                    }
                }
            }
            _ => 0,
        };
        let per = *per;
        let Watch::Quota { watch, .. } = &mut self.rules[index].watch else {
            return;
        };
        if let Some(QuotaChange::Cleared { ended_start, used }) = watch.begin(period, used) {
            let ended = period_at(per, ended_start, billing_day);
            self.quota_notice(index, State::Cleared, Some((ended, used)), t);
        }
    }

    fn quota_notice(
        &mut self,
        index: usize,
        state: State,
        ended: Option<(Period, Option<u64>)>,
        now: i64,
    ) {
        let rule = &self.rules[index];
        let Watch::Quota { watch, per } = &rule.watch else {
            return;
        };
        let per_label = match per {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        };
        let (period, used) = match &ended {
            Some((period, used)) => (period.clone(), used.unwrap_or(0)),
            None => (
                watch.period.clone().unwrap_or(Period {
                    start: now,
                    end: now,
                    label: String::new(),
                }),
                watch.used,
            ),
        };
        let message = match state {
            State::Firing => format!(
                "alert {}: {} used {} of its {} quota of {} in {} ({:.0}%)",
                rule.name,
                rule.scope.describe(),
                human(used),
                traffic_words(rule.traffic),
                human(watch.limit),
                period.label,
                watch.ratio() * 100.0
            ),
            _ => format!(
                "alert {} cleared: {} is over, a new {} begins",
                rule.name,
                period.label,
                if *per == QuotaPeriod::Day {
                    "day"
                } else {
                    "billing month"
                }
            ),
        };
        let firing = state == State::Firing;
        let throttle = rule.throttle.as_ref().map(ThrottleFacts::of);
        let message = match &throttle {
            Some(facts) if firing => {
                format!("{message}; {} until the period ends", facts.describe())
            }
            Some(_) => format!("{message}; its limit is lifted"),
            None => message,
        };
        let details = Details::Quota {
            used_bytes: used,
            limit_bytes: watch.limit,
            ratio: used as f64 / watch.limit as f64,
            period: PeriodFacts {
                per: per_label,
                label: period.label.clone(),
                start: period.start,
                end: period.end,
            },
            throttle,
        };
        match (&rule.throttle, firing) {
            (Some(limit), true) => self.throttles.start(limit.clone()),
            (Some(limit), false) => self.throttles.end(&limit.name),
            (None, _) => {}
        }
        let fired_in = watch.fired_in();
        self.emit(index, "quota", state, message, details, now);
        self.remember_firing(index, firing, fired_in);
    }

    fn rate_notice(&mut self, index: usize, state: State, now: i64) {
        let rule = &self.rules[index];
        let Watch::Rate(watch) = &rule.watch else {
            return;
        };
        let held = humantime::format_duration(std::time::Duration::from_secs_f64(watch.held));
        let message = match state {
            State::Firing => format!(
                "alert {}: {} {} at {}/s or more for {held}, over its limit of {}/s",
                rule.name,
                rule.scope.describe(),
                traffic_words(rule.traffic),
                human(watch.rate as u64),
                human(watch.bytes_per_second as u64)
            ),
            _ => format!(
                "alert {} cleared: {} {} below {}/s for {held}",
                rule.name,
                rule.scope.describe(),
                traffic_words(rule.traffic),
                human(watch.bytes_per_second as u64)
            ),
        };
        let details = Details::Rate {
            rate_bytes_per_second: watch.rate,
            limit_bytes_per_second: watch.bytes_per_second,
            held_seconds: watch.held,
            ratio: watch.ratio(),
        };
        let firing = state == State::Firing;
        self.emit(index, "rate", state, message, details, now);
        self.remember_firing(index, firing, 0);
    }

    fn health_notice(&mut self, index: usize, state: State, now: i64) {
        let rule = &self.rules[index];
        let Watch::Health { watch, measure } = &rule.watch else {
            return;
        };
        let shown = |value: f64| health_value(*measure, value);
        let held = humantime::format_duration(std::time::Duration::from_secs_f64(watch.held));
        let what = match measure {
            HealthMeasure::RetransmitRatio => "retransmitted",
            HealthMeasure::Rtt => "saw round trips of",
            HealthMeasure::ConnectFailures => "failed to connect",
        };
        let message = match state {
            State::Firing if watch.held > 0.0 => format!(
                "alert {}: {} {what} {} for {held}, over its limit of {}",
                rule.name,
                rule.scope.describe(),
                shown(watch.rate),
                shown(watch.bytes_per_second)
            ),
            State::Firing => format!(
                "alert {}: {} {what} {}, at or over its limit of {}",
                rule.name,
                rule.scope.describe(),
                shown(watch.rate),
                shown(watch.bytes_per_second)
            ),
            _ => format!(
                "alert {} cleared: {} below {} for {held}",
                rule.name,
                rule.scope.describe(),
                shown(watch.bytes_per_second)
            ),
        };
        let details = Details::Health {
            measure: measure.key(),
            value: watch.rate,
            limit: watch.bytes_per_second,
            held_seconds: watch.held,
        };
        let firing = state == State::Firing;
        self.emit(index, "health", state, message, details, now);
        self.remember_firing(index, firing, 0);
    }

    fn contact_notice(&mut self, index: usize, facts: ContactFacts, now: i64) {
        let rule = &self.rules[index];
        let kind = match &rule.watch {
            Watch::Contacts(watch) if watch.by == ContactBy::Country => "a country",
            _ => "a peer",
        };
        let mut message = format!(
            "alert {}: {} (pid {}, uid {}) contacted {} for the first time: {}",
            rule.name,
            facts.process,
            facts.pid.map_or("?".into(), |p| p.to_string()),
            facts.uid.map_or("?".into(), |u| u.to_string()),
            kind,
            facts.contact
        );
        if let Some(address) = facts.peer_address.as_ref().filter(|a| **a != facts.contact) {
            message += &format!(" ({address})");
        }
        if let Some(service) = &facts.service {
            message += &format!(" {service}");
        }
        message += &format!(" on {}", facts.interface);
        self.emit(
            index,
            "first_contact",
            State::Notice,
            message,
            Details::Contact(Box::new(facts)),
            now,
        );
    }

    fn emit(
        &self,
        index: usize,
        kind: &'static str,
        state: State,
        message: String,
        details: Details,
        now: i64,
    ) {
        let rule = &self.rules[index];
        match state {
            State::Cleared => tracing::info!("{message}"),
            _ => tracing::warn!("{message}"),
        }
        let time = chrono::DateTime::from_timestamp(now, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let notice = Notice {
            rule: rule.name.clone(),
            kind,
            state,
            message,
            hostname: self.hostname.clone(),
            time,
            unix_time: now,
            scope: rule.scope.clone(),
            traffic: rule.traffic,
            details,
        };
        self.delivery.send(notice, rule.targets.clone());
        if state != State::Cleared {
            self.capture(rule, now);
        }
    }

    /// A firing rule's capture of its scope, where it asks for one.
    fn capture(&self, rule: &Rule, now: i64) {
        let Some(duration) = rule.capture else {
            return;
        };
        let scope = crate::capture::CaptureScope {
            process: rule.scope.process.clone(),
            uid: rule.scope.uid,
            interface: rule.scope.interface.clone(),
            container: rule.scope.container.clone(),
            ..Default::default()
        };
        match self.kept_captures.job(&rule.name, scope, duration, now) {
            Ok(job) => self.captures.request(job),
            Err(error) => tracing::error!(
                rule = rule.name,
                "alerts: no capture: cannot make room in the captures directory: {error}"
            ),
        }
    }

    fn remember_firing(&self, index: usize, firing: bool, period_start: i64) {
        if let Some(ledger) = &self.ledger {
            let rule = &self.rules[index].name;
            if let Err(error) = ledger.set_firing(rule, firing, period_start) {
                tracing::warn!(
                    rule,
                    "alerts: cannot keep the rule's state in the store: {error:#}"
                );
            }
        }
    }

    /// The bytes the rule counts in this interval.
    fn bytes(rule: &Rule, report: &IntervalReport) -> u64 {
        report
            .processes
            .iter()
            .filter(|row| rule.scope.matches(&row.key, row.workload.as_deref()))
            .map(|row| rule.traffic.of(row.last.sent.bytes, row.last.recv.bytes))
            .sum()
    }

    /// The rule's measure of TCP's health this interval, over the rows it watches.
    fn health(rule: &Rule, measure: HealthMeasure, report: &IntervalReport) -> f64 {
        let mut tcp = crate::traffic::TcpHealth::default();
        let mut packets_sent = 0;
        for row in report
            .processes
            .iter()
            .filter(|row| rule.scope.matches(&row.key, row.workload.as_deref()))
        {
            tcp.merge(&row.last.tcp);
            packets_sent += row.last.sent.packets;
        }
        match measure {
            HealthMeasure::RetransmitRatio if packets_sent > 0 => {
                tcp.retransmits as f64 / packets_sent as f64
            }
            HealthMeasure::RetransmitRatio => 0.0,
            HealthMeasure::Rtt => tcp.rtt_us().map_or(0.0, f64::from),
            HealthMeasure::ConnectFailures => tcp.connect_failures() as f64,
        }
    }

    fn evaluate(&mut self, index: usize, report: &IntervalReport) {
        let start = crate::store::seconds(report.start);
        let now = crate::store::seconds(report.end);
        self.begin_period(index, start);
        let bytes = Self::bytes(&self.rules[index], report);
        if let Watch::Health { measure, .. } = self.rules[index].watch {
            let value = Self::health(&self.rules[index], measure, report);
            let Watch::Health { watch, .. } = &mut self.rules[index].watch else {
                return;
            };
            match watch.observe(value, seconds_f(report.start), seconds_f(report.end)) {
                Some(RateChange::Fired) => self.health_notice(index, State::Firing, now),
                Some(RateChange::Cleared) => self.health_notice(index, State::Cleared, now),
                None => {}
            }
            return;
        }
        let rule = &mut self.rules[index];
        match &mut rule.watch {
            Watch::Quota { watch, .. } => {
                if watch.add(bytes) == Some(QuotaChange::Fired) {
                    self.quota_notice(index, State::Firing, None, now);
                }
            }
            Watch::Rate(watch) => {
                match watch.add(bytes, seconds_f(report.start), seconds_f(report.end)) {
                    Some(RateChange::Fired) => self.rate_notice(index, State::Firing, now),
                    Some(RateChange::Cleared) => self.rate_notice(index, State::Cleared, now),
                    None => {}
                }
            }
            Watch::Contacts(watch) => {
                let new = watch.observe(report, &rule.scope, now);
                if let Some(ledger) = &mut self.ledger {
                    if let Err(error) = ledger.add_contacts(&rule.name, &new.learnt, now) {
                        tracing::warn!(
                            rule = rule.name,
                            "alerts: cannot keep contacts in the store: {error:#}"
                        );
                    }
                }
                if new.unnoticed > 0 {
                    tracing::warn!(
                        "alert {}: {} more first contacts this interval than the {} noticed one by one",
                        rule.name,
                        new.unnoticed,
                        first_contact::MAX_NOTICES
                    );
                }
                for facts in new.noticed {
                    self.contact_notice(index, facts, now);
                }
            }
            Watch::Health { .. } => {}
        }
    }

    fn publish(&self, now: i64) {
        if self.recorded_since.get().is_none() {
            let since = self.reader.as_ref().and_then(|r| r.recording_since().ok());
            self.recorded_since.set(since.flatten());
        }
        let recorded_since = self.recorded_since.get();
        let statuses = self
            .rules
            .iter()
            .map(|rule| {
                let mut status = RuleStatus {
                    rule: rule.name.clone(),
                    kind: "",
                    watches: rule.scope.describe(),
                    traffic: rule.traffic,
                    firing: false,
                    used: None,
                    limit: None,
                    ratio: None,
                    period: None,
                    projected: None,
                    known_contacts: None,
                    learning_until: None,
                    action: rule.throttle.as_ref().map(|limit| {
                        let facts = ThrottleFacts::of(limit);
                        match facts.action {
                            "block" => "block".to_string(),
                            _ => facts
                                .describe()
                                .replace("its traffic is throttled", "throttle"),
                        }
                    }),
                    throttling: false,
                };
                match &rule.watch {
                    Watch::Quota { watch, .. } => {
                        status.kind = "quota";
                        status.firing = watch.firing;
                        status.throttling = watch.firing && rule.throttle.is_some();
                        status.used = Some(watch.used as f64);
                        status.limit = Some(watch.limit as f64);
                        status.ratio = Some(watch.ratio());
                        status.period = watch.period.as_ref().map(|p| p.label.clone());
                        status.projected = watch
                            .period
                            .as_ref()
                            .and_then(|p| p.projection(watch.used, now, recorded_since));
                    }
                    Watch::Rate(watch) => {
                        status.kind = "rate";
                        status.firing = watch.firing;
                        status.used = Some(watch.rate);
                        status.limit = Some(watch.bytes_per_second);
                        status.ratio = Some(watch.ratio());
                    }
                    Watch::Contacts(watch) => {
                        status.kind = "first_contact";
                        status.known_contacts = Some(watch.known());
                        status.learning_until = watch.learning(now).then_some(watch.learning_until);
                    }
                    Watch::Health { watch, measure } => {
                        status.kind = measure.key();
                        status.firing = watch.firing;
                        status.used = Some(watch.rate);
                        status.limit = Some(watch.bytes_per_second);
                        status.ratio = Some(watch.ratio());
                    }
                }
                status
            })
            .collect();
        self.board.publish(statuses);
    }
}

/// A health measure as a person reads it: a percentage, milliseconds, a count.
fn health_value(measure: HealthMeasure, value: f64) -> String {
    match measure {
        HealthMeasure::RetransmitRatio => format!("{:.2}% of its segments", value * 100.0),
        HealthMeasure::Rtt => format!("{:.1} ms", value / 1000.0),
        HealthMeasure::ConnectFailures => format!("{value:.0} times in an interval"),
    }
}

fn traffic_words(traffic: TrafficSide) -> &'static str {
    match traffic {
        TrafficSide::Both => "sent and received",
        TrafficSide::Sent => "sent",
        TrafficSide::Received => "received",
    }
}

impl Sink for Alerts {
    fn name(&self) -> &str {
        "alerts"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        for index in 0..self.rules.len() {
            self.evaluate(index, report);
        }
        self.publish(crate::store::seconds(report.end));
        Ok(())
    }
}
