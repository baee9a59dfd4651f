//! Real servers for the export tests, from Debian's packages, started on loopback (or in
//! a lab namespace) on free ports in a scratch directory, and stopped when dropped.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agent(ca: Option<&Path>) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        let certificate = ureq::tls::Certificate::from_pem(&pem).unwrap();
        config = config.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&[certificate]))
                .build(),
        );
    }
    config.build().new_agent()
}

fn get(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    Some((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Process { child, log }
    }

    fn stop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A certificate authority and a server certificate for 127.0.0.1, made with openssl.
pub struct Certificates {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certificates(dir: &Path) -> Certificates {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "openssl {args:?} failed");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=netgraph test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("server.ext"),
        "-out",
        &p("server.pem"),
    ]);
    Certificates {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

#[derive(Default)]
pub struct InfluxOptions {
    pub auth: bool,
    pub tls: Option<Certificates>,
    pub max_body_size: Option<u64>,
    /// Run inside this network namespace, listening on this address instead of 127.0.0.1.
    pub namespace: Option<(String, String)>,
    /// Listen on every address (for namespaces linked to the host), still queried on
    /// 127.0.0.1.
    pub listen_all: bool,
}

/// InfluxDB 1.6 (`influxd`), the v1 API.
pub struct Influx {
    process: Option<Process>,
    dir: PathBuf,
    config: PathBuf,
    pub url: String,
    options: InfluxOptions,
    /// Admin credentials for queries when auth is on.
    pub admin: Option<(String, String)>,
}

impl Influx {
    pub fn start(dir: &Path, options: InfluxOptions) -> Influx {
        let dir = dir.join("influxdb");
        std::fs::create_dir_all(&dir).unwrap();
        let host = options
            .namespace
            .as_ref()
            .map_or("127.0.0.1".to_string(), |(_, address)| address.clone());
        let port = free_port();
        let tls = options.tls.as_ref();
        let config = format!(
            "reporting-enabled = false\nbind-address = \"127.0.0.1:{rpc}\"\n\
             [meta]\n  dir = \"{d}/meta\"\n\
             [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
             [monitor]\n  store-enabled = false\n\
             [http]\n  bind-address = \"{bind}:{port}\"\n  auth-enabled = {auth}\n  log-enabled = false\n\
               https-enabled = {https}\n  https-certificate = \"{cert}\"\n  https-private-key = \"{key}\"\n\
               max-body-size = {max_body}\n\
             [continuous_queries]\n  enabled = false\n[subscriber]\n  enabled = false\n",
            rpc = free_port(),
            bind = if options.listen_all { "0.0.0.0" } else { host.as_str() },
            d = dir.display(),
            auth = options.auth,
            https = tls.is_some(),
            cert = tls.map(|t| t.cert.display().to_string()).unwrap_or_default(),
            key = tls.map(|t| t.key.display().to_string()).unwrap_or_default(),
            max_body = options.max_body_size.unwrap_or(25_000_000),
        );
        let config_path = dir.join("influxdb.conf");
        std::fs::write(&config_path, config).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut influx = Influx {
            process: None,
            dir,
            config: config_path,
            url: format!("{scheme}://{host}:{port}"),
            options,
            admin: None,
        };
        influx.resume();
        if influx.options.auth {
            influx.query("CREATE USER admin WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES");
            influx.admin = Some(("admin".into(), "admin-pw".into()));
        }
        influx
    }

    /// Starts (again) on the same data.
    pub fn resume(&mut self) {
        let mut command = match &self.options.namespace {
            Some((ns, _)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "influxd"]);
                c
            }
            None => Command::new("influxd"),
        };
        command.args(["run", "-config"]).arg(&self.config);
        self.process = Some(Process::spawn(&mut command, self.dir.join("influxd.log")));
        let ping = format!("{}/ping", self.url);
        let agent = self.agent();
        let in_ns = self.options.namespace.clone();
        wait_until("influxd", Duration::from_secs(30), || match &in_ns {
            Some((ns, _)) => Command::new("ip")
                .args(["netns", "exec", ns, "curl", "-sf", &ping])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            None => get(&agent, &ping).is_some_and(|(status, _)| status == 204),
        });
    }

    /// Stops the server, keeping its data (an outage).
    pub fn pause(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    fn agent(&self) -> ureq::Agent {
        agent(self.options.tls.as_ref().map(|t| t.ca.as_path()))
    }

    /// Runs InfluxQL (as admin when auth is on); returns the JSON answer.
    pub fn query(&self, q: &str) -> Value {
        self.query_db("", q)
    }

    pub fn query_db(&self, db: &str, q: &str) -> Value {
        let form: Vec<(&str, &str)> = vec![("q", q), ("db", db), ("epoch", "ms")];
        let url = format!("{}/query", self.url);
        let text = match &self.options.namespace {
            Some((ns, _)) => {
                let mut args: Vec<String> = vec!["netns".into(), "exec".into(), ns.clone()];
                args.extend(["curl".into(), "-s".into(), url]);
                if let Some((user, password)) = &self.admin {
                    args.extend(["-u".into(), format!("{user}:{password}")]);
                }
                for (k, v) in &form {
                    args.extend(["--data-urlencode".into(), format!("{k}={v}")]);
                }
                let output = Command::new("ip").args(&args).output().unwrap();
                String::from_utf8_lossy(&output.stdout).into_owned()
            }
            None => {
                let mut request = self.agent().post(&url);
                if let Some((user, password)) = &self.admin {
                    use base64::Engine;
                    let pair = format!("{user}:{password}");
                    let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                    request = request.header("Authorization", format!("Basic {basic}"));
                }
                let mut response = request.send_form(form).unwrap();
                response.body_mut().read_to_string().unwrap()
            }
        };
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("influx answered {text:?} to {q}: {e}"));
        assert!(
            value["results"][0]["error"].is_null() && value["error"].is_null(),
            "{q}: {value}"
        );
        value
    }

    /// The first value of the first series, or 0 when there is none.
    pub fn scalar(&self, db: &str, q: &str) -> f64 {
        let value = self.query_db(db, q);
        value["results"][0]["series"][0]["values"][0][1]
            .as_f64()
            .unwrap_or(0.0)
    }

    /// Writes raw line protocol (as admin), for setting up conflicts.
    pub fn write_raw(&self, db: &str, body: &str) -> u16 {
        let mut url = format!("{}/write?db={db}", self.url);
        if let Some((u, p)) = &self.admin {
            url += &format!("&u={u}&p={p}");
        }
        self.agent()
            .post(&url)
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    }
}

/// VictoriaMetrics, for the v2 write path and PromQL.
pub struct VictoriaMetrics {
    _process: Process,
    pub url: String,
}

impl VictoriaMetrics {
    pub fn start(dir: &Path) -> VictoriaMetrics {
        Self::start_scraping(dir, None)
    }

    /// Also scrapes `target`'s /metrics every second, as a Prometheus would.
    pub fn start_scraping(dir: &Path, target: Option<&str>) -> VictoriaMetrics {
        Self::start_with(dir, target.as_slice(), "127.0.0.1")
    }

    /// Listening on `listen` (an address, or "" for every one), scraping `targets`;
    /// queried on 127.0.0.1.
    pub fn start_with(dir: &Path, targets: &[&str], listen: &str) -> VictoriaMetrics {
        let port = free_port();
        let data = dir.join("victoria-metrics");
        let mut command = Command::new("victoria-metrics");
        if !targets.is_empty() {
            let config = dir.join("vm-scrape.yml");
            std::fs::write(&config, scrape_config(&targets.join("', '"))).unwrap();
            command.arg(format!("-promscrape.config={}", config.display()));
            // The file is shared with Prometheus, whose evaluation_interval VM does not know.
            command.arg("-promscrape.config.strictParse=false");
        }
        command.args([
            format!("-storageDataPath={}", data.display()),
            format!("-httpListenAddr={listen}:{port}"),
            "-retentionPeriod=1d".into(),
            "-search.latencyOffset=1s".into(),
        ]);
        let log = dir.join("victoria-metrics.log");
        let (process, url) = start_ready("victoria-metrics", &mut command, log, port, "/health");
        VictoriaMetrics {
            _process: process,
            url,
        }
    }

    /// Every sample of the series matching `selector`, as (labels, values) per series.
    pub fn export(&self, selector: &str) -> Vec<Value> {
        let agent = agent(None);
        let _ = get(&agent, &format!("{}/internal/force_flush", self.url));
        let url = format!("{}/api/v1/export", self.url);
        let mut response = agent.post(&url).send_form([("match[]", selector)]).unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn query(&self, promql: &str) -> Value {
        instant_query(&self.url, promql)
    }
}

fn instant_query(base: &str, promql: &str) -> Value {
    let agent = agent(None);
    let mut response = agent
        .post(&format!("{base}/api/v1/query"))
        .send_form([("query", promql)])
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["status"], "success", "{promql}: {value}");
    value
}

/// Spawns a server on `port`, logging to `log`, and waits until GET `ready_path` is 200.
fn start_ready(
    what: &str,
    command: &mut Command,
    log: PathBuf,
    port: u16,
    ready_path: &str,
) -> (Process, String) {
    let process = Process::spawn(command, log);
    let url = format!("http://127.0.0.1:{port}");
    let ready = format!("{url}{ready_path}");
    let agent = agent(None);
    wait_until(what, Duration::from_secs(30), || {
        get(&agent, &ready).is_some_and(|(status, _)| status == 200)
    });
    (process, url)
}

fn scrape_config(target: &str) -> String {
    format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs: [{{job_name: netgraph, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
}

/// Prometheus scraping one target every second.
pub struct Prometheus {
    _process: Process,
    pub url: String,
}

impl Prometheus {
    pub fn start(dir: &Path, target: &str) -> Prometheus {
        Prometheus::start_with_rules(dir, target, None)
    }

    /// Also evaluating the alerting rules of `rules` every second.
    pub fn start_with_rules(dir: &Path, target: &str, rules: Option<&Path>) -> Prometheus {
        let dir = dir.join("prometheus");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        let mut text = scrape_config(target);
        if let Some(rules) = rules {
            text += &format!("rule_files: ['{}']\n", rules.display());
        }
        std::fs::write(&config, text).unwrap();
        let port = free_port();
        let mut command = Command::new("prometheus");
        command.args([
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]);
        let log = dir.join("prometheus.log");
        let (process, url) = start_ready("prometheus", &mut command, log, port, "/-/ready");
        Prometheus {
            _process: process,
            url,
        }
    }

    pub fn query(&self, promql: &str) -> Value {
        instant_query(&self.url, promql)
    }
}

/// One request as a scripted server saw it.
pub struct Request {
    pub at: Instant,
    pub head: Vec<String>,
    /// The body, gunzipped when it was sent gzip-compressed.
    pub body: String,
}

impl Request {
    pub fn has_header(&self, header: &str) -> bool {
        self.head.iter().any(|h| h.eq_ignore_ascii_case(header))
    }
}

/// An HTTP server on loopback that answers each request with the next of `answers`
/// (status line and headers), one request per connection; returns what it received.
/// Stands in for servers that cannot be installed here, or to provoke rare answers.
pub fn scripted_server(answers: Vec<&'static str>) -> (u16, std::thread::JoinHandle<Vec<Request>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                head.push(line.trim().to_string());
            }
            let at = Instant::now();
            let length: usize = head
                .iter()
                .find_map(|h| {
                    h.to_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .expect("a content length")
                .parse()
                .unwrap();
            let mut raw = vec![0; length];
            reader.read_exact(&mut raw).unwrap();
            let gzip = head
                .iter()
                .any(|h| h.eq_ignore_ascii_case("content-encoding: gzip"));
            let mut body = String::new();
            if gzip {
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut body)
                    .unwrap();
            } else {
                body = String::from_utf8(raw).unwrap();
            }
            let response = format!("{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            (&stream).write_all(response.as_bytes()).unwrap();
            requests.push(Request { at, head, body });
        }
        requests
    });
    (port, server)
}
