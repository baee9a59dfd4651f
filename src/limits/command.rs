//! `netgraph limit list`: the limits the running daemon enforces, whether each is
//! holding traffic back now, and what each held back since the daemon started.

use crate::daemon_client::DaemonClient;
use crate::sinks::live::LiveLimit;
use crate::units::{bits_per_second, bytes};
use std::fmt::Write;

#[derive(clap::Args)]
pub struct LimitArgs {
    #[command(subcommand)]
    pub action: LimitAction,
}

#[derive(clap::Subcommand)]
pub enum LimitAction {
    /// The limits in force: rate, state, the rate let through now and what each held
    /// back since the daemon started.
    List {
        /// The daemon's web address.
        #[arg(long, default_value = "http://127.0.0.1:9800")]
        url: String,
        /// The daemon's web token, if it has one.
        #[arg(long, env = "NETGRAPH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// One JSON object per limit instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: LimitArgs) -> anyhow::Result<()> {
    let LimitAction::List { url, token, json } = args.action;
    let daemon = DaemonClient::new(&url, token.as_deref());
    let live = daemon.live().map_err(|error| {
        anyhow::anyhow!(
            "no netgraph daemon answers at {} ({error}); start it (systemctl start netgraph) or give --url",
            daemon.describe()
        )
    })?;
    if json {
        for limit in &live.limits {
            println!("{}", serde_json::to_string(limit)?);
        }
    } else {
        print!("{}", table(&live.limits));
    }
    Ok(())
}

fn table(limits: &[LiveLimit]) -> String {
    if limits.is_empty() {
        return "no limits configured ([[limits]] in the configuration)\n".into();
    }
    let rows: Vec<[String; 9]> = limits
        .iter()
        .map(|limit| {
            let rate = |limit: Option<u64>| limit.map_or("-".into(), |r| bits_per_second(r as f64));
            [
                limit.name.clone(),
                limit.scope.clone(),
                rate(limit.egress_limit),
                rate(limit.ingress_limit),
                if limit.holding { "holding" } else { "idle" }.into(),
                bits_per_second(limit.sent_rate),
                bits_per_second(limit.recv_rate),
                bytes(limit.sent_held_total),
                bytes(limit.recv_held_total),
            ]
        })
        .collect();
    let header = [
        "LIMIT", "SCOPE", "EGRESS", "INGRESS", "STATE", "OUT NOW", "IN NOW", "HELD OUT", "HELD IN",
    ];
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    let mut line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_of_limits_with_their_state() {
        let limit = LiveLimit {
            name: "uploads".into(),
            scope: "process restic".into(),
            egress_limit: Some(2_500_000),
            ingress_limit: None,
            holding: true,
            sent_rate: 2_500_000.0,
            recv_rate: 0.0,
            sent_held_rate: 100.0,
            recv_held_rate: 0.0,
            sent_held_total: 1_234_567,
            recv_held_total: 0,
            process: Some("restic".into()),
            ..LiveLimit::default()
        };
        let text = table(&[limit]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("LIMIT"), "{text}");
        assert!(lines[1].contains("uploads"), "{text}");
        assert!(lines[1].contains("process restic"), "{text}");
        assert!(lines[1].contains("20.0 Mbit/s"), "{text}");
        assert!(lines[1].contains("holding"), "{text}");
        assert!(lines[1].contains("1.23 MB"), "{text}");
        assert_eq!(
            table(&[]),
            "no limits configured ([[limits]] in the configuration)\n"
        );
    }
}
