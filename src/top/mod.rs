//! `netgraph top`: a live terminal view like nethogs, reading the running daemon's live
//! view, or the in-process pipeline's when no daemon runs.

mod app;
mod view;

use crate::sinks::live::{LiveSnapshot, SharedLive};
use app::App;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use std::time::{Duration, Instant};

pub enum Source {
    /// A running daemon's `/api/v1/live`.
    Daemon { url: String, token: Option<String> },
    /// netgraph's own pipeline, running in this process.
    Local(SharedLive),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Daemon { url, .. } => format!("daemon at {url}"),
            Source::Local(_) => "counting by itself (no daemon)".into(),
        }
    }

    fn snapshot(&self) -> anyhow::Result<LiveSnapshot> {
        match self {
            Source::Local(shared) => Ok(crate::locks::read(shared).clone()),
            Source::Daemon { url, token } => fetch_live(url, token.as_deref()),
        }
    }
}

/// Reads a daemon's live view; also how `top` learns whether a daemon runs.
pub fn fetch_live(url: &str, token: Option<&str>) -> anyhow::Result<LiveSnapshot> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .new_agent();
    let mut request = agent.get(&format!("{}/api/v1/live", url.trim_end_matches('/')));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let text = request.call()?.body_mut().read_to_string()?;
    Ok(serde_json::from_str(&text)?)
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
