//! Draws `top`: a header with the source and keys, the table, the totals.

use super::app::{App, Mode, Sort};
use crate::sinks::live::LiveRow;
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

/// The container, as `namespace/pod/container` in a pod; empty outside containers.
fn container_column(row: &LiveRow) -> String {
    match (&row.namespace, &row.pod, &row.container) {
        (Some(namespace), Some(pod), Some(container)) => format!("{namespace}/{pod}/{container}"),
        (_, _, Some(container)) => container.clone(),
        _ => String::new(),
    }
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
            container_column(row),
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
        Constraint::Length(20),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(12),
    ];
    let header_row = Row::new([
        "PID",
        "UID",
        "PROGRAM",
        "CONTAINER",
        "DEV",
        "SENT",
        "RECEIVED",
    ])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::live::LiveSnapshot;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn screen(rows: Vec<LiveRow>) -> String {
        let mut app = App::new("test".into());
        app.update(Ok(LiveSnapshot {
            time: 0,
            interval_seconds: 1.0,
            processes: rows,
        }));
        let mut terminal = Terminal::new(TestBackend::new(140, 12)).unwrap();
        terminal.draw(|frame| draw(frame, &app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        buffer
            .content()
            .chunks(buffer.area.width as usize)
            .map(|line| line.iter().map(|cell| cell.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn containers_and_pods_have_a_column() {
        let row = |name: &str, container: Option<&str>, pod: Option<&str>| LiveRow {
            name: name.into(),
            interface: "eth0".into(),
            attributed: true,
            container: container.map(String::from),
            pod: pod.map(String::from),
            namespace: pod.map(|_| "shop".to_string()),
            sent_rate: 1000.0,
            ..LiveRow::default()
        };
        let shown = screen(vec![
            row("nginx", Some("web"), None),
            row("api", Some("api"), Some("api-7d4b9")),
            row("sshd", None, None),
        ]);
        assert!(shown.contains("CONTAINER"), "{shown}");
        let line_of = |name: &str| {
            shown
                .lines()
                .find(|l| l.contains(name))
                .unwrap()
                .to_string()
        };
        assert!(line_of("nginx").contains(" web "), "{shown}");
        assert!(
            line_of("api-7d4b9").contains("shop/api-7d4b9/api"),
            "{shown}"
        );
    }
}
