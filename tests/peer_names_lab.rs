//! Names for peers, on both engines, against nftables truth (needs root): from the DNS
//! answers each process received (over UDP and TCP, CNAME chains, two names on one
//! address), from TLS ClientHellos, and from reverse DNS when configured. dnsmasq in
//! `b` is the lab's DNS server.

mod lab;

use lab::dns::LabDns;
use lab::engines::{for_both_engines, settle, EngineUnderTest};
use lab::*;
use serde_json::Value;
use std::time::Duration;

for_both_engines!(
    names_are_those_each_process_looked_up,
    answers_to_no_query_name_nothing,
    server_names_from_client_hellos,
    server_names_on_loopback,
    reverse_names_when_configured,
    names_outlive_a_restart,
);

/// The peer rows of process `name` with `peer_address` and `service`.
fn peer_rows<'a>(records: &'a Records, name: &str, address: &str, service: &str) -> Vec<&'a Value> {
    records
        .of_type("peer")
        .filter(|l| l["name"] == name && l["peer_address"] == address && l["service"] == service)
        .collect()
}

fn sum(rows: &[&Value], field: &str) -> u64 {
    rows.iter().map(|r| r[field].as_u64().unwrap()).sum()
}

/// Every row is named `expected`.
fn assert_named(rows: &[&Value], expected: &str) {
    assert!(!rows.is_empty(), "no peer rows for {expected}");
    for row in rows {
        assert_eq!(row["peer_name"], expected, "{row}");
    }
}

/// The rows of a process that looked `expected` up while other processes looked up
/// other names for the same address. The eBPF engine knows which process each answer
/// reached: every row carries the process's own name. The capture engine cannot tell
/// (the resolver's socket is closed before its owner can be looked up): it names the
/// address after its latest answer, so the rows start with the process's own name and
/// may take another of the address's names after another process's lookup.
fn assert_named_as_looked_up(
    engine: EngineUnderTest,
    rows: &[&Value],
    expected: &str,
    names: &[&str],
) {
    match engine {
        EngineUnderTest::Ebpf => assert_named(rows, expected),
        EngineUnderTest::Capture => {
            assert_eq!(
                rows.first().map(|r| &r["peer_name"]),
                Some(&Value::from(expected)),
                "{rows:?}"
            );
            for row in rows {
                assert!(names.iter().any(|n| row["peer_name"] == *n), "{row}");
            }
        }
    }
}

/// Four processes each look a name up with the system resolver, then move data: a
/// download from `files`, an upload to `backup` (IPv6, its lookup over TCP), an upload
/// to `www` (a CNAME to `files`) and one to `mirror` (a second name for `files`'
/// address, looked up while the download runs). Each process's peer carries the name
/// it looked up, and the bytes nftables counted, near and far.
fn names_are_those_each_process_looked_up(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[
        ("files_in", "input", "tcp sport 6101"),
        ("backup_out", "output", "tcp dport 6102"),
        ("www_out", "output", "tcp dport 6103"),
        ("mirror_out", "output", "tcp dport 6104"),
    ]);
    let b = lab.b.clone();
    lab.truth_in(
        &b,
        &[
            ("files_left", "output", "tcp sport 6101"),
            ("backup_arrived", "input", "tcp dport 6102"),
        ],
    );
    let query_log = lab.path("dnsmasq-queries.log");
    let _dns = LabDns::start(
        &lab,
        &[
            // A CNAME's target must be a name dnsmasq holds a record of.
            format!("--host-record=files.lab.test,{B4}"),
            format!("--host-record=mirror.lab.test,{B4}"),
            format!("--host-record=backup.lab.test,{B6}"),
            "--cname=www.lab.test,files.lab.test".into(),
            "--log-queries".into(),
            format!("--log-facility={}", query_log.display()),
        ],
    );
    lab.serve(&b, "ng-source", &["tcp-source", &format!("{B4}:6101"), "3"]);
    lab.serve(&b, "ng-sink6", &["tcp-sink", &format!("[{B6}]:6102")]);
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6103")]);
    lab.serve(&b, "ng-sink2", &["tcp-sink", &format!("{B4}:6104")]);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);

    let download = lab.spawn(
        &lab.a,
        "ng-files",
        &["tcp-recv", "files.lab.test:6101", "read"],
    );
    std::thread::sleep(Duration::from_millis(800));
    // `use-vc`: glibc asks over TCP.
    lab.exec_with_env(
        &lab.a,
        "ng-backup",
        &["tcp-send", "backup.lab.test:6102", "1s"],
        &[("RES_OPTIONS", "use-vc")],
    );
    lab.exec(&lab.a, "ng-www", &["tcp-send", "www.lab.test:6103", "1s"]);
    lab.exec(
        &lab.a,
        "ng-mirror",
        &["tcp-send", "mirror.lab.test:6104", "1s"],
    );
    let output = download.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    settle();
    let records = netgraph.stop();
    records.assert_conservation();

    let names_of_b4 = ["files.lab.test", "www.lab.test", "mirror.lab.test"];
    let files = peer_rows(&records, "ng-files", B4, "6101/tcp");
    assert_named_as_looked_up(engine, &files, "files.lab.test", &names_of_b4);
    engine.assert_share(
        "peer files.lab.test (its own UDP answer), received",
        sum(&files, "recv_bytes_last"),
        lab.truth_bytes("files_in"),
    );
    engine.assert_share(
        "peer files.lab.test, received (far end's count)",
        sum(&files, "recv_bytes_last"),
        lab.truth_bytes_in(&b, "files_left"),
    );
    let backup = peer_rows(&records, "ng-backup", B6, "6102/tcp");
    assert_named(&backup, "backup.lab.test");
    engine.assert_share(
        "peer backup.lab.test (AAAA over TCP DNS), sent",
        sum(&backup, "sent_bytes_last"),
        lab.truth_bytes("backup_out"),
    );
    engine.assert_share(
        "peer backup.lab.test, sent (far end's count)",
        sum(&backup, "sent_bytes_last"),
        lab.truth_bytes_in(&b, "backup_arrived"),
    );
    // A CNAME chain names the address as the process asked.
    let www = peer_rows(&records, "ng-www", B4, "6103/tcp");
    assert_named_as_looked_up(engine, &www, "www.lab.test", &names_of_b4);
    engine.assert_share(
        "peer www.lab.test (a CNAME to files), sent",
        sum(&www, "sent_bytes_last"),
        lab.truth_bytes("www_out"),
    );
    // Two names for one address: each process keeps the one it looked up.
    let mirror = peer_rows(&records, "ng-mirror", B4, "6104/tcp");
    assert_named(&mirror, "mirror.lab.test");
    engine.assert_share(
        "peer mirror.lab.test (files' address, another name), sent",
        sum(&mirror, "sent_bytes_last"),
        lab.truth_bytes("mirror_out"),
    );

    let queries = std::fs::read_to_string(&query_log).unwrap_or_default();
    assert!(
        queries.contains("files.lab.test"),
        "dnsmasq logs queries:\n{queries}"
    );
    assert!(
        !queries.contains("in-addr.arpa") && !queries.contains("ip6.arpa"),
        "netgraph asked reverse DNS by default:\n{queries}"
    );
}

/// Anyone on the host can send a packet from port 53: a TCP connection from port 53 to
/// an ordinary service and a datagram from port 53, each carrying an "answer" that names
/// `b`'s address, before and after a real lookup of it through dnsmasq. Only the real
/// lookup names the address; the spoofed names appear nowhere.
fn answers_to_no_query_name_nothing(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    let _dns = LabDns::start(&lab, &[format!("--host-record=files.lab.test,{B4}")]);
    let (a, b) = (lab.a.clone(), lab.b.clone());
    lab.serve(&a, "ng-service", &["tcp-sink", "127.0.0.1:7070"]);
    lab.serve(
        &a,
        "ng-service-udp",
        &["udp-sink", "127.0.0.1:7071", "recv"],
    );
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6103")]);
    lab.serve(&b, "ng-sink2", &["tcp-sink", &format!("{B4}:6104")]);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    let spoof = |round: &str| {
        for (transport, service) in [("tcp", "127.0.0.1:7070"), ("udp", "127.0.0.1:7071")] {
            let name = format!("spoofed-by-{transport}-{round}.example");
            lab.exec(
                &a,
                "ng-spoofer",
                &["dns-spoof", transport, "127.0.0.3:53", service, &name, B4],
            );
        }
    };
    spoof("before");
    lab.exec(&a, "ng-files", &["tcp-send", "files.lab.test:6103", "2s"]);
    spoof("after");
    // By address: no lookup of its own, so at most the name of the real lookup.
    lab.exec(&a, "ng-direct", &["tcp-send", &format!("{B4}:6104"), "2s"]);
    settle();
    let records = netgraph.stop();

    let spoofed: Vec<&Value> = records
        .of_type("peer")
        .filter(|l| {
            l["peer_name"]
                .as_str()
                .is_some_and(|n| n.contains("spoofed"))
        })
        .collect();
    let files = peer_rows(&records, "ng-files", B4, "6103/tcp");
    let direct = peer_rows(&records, "ng-direct", B4, "6104/tcp");
    report(&format!(
        "{engine:?}: 4 unsolicited answers (TCP and UDP from port 53) around a real lookup: \
         {} rows named by them; the lookup's process named {:?}, a process by address {:?}",
        spoofed.len(),
        files.first().map(|r| &r["peer_name"]),
        direct.last().map(|r| &r["peer_name"]),
    ));
    assert!(spoofed.is_empty(), "{spoofed:?}");
    assert_named(&files, "files.lab.test");
    assert!(!direct.is_empty(), "no rows for the process by address");
}

/// An HTTPS server in `ns` on `address`:6443 (a self-signed certificate for
/// secure.lab.test) serving `big.bin`, 2 MiB; stopped when dropped.
fn serve_tls(lab: &Lab, ns: &str, address: &str) -> KillOnDrop {
    let site = lab.path("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("big.bin"), vec![7u8; 2 << 20]).unwrap();
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=secure.lab.test",
            "-keyout",
            site.join("key.pem").to_str().unwrap(),
            "-out",
            site.join("cert.pem").to_str().unwrap(),
        ],
    );
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "openssl", "s_server", "-WWW", "-quiet"])
        .args([
            "-accept",
            &format!("{address}:6443"),
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
        ])
        .current_dir(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    KillOnDrop(server)
}

/// curl in `a` downloads big.bin from secure.lab.test, given as `address` (no DNS
/// lookup), paced to take about two seconds: the capture engine must find curl's socket
/// in /proc while curl lives, and a loaded CI host can let a millisecond-long curl exit
/// first.
fn download_by_address(lab: &Lab, address: &str) {
    let resolve = format!("secure.lab.test:6443:{address}");
    run(
        "ip",
        &[
            "netns",
            "exec",
            &lab.a,
            "curl",
            "-sSfk",
            "--limit-rate",
            "1M",
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "https://secure.lab.test:6443/big.bin",
        ],
    );
}

/// A TLS client with no DNS lookup (the address is given): the server name of its
/// ClientHello names the peer, with `names = ["sni"]`.
fn server_names_from_client_hellos(engine: EngineUnderTest) {
    let lab = Lab::new();
    lab.truth(&[("tls_in", "input", "tcp sport 6443")]);
    lab.truth_in(&lab.b, &[("tls_left", "output", "tcp sport 6443")]);
    let _server = serve_tls(&lab, &lab.b, B4);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\nnames = [\"sni\"]\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    download_by_address(&lab, B4);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let rows = peer_rows(&records, "curl", B4, "6443/tcp");
    assert_named(&rows, "secure.lab.test");
    engine.assert_share(
        "peer secure.lab.test (from the ClientHello), received",
        sum(&rows, "recv_bytes_last"),
        lab.truth_bytes("tls_in"),
    );
    engine.assert_share(
        "peer secure.lab.test, received (far end's count)",
        sum(&rows, "recv_bytes_last"),
        lab.truth_bytes_in(&lab.b, "tls_left"),
    );
}

/// The same on loopback: a ClientHello to 127.0.0.1 names that address for the process
/// that sent it (a loopback address means something else to every process), on both
/// engines; the server's side of the connection stays unnamed.
fn server_names_on_loopback(engine: EngineUnderTest) {
    let lab = Lab::new();
    let _server = serve_tls(&lab, &lab.a, "127.0.0.1");
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\nnames = [\"sni\"]\n").unwrap();
    let netgraph = engine.start(&lab, &["--config", config.to_str().unwrap()]);
    download_by_address(&lab, "127.0.0.1");
    settle();
    let records = netgraph.stop();
    let rows = peer_rows(&records, "curl", "127.0.0.1", "6443/tcp");
    report(&format!(
        "{engine:?}: a ClientHello on loopback names 127.0.0.1 for curl: {:?}",
        rows.first().map(|r| &r["peer_name"])
    ));
    assert_named(&rows, "secure.lab.test");
    let server_side: Vec<&Value> = records
        .of_type("peer")
        .filter(|l| l["name"] == "openssl" && l["peer_name"] == "secure.lab.test")
        .collect();
    assert!(server_side.is_empty(), "{server_side:?}");
}

/// With `names = ["reverse"]`, an address no process looked up is named by its PTR
/// record (netgraph runs in `a`, whose resolver is the lab's dnsmasq).
fn reverse_names_when_configured(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    lab.truth(&[("out", "output", "tcp dport 6105")]);
    lab.truth_in(&lab.b.clone(), &[("arrived", "input", "tcp dport 6105")]);
    let _dns = LabDns::start(&lab, &[format!("--host-record=far.lab.test,{B4}")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6105")]);
    let config = lab.path("peers.toml");
    std::fs::write(&config, "[peers]\nenabled = true\nnames = [\"reverse\"]\n").unwrap();
    let engine_name = match engine {
        EngineUnderTest::Capture => "capture",
        EngineUnderTest::Ebpf => "ebpf",
    };
    let netgraph = lab.netgraph(&[
        "--engine",
        engine_name,
        "--config",
        config.to_str().unwrap(),
    ]);
    lab.exec(&lab.a, "ng-far", &["tcp-send", &format!("{B4}:6105"), "3s"]);
    settle();
    let records = netgraph.stop();
    records.assert_conservation();
    let rows = peer_rows(&records, "ng-far", B4, "6105/tcp");
    let named: Vec<&&Value> = rows
        .iter()
        .filter(|r| r["peer_name"] == "far.lab.test")
        .collect();
    // The first interval may pass before the answer comes; after it, every one is named.
    let first_named = rows.iter().position(|r| r["peer_name"] == "far.lab.test");
    assert!(
        first_named.is_some_and(|at| at <= 2),
        "not named by reverse DNS: {rows:?}"
    );
    assert_eq!(named.len(), rows.len() - first_named.unwrap(), "{rows:?}");
    engine.assert_share(
        "peer by address, named by reverse DNS, sent",
        sum(&rows, "sent_bytes_last"),
        lab.truth_bytes("out"),
    );
    engine.assert_share(
        "peer by address, named by reverse DNS, sent (far end's count)",
        sum(&rows, "sent_bytes_last"),
        lab.truth_bytes_in(&lab.b, "arrived"),
    );
}

/// A process looks a name up and sends for eight seconds; netgraph restarts (on one
/// state directory, its store on) while it sends, so the second run never sees the
/// lookup. Both runs name the peer as looked up: the store kept the name.
fn names_outlive_a_restart(engine: EngineUnderTest) {
    let mut lab = Lab::new();
    let _dns = LabDns::start(&lab, &[format!("--host-record=files.lab.test,{B4}")]);
    let b = lab.b.clone();
    lab.serve(&b, "ng-sink", &["tcp-sink", &format!("{B4}:6106")]);
    let state = lab.path("state");
    let config = lab.path("peers.toml");
    std::fs::write(
        &config,
        format!(
            "state_directory = \"{}\"\n[peers]\nenabled = true\n",
            state.display()
        ),
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let first = engine.start(&lab, &args);
    let sender = lab.spawn(
        &lab.a,
        "ng-files",
        &["tcp-send", "files.lab.test:6106", "8s"],
    );
    std::thread::sleep(Duration::from_secs(3));
    let before = first.stop();
    let second = engine.start(&lab, &args);
    let output = sender.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    settle();
    let log = second.log();
    assert!(
        log.contains("peer names from the previous run taken up"),
        "{log}"
    );
    let after = second.stop();
    let sent = |records: &Records| {
        let rows = peer_rows(records, "ng-files", B4, "6106/tcp");
        assert_named(&rows, "files.lab.test");
        sum(&rows, "sent_bytes_last")
    };
    let (sent_before, sent_after) = (sent(&before), sent(&after));
    report(&format!(
        "{engine:?}: a lookup before a restart names the peer after it: {sent_before} bytes before, {sent_after} after, all named files.lab.test"
    ));
    assert!(sent_after > 0, "no traffic after the restart");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
