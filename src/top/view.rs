//! Draws `top`: a header with the source and keys, the table, the totals.

use super::app::{App, Mode, Sort};
use crate::sinks::live::LiveRow;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;

const LIMIT_WIDTH: u16 = 16;

fn human(bytes: f64, rate: bool) -> String {
    let suffix = if rate { "/s" } else { "" };
    format!("{}{suffix}", crate::units::human(bytes, 1))
}

/// A smoothed RTT for a person: milliseconds; empty where none is known.
fn rtt(us: Option<u32>) -> String {
    us.map(|us| format!("{:.1}ms", f64::from(us) / 1000.0))
        .unwrap_or_default()
}

/// The container, as `namespace/pod/container` in a pod; empty outside containers.
fn container_column(row: &LiveRow) -> String {
    match (&row.namespace, &row.pod, &row.container) {
        (Some(namespace), Some(pod), Some(container)) => format!("{namespace}/{pod}/{container}"),
        (_, _, Some(container)) => container.clone(),
        _ => String::new(),
    }
}

/// A program's path within `width` columns: cut from the left, so that the program's
/// own name, at the end, stays in sight.
fn fit_path(path: &str, width: usize) -> String {
    let chars = path.chars().count();
    if chars <= width || width == 0 {
        return path.to_string();
    }
    let kept: String = path.chars().skip(chars - (width - 1)).collect();
    format!("…{kept}")
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
        "s sent · r received · n name · m rate/total · i interface · ↑↓ select · p peers · q quit",
        Style::new().fg(Color::DarkGray),
    );
    frame.render_widget(Paragraph::new(vec![status, keys]), header);
    if app.showing_peers.is_some() {
        draw_peers(frame, app, table, footer);
        return;
    }

    let rate = app.mode == Mode::Rate;
    // The LIMIT column only where limits are in force: the program's path keeps the room.
    let limits = !app.limits.is_empty();
    let mut widths = vec![
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Min(20),
        Constraint::Length(20),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(6),
    ];
    if limits {
        widths.push(Constraint::Length(LIMIT_WIDTH));
    }
    // What the program's column gets: the table's inside less the fixed columns and
    // the one-column gaps between all of them.
    let fixed: u16 = widths
        .iter()
        .map(|width| match width {
            Constraint::Length(length) => *length,
            _ => 0,
        })
        .sum();
    let program_width = usize::from(
        table
            .width
            .saturating_sub(2 + fixed + widths.len() as u16 - 1)
            .max(20),
    );
    let visible = app.visible();
    let selected = app.selected.min(visible.len().saturating_sub(1));
    let rows = visible.iter().enumerate().map(|(index, row)| {
        let (sent, recv) = app.values(row);
        let mut style = if row.attributed {
            Style::new()
        } else {
            Style::new().fg(Color::DarkGray)
        };
        let cursor = if index == selected {
            style = style.add_modifier(Modifier::REVERSED);
            ">"
        } else {
            " "
        };
        let mut cells = vec![
            format!(
                "{cursor}{}",
                row.pid.map(|p| p.to_string()).unwrap_or_default()
            ),
            row.uid.map(|u| u.to_string()).unwrap_or_default(),
            fit_path(row.exe.as_deref().unwrap_or(&row.name), program_width),
            container_column(row),
            row.interface.clone(),
            human(sent, rate),
            human(recv, rate),
            rtt(row.rtt_us),
            // Retransmitted segments: this interval's, or all since start.
            match (rate, row.retransmits, row.retransmits_total) {
                (true, 0, _) | (false, _, 0) => String::new(),
                (true, last, _) => last.to_string(),
                (false, _, total) => total.to_string(),
            },
        ];
        if limits {
            cells.push(app.limit_of(row));
        }
        Row::new(cells).style(style)
    });
    let mut header = vec![
        " PID",
        "UID",
        "PROGRAM",
        "CONTAINER",
        "DEV",
        "SENT",
        "RECEIVED",
        "RTT",
        "RETR",
    ];
    if limits {
        header.push("LIMIT");
    }
    let header_row = Row::new(header).style(Style::new().add_modifier(Modifier::BOLD));
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

/// The selected series' peers over the last interval (rates: peers are per interval).
fn draw_peers(
    frame: &mut Frame,
    app: &App,
    table: ratatui::layout::Rect,
    footer: ratatui::layout::Rect,
) {
    let Some((name, _, interface, container)) = &app.showing_peers else {
        return;
    };
    let peers = app.shown_peers();
    let rows = peers.iter().map(|peer| {
        Row::new(vec![
            peer.peer.clone(),
            peer.peer_name.clone().unwrap_or_default(),
            peer.service.clone().unwrap_or_default(),
            human(peer.sent_rate, true),
            human(peer.recv_rate, true),
            rtt(peer.rtt_us),
            match peer.retransmits {
                0 => String::new(),
                retransmits => retransmits.to_string(),
            },
        ])
    });
    let widths = [
        Constraint::Length(40),
        Constraint::Min(24),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(6),
    ];
    let header_row = Row::new(["PEER", "NAME", "SERVICE", "SENT", "RECEIVED", "RTT", "RETR"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let within = container
        .as_deref()
        .map(|c| format!(" in {c}"))
        .unwrap_or_default();
    let title = format!(" peers of {name}{within} on {interface} · p or Esc: back ");
    frame.render_widget(
        Table::new(rows, widths)
            .header(header_row)
            .block(Block::bordered().title(title)),
        table,
    );
    let note = if app.peers.is_empty() {
        "no peers: the daemon runs without [peers] enabled = true".to_string()
    } else {
        format!("{} peers in the last interval", peers.len())
    };
    frame.render_widget(Paragraph::new(note), footer);
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
            peers: Vec::new(),
            ..LiveSnapshot::default()
        }));
        render(&app)
    }

    fn render(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 12)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        buffer
            .content()
            .chunks(buffer.area.width as usize)
            .map(|line| line.iter().map(|cell| cell.symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn a_limited_process_shows_its_limit_and_whether_it_holds() {
        let mut app = App::new("test".into());
        let row = |name: &str| LiveRow {
            name: name.into(),
            interface: "eth0".into(),
            attributed: true,
            sent_rate: 2_500_000.0,
            ..LiveRow::default()
        };
        app.update(Ok(LiveSnapshot {
            interval_seconds: 1.0,
            processes: vec![row("restic"), row("curl")],
            limits: vec![crate::sinks::live::LiveLimit {
                name: "backup".into(),
                process: Some("restic".into()),
                holding: true,
                ..Default::default()
            }],
            ..LiveSnapshot::default()
        }));
        let shown = render(&app);
        assert!(shown.contains("LIMIT"), "{shown}");
        let restic = shown.lines().find(|l| l.contains("restic")).unwrap();
        assert!(restic.contains("backup (held)"), "{shown}");
        let curl = shown.lines().find(|l| l.contains("curl")).unwrap();
        assert!(!curl.contains("backup"), "{shown}");
    }

    #[test]
    fn long_paths_keep_the_programs_name_in_sight() {
        assert_eq!(fit_path("/usr/bin/curl", 20), "/usr/bin/curl");
        assert_eq!(
            fit_path("/tmp/netgraph-lab-220740/ng-top", 12),
            "…0740/ng-top"
        );
        let mut app = App::new("test".into());
        app.update(Ok(LiveSnapshot {
            interval_seconds: 1.0,
            processes: vec![LiveRow {
                name: "ng-top".into(),
                exe: Some(format!("/tmp/{}ng-top", "deep/".repeat(20))),
                interface: "eth0".into(),
                attributed: true,
                sent_rate: 1000.0,
                ..LiveRow::default()
            }],
            limits: vec![crate::sinks::live::LiveLimit {
                name: "capped".into(),
                process: Some("ng-top".into()),
                ..Default::default()
            }],
            ..LiveSnapshot::default()
        }));
        let shown = render(&app);
        let row = shown.lines().find(|l| l.contains("capped")).unwrap();
        assert!(
            row.contains("…deep/") && row.contains("deep/ng-top "),
            "{shown}"
        );
    }

    #[test]
    fn no_limit_column_without_limits() {
        let shown = screen(vec![LiveRow {
            name: "curl".into(),
            interface: "eth0".into(),
            attributed: true,
            ..LiveRow::default()
        }]);
        assert!(!shown.contains("LIMIT"), "{shown}");
    }

    #[test]
    fn rtt_and_retransmissions_have_columns() {
        let shown = screen(vec![
            LiveRow {
                name: "backup".into(),
                interface: "eth0".into(),
                attributed: true,
                sent_rate: 5000.0,
                rtt_us: Some(42_500),
                retransmits: 7,
                retransmits_total: 90,
                ..LiveRow::default()
            },
            LiveRow {
                name: "dnsmasq".into(),
                interface: "eth0".into(),
                attributed: true,
                sent_rate: 100.0,
                ..LiveRow::default()
            },
        ]);
        assert!(shown.contains("RTT") && shown.contains("RETR"), "{shown}");
        let backup = shown.lines().find(|l| l.contains("backup")).unwrap();
        assert!(
            backup.contains("42.5ms") && backup.contains(" 7 "),
            "{shown}"
        );
        let dns = shown.lines().find(|l| l.contains("dnsmasq")).unwrap();
        assert!(!dns.contains("ms"), "no RTT where none is known: {shown}");
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

    #[test]
    fn p_shows_the_selected_process_peers_and_esc_goes_back() {
        use ratatui::crossterm::event::{KeyCode, KeyEvent};
        let row = |name: &str, sent_rate: f64| LiveRow {
            name: name.into(),
            interface: "eth0".into(),
            attributed: true,
            sent_rate,
            ..LiveRow::default()
        };
        let peer =
            |name: &str, address: &str, peer_name: Option<&str>| crate::sinks::live::LivePeer {
                name: name.into(),
                interface: "eth0".into(),
                peer: address.into(),
                peer_name: peer_name.map(String::from),
                service: Some("443/tcp".into()),
                sent_rate: 2000.0,
                ..Default::default()
            };
        let mut app = App::new("test".into());
        app.update(Ok(LiveSnapshot {
            time: 0,
            interval_seconds: 1.0,
            processes: vec![row("curl", 9000.0), row("rsync", 5000.0)],
            peers: vec![
                peer("curl", "192.0.2.7", Some("files.example.org")),
                peer("rsync", "192.0.2.9", Some("backup.example.org")),
            ],
            ..LiveSnapshot::default()
        }));
        // Sorted by sent: curl first; down selects rsync.
        assert!(app.key(KeyEvent::from(KeyCode::Down)));
        assert!(app.key(KeyEvent::from(KeyCode::Char('p'))));
        let shown = render(&app);
        assert!(shown.contains("peers of rsync"), "{shown}");
        assert!(
            shown.contains("backup.example.org") && shown.contains("443/tcp"),
            "{shown}"
        );
        assert!(!shown.contains("files.example.org"), "{shown}");
        assert!(
            app.key(KeyEvent::from(KeyCode::Esc)),
            "Esc leaves the peers, not top"
        );
        let shown = render(&app);
        assert!(shown.contains("PROGRAM") && shown.contains(">"), "{shown}");
        assert!(!app.key(KeyEvent::from(KeyCode::Esc)));
    }
}
