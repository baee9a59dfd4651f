//! `netgraph top`: a live terminal view like nethogs, reading the running daemon's live
//! view, or the in-process pipeline's when no daemon runs.

mod app;
mod view;

use crate::daemon_client::DaemonClient;
use crate::sinks::live::{LiveSnapshot, SharedLive};
use app::App;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use std::time::{Duration, Instant};

pub enum Source {
    /// A running daemon's `/api/v1/live`.
    Daemon(DaemonClient),
    /// netgraph's own pipeline, running in this process.
    Local(SharedLive),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Daemon(daemon) => format!("daemon at {}", daemon.describe()),
            Source::Local(_) => "counting by itself (no daemon)".into(),
        }
    }

    fn snapshot(&self) -> anyhow::Result<LiveSnapshot> {
        match self {
            Source::Local(shared) => Ok(crate::locks::read(shared).clone()),
            Source::Daemon(daemon) => daemon.live(),
        }
    }
}

const REFRESH: Duration = Duration::from_secs(1);

/// Runs until q (or Esc, or Ctrl-C) is pressed.
pub fn run(source: Source) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()
        .map_err(|e| anyhow::anyhow!("cannot use the terminal: {e}; run top in a terminal"))?;
    let result = event_loop(&mut terminal, &source);
    ratatui::restore();
    result
}

fn event_loop(terminal: &mut ratatui::DefaultTerminal, source: &Source) -> anyhow::Result<()> {
    let mut app = App::new(source.describe());
    let mut next_refresh = Instant::now();
    loop {
        if Instant::now() >= next_refresh {
            app.update(source.snapshot());
            next_refresh = Instant::now() + REFRESH;
        }
        terminal.draw(|frame| view::draw(frame, &app))?;
        let wait = next_refresh.saturating_duration_since(Instant::now());
        if event::poll(wait)? {
            if let Event::Key(key) = event::read()? {
                if key.kind == KeyEventKind::Press && !app.key(key) {
                    return Ok(());
                }
            }
        }
    }
}
