//! Draws `top`: a header with the source and keys, the table, the totals.

use super::app::{App, Mode, Sort};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

fn human(bytes: f64, rate: bool) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < units.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let suffix = if rate { "/s" } else { "" };
    format!("{value:.1} {}{suffix}", units[unit])
}

pub fn draw(frame: &mut Frame, app: &App) {
    let [header, table, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let mode = match app.mode {
        Mode::Rate => "rate",
        Mode::Total => "total",
    };
    let sort = match app.sort {
        Sort::Sent => "sent",
        Sort::Received => "received",
        Sort::Name => "name",
    };
    let interface = app.interface.as_deref().unwrap_or("all");
    let status = match &app.error {
        Some(error) => Line::styled(format!("error: {error}"), Style::new().fg(Color::Red)),
        None => Line::raw(format!(
            "netgraph top · {} · mode: {mode} · sort: {sort} · interface: {interface}",
            app.source
        )),
    };
    let keys = Line::styled(
        "s sent · r received · n name · m rate/total · i interface · q quit",
        Style::new().fg(Color::DarkGray),
    );
    frame.render_widget(Paragraph::new(vec![status, keys]), header);

    let rate = app.mode == Mode::Rate;
    let visible = app.visible();
    let rows = visible.iter().map(|row| {
        let (sent, recv) = app.values(row);
        let style = if row.attributed {
            Style::new()
        } else {
            Style::new().fg(Color::DarkGray)
        };
        Row::new(vec![
            row.pid.map(|p| p.to_string()).unwrap_or_default(),
            row.uid.map(|u| u.to_string()).unwrap_or_default(),
            row.exe.clone().unwrap_or_else(|| row.name.clone()),
            row.interface.clone(),
            human(sent, rate),
            human(recv, rate),
        ])
        .style(style)
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Min(20),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(12),
    ];
    let header_row = Row::new(["PID", "UID", "PROGRAM", "DEV", "SENT", "RECEIVED"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Table::new(rows, widths)
            .header(header_row)
            .block(Block::bordered()),
        table,
    );
    let (sent, recv) = visible.iter().fold((0.0, 0.0), |(s, r), row| {
        let (a, b) = app.values(row);
        (s + a, r + b)
    });
    frame.render_widget(
        Paragraph::new(format!(
            "TOTAL  sent {}  received {}  ({} rows)",
            human(sent, rate),
            human(recv, rate),
            visible.len()
        )),
        footer,
    );
}
