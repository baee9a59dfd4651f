//! The original netgraph's INI configuration (`[net_graph]`, `[influx_db]`), read so
//! that an upgrade keeps working, with a warning that shows the TOML to migrate to.

use super::{Config, GeoipConfig, InfluxApi, InfluxConfig, InfluxFile};
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

/// Whether a file is in the original's format: `.ini`, or a `[net_graph]` section.
pub fn is_legacy(path: &Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "ini")
        || text
            .lines()
            .any(|l| l.trim() == "[net_graph]" || l.trim() == "[influx_db]")
}

/// Maps the original's options; returns the configuration and the TOML equivalent.
pub fn read(path: &Path, text: &str) -> anyhow::Result<(Config, String)> {
    let ini = ini::Ini::load_from_str(text)
        .with_context(|| format!("{}: not a valid INI file", path.display()))?;
    let get = |section: &str, key: &str| {
        ini.section(Some(section))
            .and_then(|s| s.get(key))
            .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut config = Config::default();
    let mut toml = String::from("# netgraph.toml, migrated from the original's INI\n");
    if let Some(interfaces) = get("net_graph", "interfaces") {
        let list: Vec<String> = interfaces
            .split(',')
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect();
        toml += &format!("interfaces = {list:?}\n");
        config.interfaces = Some(list);
    }
    if let Some(rate) = get("net_graph", "sampling_rate_ms") {
        let millis: u64 = rate.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}: [net_graph] sampling_rate_ms = {rate:?} is not a number of milliseconds",
                path.display()
            )
        })?;
        // The original wrote a point per refresh; one interval of at least 1 s keeps
        // the same sums without its duplicates.
        let interval = Duration::from_millis(millis).max(Duration::from_secs(1));
        toml += &format!("interval = \"{}\"\n", humantime::format_duration(interval));
        config.interval = Some(interval);
    }
    if let Some(database) = get("net_graph", "geo_database") {
        toml += &format!("\n[geoip]\ndatabase = {database:?}\n");
        config.geoip = Some(GeoipConfig {
            database: database.into(),
            countries_per_process: false,
        });
    }
    if let Some(url) = get("influx_db", "url") {
        let batch_lines = match get("influx_db", "write_buffer_size") {
            Some(size) => size.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: [influx_db] write_buffer_size = {size:?} is not a number",
                    path.display()
                )
            })?,
            None => 5000,
        };
        let (org, bucket) = (get("influx_db", "org"), get("influx_db", "bucket"));
        toml += &format!(
            "\n[[influxdb]]\nurl = {url:?}\napi = \"v2\"\norg = {:?}\nbucket = {:?}\ntoken = \"...\"\nbatch_lines = {batch_lines}\n",
            org.clone().unwrap_or_default(),
            bucket.clone().unwrap_or_default()
        );
        let file = InfluxFile {
            org,
            bucket,
            token: get("influx_db", "token"),
            batch_lines,
            ..InfluxFile::new(url.clone(), InfluxApi::V2)
        };
        let sink = InfluxConfig::try_from(file)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{}: [influx_db]", path.display()))?;
        config.influxdb.push(sink);
    }
    Ok((config, toml))
}
