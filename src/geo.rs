//! GeoIP: names the countries at the ends of traffic from a MaxMind database
//! (GeoLite2/GeoIP2 Country or City, or any database with a `country` record).

use crate::traffic::Ends;
use maxminddb::geoip2;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Addresses whose country is remembered; the cache starts over beyond this.
const MAX_CACHED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {reason}; point [geoip] database at a MaxMind .mmdb file (such as GeoLite2-Country.mmdb) or remove [geoip]")]
pub struct GeoError {
    path: PathBuf,
    reason: String,
}

pub struct Geo {
    reader: maxminddb::Reader<Vec<u8>>,
    names: HashMap<IpAddr, Arc<str>>,
    /// Whether each process's traffic is also broken down by remote country.
    pub per_process: bool,
}

impl Geo {
    pub fn open(path: &Path, per_process: bool) -> Result<Geo, GeoError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| GeoError {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Geo {
            reader,
            names: HashMap::new(),
            per_process,
        })
    }

    /// The database's type and build date, for logs and `netgraph check`.
    pub fn describe(&self) -> String {
        let metadata = self.reader.metadata();
        let built = std::time::UNIX_EPOCH + std::time::Duration::from_secs(metadata.build_epoch);
        format!(
            "{} built {}",
            metadata.database_type,
            humantime::format_rfc3339_seconds(built)
        )
    }

    /// The name of unattributed traffic, after the original: `<near>-<far>`, such as
    /// `local-Germany` for this host talking to an address in Germany.
    pub fn unattributed_name(&mut self, ends: &Ends) -> String {
        let near = if ends.near_is_host {
            Arc::from("local")
        } else {
            self.country(ends.near)
        };
        format!("{near}-{}", self.country(ends.far))
    }

    /// The country's English name; `local` for loopback, `private` for addresses
    /// that are not routed on the internet, `unknown` when the database has none.
    pub fn country(&mut self, ip: IpAddr) -> Arc<str> {
        let ip = crate::traffic::canonical_ip(ip);
        if let Some(name) = self.names.get(&ip) {
            return name.clone();
        }
        let name: Arc<str> = self.look_up(ip).into();
        if self.names.len() >= MAX_CACHED {
            self.names.clear();
        }
        self.names.insert(ip, name.clone());
        name
    }

    fn look_up(&self, ip: IpAddr) -> String {
        if ip.is_loopback() {
            return "local".into();
        }
        let record = self
            .reader
            .lookup(ip)
            .and_then(|result| result.decode::<geoip2::Country>());
        if let Ok(Some(record)) = record {
            for country in [&record.country, &record.registered_country] {
                if let Some(name) = country.names.english.or(country.iso_code) {
                    return name.to_string();
                }
            }
        }
        if is_private(ip) {
            "private".into()
        } else {
            "unknown".into()
        }
    }
}

/// Addresses that never leave a site: RFC 1918, CGNAT, link-local, unique local.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Writes a test database with Debian's libmaxmind-db-writer-perl (as CI installs it).
#[cfg(test)]
pub(crate) fn write_test_database(path: &Path, entries: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/geoip/write_database.pl");
    let output = std::process::Command::new("perl")
        .arg(script)
        .arg(path)
        .args(entries)
        .output()
        .expect("perl runs");
    assert!(
        output.status.success(),
        "cannot write the test GeoIP database (apt-get install libmaxmind-db-writer-perl): {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_named_like_the_original() {
        let dir = std::env::temp_dir().join(format!("netgraph-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("test.mmdb");
        write_test_database(
            &path,
            &["203.0.113.0/24=DE:Germany", "2001:db8:1::/48=FR:France"],
        );
        let mut geo = Geo::open(&path, true).unwrap();
        let ends = |near: &str, far: &str, near_is_host| Ends {
            near: near.parse().unwrap(),
            far: far.parse().unwrap(),
            near_is_host,
            service: None,
        };
        let name = |geo: &mut Geo, e| geo.unattributed_name(&e);
        assert_eq!(
            name(&mut geo, ends("10.0.0.5", "203.0.113.9", true)),
            "local-Germany"
        );
        assert_eq!(
            name(&mut geo, ends("fd00::5", "2001:db8:1::7", true)),
            "local-France"
        );
        // Forwarded: neither end is the host.
        assert_eq!(
            name(&mut geo, ends("192.168.1.20", "203.0.113.9", false)),
            "private-Germany"
        );
        assert_eq!(
            name(&mut geo, ends("10.0.0.5", "198.51.100.1", true)),
            "local-unknown"
        );
        assert_eq!(
            name(&mut geo, ends("127.0.0.1", "127.0.0.1", true)),
            "local-local"
        );
        assert_eq!(
            &*geo.country("::ffff:203.0.113.1".parse().unwrap()),
            "Germany"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn private_ranges_are_recognised() {
        for private in [
            "10.1.2.3",
            "192.168.0.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "100.128.0.1", "2001:db8::1"] {
            assert!(!is_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_missing_database_names_the_file_and_the_fix() {
        let error = Geo::open(Path::new("/nonexistent/GeoLite2-Country.mmdb"), false)
            .err()
            .expect("no such file");
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/GeoLite2-Country.mmdb"),
            "{message}"
        );
        assert!(message.contains("[geoip] database"), "{message}");
    }
}
