//! What `top` shows and how keys change it.

use crate::sinks::live::{LiveLimit, LivePeer, LiveRow, LiveSnapshot};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sort {
    Sent,
    Received,
    Name,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Bytes per second over the last interval.
    Rate,
    /// Bytes since the source started counting.
    Total,
}

/// A series: process name, uid, interface, container.
pub type SeriesId = (String, Option<u32>, String, Option<String>);

pub struct App {
    pub source: String,
    pub sort: Sort,
    pub mode: Mode,
    /// Only this interface, or all.
    pub interface: Option<String>,
    /// Every series seen, with its latest rates (0 once idle) and totals.
    pub rows: BTreeMap<SeriesId, LiveRow>,
    /// The last interval's peers of every series.
    pub peers: Vec<LivePeer>,
    /// The bandwidth limits in force.
    pub limits: Vec<LiveLimit>,
    /// The row the cursor is on, among the visible ones.
    pub selected: usize,
    /// The series whose peers are shown instead of the table, if any.
    pub showing_peers: Option<SeriesId>,
    pub error: Option<String>,
}

impl App {
    /// The limit covering a row, as the LIMIT column shows it: its name, marked while
    /// it holds traffic back.
    pub fn limit_of(&self, row: &LiveRow) -> String {
        match self.limits.iter().find(|limit| limit.covers(row)) {
            Some(limit) if limit.holding => format!("{} (held)", limit.name),
            Some(limit) => limit.name.clone(),
            None => String::new(),
        }
    }
}

fn series_of(row: &LiveRow) -> SeriesId {
    (
        row.name.clone(),
        row.uid,
        row.interface.clone(),
        row.container.clone(),
    )
}

impl App {
    pub fn new(source: String) -> App {
        App {
            source,
            sort: Sort::Sent,
            mode: Mode::Rate,
            interface: None,
            rows: BTreeMap::new(),
            peers: Vec::new(),
            limits: Vec::new(),
            selected: 0,
            showing_peers: None,
            error: None,
        }
    }

    pub fn update(&mut self, snapshot: anyhow::Result<LiveSnapshot>) {
        match snapshot {
            Ok(snapshot) => {
                self.error = None;
                for row in self.rows.values_mut() {
                    row.sent_rate = 0.0;
                    row.recv_rate = 0.0;
                }
                for row in snapshot.processes {
                    self.rows.insert(series_of(&row), row);
                }
                self.peers = snapshot.peers;
                self.limits = snapshot.limits;
            }
            Err(error) => self.error = Some(format!("{error:#}")),
        }
    }

    /// Applies a key; false to quit.
    pub fn key(&mut self, key: KeyEvent) -> bool {
        match key.code {
            // Esc leaves the peers view first.
            KeyCode::Esc | KeyCode::Char('p') if self.showing_peers.is_some() => {
                self.showing_peers = None
            }
            KeyCode::Char('q') | KeyCode::Esc => return false,
            KeyCode::Down | KeyCode::Char('j') => self.selected = self.selected.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Char('p') | KeyCode::Enter => {
                self.showing_peers = self.selected_row().map(series_of)
            }
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return false,
            KeyCode::Char('s') => self.sort = Sort::Sent,
            KeyCode::Char('r') => self.sort = Sort::Received,
            KeyCode::Char('n') => self.sort = Sort::Name,
            KeyCode::Char('m') => {
                self.mode = match self.mode {
                    Mode::Rate => Mode::Total,
                    Mode::Total => Mode::Rate,
                }
            }
            KeyCode::Char('i') => self.interface = self.next_interface(),
            _ => {}
        }
        true
    }

    /// The row under the cursor (the cursor stays within the visible rows).
    pub fn selected_row(&self) -> Option<&LiveRow> {
        let visible = self.visible();
        visible
            .get(self.selected.min(visible.len().saturating_sub(1)))
            .copied()
    }

    /// The peers of the series being shown, largest first.
    pub fn shown_peers(&self) -> Vec<&LivePeer> {
        let Some((name, uid, interface, container)) = &self.showing_peers else {
            return Vec::new();
        };
        let mut peers: Vec<&LivePeer> = self
            .peers
            .iter()
            .filter(|p| {
                p.name == *name
                    && p.uid == *uid
                    && p.interface == *interface
                    && p.container == *container
            })
            .collect();
        peers.sort_by(|a, b| (b.sent_rate + b.recv_rate).total_cmp(&(a.sent_rate + a.recv_rate)));
        peers
    }

    fn interfaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.rows.keys().map(|k| k.2.clone()).collect();
        all.sort();
        all.dedup();
        all
    }

    /// Cycles all -> each interface -> all.
    fn next_interface(&self) -> Option<String> {
        let all = self.interfaces();
        match &self.interface {
            None => all.first().cloned(),
            Some(current) => all
                .iter()
                .position(|i| i == current)
                .and_then(|p| all.get(p + 1).cloned()),
        }
    }

    /// (sent, received) of a row in the current mode.
    pub fn values(&self, row: &LiveRow) -> (f64, f64) {
        match self.mode {
            Mode::Rate => (row.sent_rate, row.recv_rate),
            Mode::Total => (row.sent_total as f64, row.recv_total as f64),
        }
    }

    /// The rows to show, filtered and sorted; idle ones only in total mode.
    pub fn visible(&self) -> Vec<&LiveRow> {
        let mut rows: Vec<&LiveRow> = self
            .rows
            .values()
            .filter(|r| self.interface.as_ref().is_none_or(|i| *i == r.interface))
            .filter(|r| self.mode == Mode::Total || r.sent_rate + r.recv_rate > 0.0)
            .collect();
        match self.sort {
            Sort::Name => rows.sort_by(|a, b| a.name.cmp(&b.name)),
            Sort::Sent => rows.sort_by(|a, b| self.values(b).0.total_cmp(&self.values(a).0)),
            Sort::Received => rows.sort_by(|a, b| self.values(b).1.total_cmp(&self.values(a).1)),
        }
        rows
    }
}
