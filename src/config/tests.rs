use super::*;

fn parse(text: &str) -> anyhow::Result<Config> {
    let path = std::env::temp_dir().join(format!(
        "netgraph-config-{}-{}.toml",
        std::process::id(),
        text.len()
    ));
    std::fs::write(&path, text).unwrap();
    let result = Config::load(&path);
    let _ = std::fs::remove_file(&path);
    result
}

/// The commented-out section that starts at `marker`, uncommented (up to a line of
/// its own, a bare `#` or a blank line).
fn uncommented(sample: &str, marker: &str) -> String {
    sample
        .lines()
        .skip_while(|l| *l != marker)
        .take_while(|l| l.starts_with("# ") && !l.starts_with("# ---"))
        .map(|l| format!("{}\n", &l[2..]))
        .collect()
}

#[test]
fn the_sample_configuration_is_the_defaults_until_uncommented() {
    let sample = include_str!("../../examples/netgraph.toml");
    // As shipped it asks for no database and no listener, so `check` passes on a host
    // that has none.
    let config = parse(sample).unwrap();
    assert!(config.influxdb.is_empty());
    assert!(config.prometheus.is_none());
    let influx = parse(&uncommented(sample, "# [[influxdb]]")).unwrap();
    assert_eq!(influx.influxdb.len(), 1);
    assert_eq!(influx.influxdb[0].api(), InfluxApi::V1);
    let prometheus = parse(&uncommented(sample, "# [prometheus]")).unwrap();
    assert_eq!(
        prometheus.prometheus.unwrap().listen.to_string(),
        "127.0.0.1:9810"
    );
}

#[test]
fn the_sample_ipfix_section_is_valid_and_turns_peers_on() {
    let sample = include_str!("../../examples/netgraph.toml");
    let config = parse(&uncommented(sample, "# [ipfix]")).unwrap();
    let ipfix = config.ipfix.as_ref().unwrap();
    assert_eq!(ipfix.collector, "127.0.0.1:4739");
    assert!(
        config.peers.enabled,
        "records are made of the per-peer accounting"
    );
    let Err(error) = parse("[ipfix]\ncollector = \"collector.example\"\n") else {
        panic!("a collector without a port was taken");
    };
    let error = format!("{error:#}");
    assert!(error.contains("is no HOST:PORT"), "{error}");
}

#[test]
fn the_sample_otlp_section_is_valid_and_its_peers_turn_peers_on() {
    let sample = include_str!("../../examples/netgraph.toml");
    let section = uncommented(sample, "# [otlp]");
    let config = parse(&section).unwrap();
    let otlp = config.otlp.as_ref().unwrap();
    assert_eq!(otlp.url(), "http://127.0.0.1:4318/v1/metrics");
    assert_eq!(otlp.headers["Authorization"], "Bearer TOKEN");
    assert!(!config.peers.enabled, "no peer series, no peer accounting");
    let with_peers = parse(&section.replace("peers = 0", "peers = 500")).unwrap();
    assert!(with_peers.peers.enabled, "peer series are made of it");
}

#[test]
fn the_sample_peers_section_is_valid_once_uncommented() {
    let sample = include_str!("../../examples/netgraph.toml");
    let section: String = sample
        .lines()
        .skip_while(|l| *l != "# [peers]")
        .take_while(|l| l.starts_with("# ") && !l.starts_with("# ---"))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    let config = parse(&section).unwrap();
    assert!(config.peers.enabled);
    assert_eq!(config.peers.names, [NameSource::Dns]);
    assert_eq!(
        config.peers.retention,
        std::time::Duration::from_secs(90 * 86_400)
    );
    let all = parse("[peers]\nenabled = true\nnames = [\"dns\", \"sni\", \"reverse\"]\n").unwrap();
    assert!([NameSource::Dns, NameSource::Sni, NameSource::Reverse]
        .iter()
        .all(|source| all.peers.names_from(*source)));
}

#[test]
fn the_sample_alerts_section_is_valid_once_uncommented() {
    let sample = include_str!("../../examples/netgraph.toml");
    let section: String = sample
        .lines()
        .skip_while(|l| *l != "# [alerts]")
        .take_while(|l| l.starts_with("# ") && !l.starts_with("# ---"))
        .map(|l| format!("{}\n", &l[2..]))
        .collect();
    // first_contact = "peer" needs the peers.
    let config = parse(&format!("{section}[peers]\nenabled = true\n")).unwrap();
    let kinds: Vec<_> = config
        .alerts
        .rules
        .iter()
        .map(|r| r.kind().unwrap())
        .collect();
    use crate::config::alerts::{ContactBy, QuotaPeriod, RuleKind};
    assert_eq!(
        kinds,
        [
            RuleKind::Quota {
                limit: 20_000_000_000,
                per: QuotaPeriod::Month
            },
            RuleKind::Quota {
                limit: 5_000_000_000,
                per: QuotaPeriod::Day
            },
            RuleKind::Rate {
                bytes_per_second: 10_000_000.0,
                held: std::time::Duration::from_secs(300)
            },
            RuleKind::FirstContact {
                by: ContactBy::Peer,
                learning: std::time::Duration::from_secs(7 * 86_400)
            },
        ]
    );
    let error = format!("{:#}", parse(&section).err().unwrap());
    assert!(error.contains("[peers] enabled = true"), "{error}");
}

#[test]
fn broken_configurations_say_where_and_what() {
    let cases = [
        ("hostname = \n", "line 1"),
        ("[[influxdb]]\nurll = \"x\"\n", "line 2, column 1: key `urll`: unknown field"),
        ("[[influxdb]]\nurll = \"x\"\n", "(did you mean `url`?)"),
        ("[[influxdb]]\nurl = \"ftp://x\"\napi = \"v1\"\ndatabase = \"d\"\n", "must start with http"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v9\"\n", "unknown variant `v9`"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v2\"\nbucket = \"b\"\n", "needs org"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v1\"\n", "needs database"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v1\"\ndatabase = \"d\"\norg = \"o\"\n", "api V1 does not take org"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\npassword = \"p\"\n", "api V2 does not take password"),
        ("[[influxdb]]\nurl = \"http://x\"\napi = \"v1\"\ndatabase = \"d\"\nflush_interval = \"often\"\n", "flush_interval"),
        ("[prometheus]\nlisten = \"not an address\"\n", "invalid socket address"),
        ("[geoip]\ndatabase = \"/nonexistent/GeoLite2-Country.mmdb\"\n", "cannot open the GeoIP database /nonexistent/GeoLite2-Country.mmdb"),
        ("[geoip]\ndatabse = \"x.mmdb\"\n", "(did you mean `database`?)"),
        ("[peers]\nnames = [\"dnss\"]\n", "unknown variant `dnss`, expected one of `dns`, `sni`, `reverse`"),
        ("[peers]\nretention = \"forever\"\n", "retention"),
        ("[report]\nbilling_day = 31\n", "billing_day = 31: give a day from 1 to 28"),
    ];
    for (text, expected) in cases {
        let error = parse(text)
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            error.contains(expected),
            "{text:?}: {error:?} lacks {expected:?}"
        );
        assert!(!error.contains('\n'), "one line: {error:?}");
    }
}

#[test]
fn secrets_come_from_files_and_the_environment() {
    let file = std::env::temp_dir().join(format!("netgraph-secret-{}", std::process::id()));
    std::fs::write(&file, "s3cret\n").unwrap();
    let text = format!(
        "[[influxdb]]\nurl = \"http://x\"\napi = \"v1\"\ndatabase = \"d\"\npassword_file = \"{}\"\n\
         [[influxdb]]\nurl = \"http://x\"\napi = \"v2\"\norg = \"o\"\nbucket = \"b\"\ntoken_env = \"NETGRAPH_TEST_TOKEN_UNSET\"\n",
        file.display()
    );
    // A variable that is not set is a configuration error, found at load.
    let error = parse(&text).err().map(|e| format!("{e:#}")).unwrap();
    assert!(
        error.contains("NETGRAPH_TEST_TOKEN_UNSET is not set"),
        "{error}"
    );
    let config = parse(&text.replace("NETGRAPH_TEST_TOKEN_UNSET", "PATH")).unwrap();
    assert_eq!(
        config.influxdb[0]
            .password()
            .unwrap()
            .as_ref()
            .map(Secret::expose),
        Some("s3cret")
    );
    let _ = std::fs::remove_file(&file);
}

/// The original's sample, as its README shows it (inline `;` comments included).
const ORIGINAL_INI: &str = "[net_graph]
interfaces = eth0, enp34s0          ; comma-separated capture devices
geo_database = ./GeoLite2-Country.mmdb
sampling_rate_ms = 100
[influx_db]
bucket = netgraph
org = home
token = s3cr3t-token
url = http://influx.example:8086
write_buffer_size = 100
";

#[test]
fn the_original_ini_is_read_and_mapped() {
    // Its GeoIP database path is relative: taken from the file's directory.
    let dir = std::env::temp_dir().join(format!("netgraph-ini-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    crate::geo::write_test_database(
        &dir.join("GeoLite2-Country.mmdb"),
        &["203.0.113.0/24=DE:Germany"],
    );
    let path = dir.join("config.ini");
    std::fs::write(&path, ORIGINAL_INI).unwrap();
    let config = Config::load(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let geoip = config.geoip.as_ref().expect("geo_database mapped");
    assert_eq!(geoip.database, dir.join("./GeoLite2-Country.mmdb"));
    assert!(!geoip.countries_per_process);
    assert_eq!(
        config.interfaces,
        Some(vec!["eth0".to_string(), "enp34s0".to_string()])
    );
    assert_eq!(config.interval, Some(Duration::from_secs(1)));
    let sink = &config.influxdb[0];
    assert_eq!(sink.api(), InfluxApi::V2);
    assert_eq!(sink.url, "http://influx.example:8086");
    let InfluxTarget::V2 { org, bucket, .. } = &sink.target else {
        panic!("not v2: {:?}", sink.target);
    };
    assert_eq!(org, "home");
    assert_eq!(bucket, "netgraph");
    assert_eq!(
        sink.token().unwrap().as_ref().map(Secret::expose),
        Some("s3cr3t-token")
    );
    assert_eq!(sink.batch_lines, 100);
}

#[test]
fn the_original_ini_with_empty_values_names_what_is_missing() {
    let empty = "[net_graph]\ninterfaces = eth0\n[influx_db]\nbucket =\norg =\ntoken =\nurl = http://x:8086\n";
    let error = parse(empty).err().map(|e| format!("{e:#}")).unwrap();
    assert!(error.contains("needs org"), "{error}");
}

#[test]
fn engine_and_interval_come_from_the_file() {
    let config = parse("engine = \"capture\"\ninterval = \"10s\"\nloopback = false\n").unwrap();
    assert_eq!(config.engine, Some(EngineSetting::Capture));
    assert_eq!(config.interval, Some(Duration::from_secs(10)));
    assert_eq!(config.loopback, Some(false));
    let error = parse("interval = \"10ms\"\n")
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(error.contains("at least 100ms"), "{error}");
}

#[test]
fn a_log_level_is_checked_when_read() {
    assert_eq!(
        parse("log_level = \"netgraph=debug\"\n")
            .unwrap()
            .log_level
            .as_deref(),
        Some("netgraph=debug")
    );
    let error = parse("log_level = \"loud==\"\n")
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(error.contains("log_level"), "{error}");
}

#[test]
fn a_ca_file_that_is_no_certificate_is_refused_when_read() {
    let file = std::env::temp_dir().join(format!("netgraph-ca-{}", std::process::id()));
    std::fs::write(&file, "not a certificate\n").unwrap();
    let error = parse(&format!(
        "[[influxdb]]\nurl = \"https://localhost:8086\"\napi = \"v1\"\ndatabase = \"x\"\nca_file = {:?}\n",
        file.display().to_string()
    ))
    .err()
    .map(|e| format!("{e:#}"))
    .unwrap();
    std::fs::remove_file(&file).unwrap();
    let text = error;
    assert!(text.contains("not a PEM certificate"), "{text}");
}

#[test]
fn peers_per_process_is_bounded() {
    assert!(!parse("").unwrap().peers.enabled, "off by default");
    let peers = parse("[peers]\nenabled = true\n").unwrap().peers;
    assert!(peers.enabled);
    assert_eq!(peers.per_process, 20);
    let error = parse("[peers]\nper_process = 0\n")
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap();
    assert!(error.contains("between 1 and 1000"), "{error}");
}
