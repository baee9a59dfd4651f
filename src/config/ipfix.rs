//! `[ipfix]`: flow records for an IPFIX collector (nfdump, pmacct, ntopng, Elastic).

use serde::Deserialize;

/// RFC 5612's enterprise number for documentation and examples: netgraph has none
/// registered, so its own information elements carry this one unless told otherwise.
pub const DEFAULT_ENTERPRISE_NUMBER: u32 = 32473;

#[derive(Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpfixConfig {
    /// The collector, "HOST:PORT".
    pub collector: String,
    #[serde(default)]
    pub transport: IpfixTransport,
    /// The Observation Domain ID in every message header.
    #[serde(default)]
    pub observation_domain: u32,
    /// The enterprise number of netgraph's own elements (process name, pid, ...).
    #[serde(default = "default_enterprise_number")]
    pub enterprise_number: u32,
}

#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum IpfixTransport {
    #[default]
    Udp,
    Tcp,
}

fn default_enterprise_number() -> u32 {
    DEFAULT_ENTERPRISE_NUMBER
}

impl IpfixConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        let collector = &self.collector;
        let port = collector
            .rsplit_once(':')
            .filter(|(host, _)| !host.trim_matches(['[', ']']).is_empty())
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|port| *port > 0);
        if port.is_none() {
            anyhow::bail!("[ipfix] collector = \"{collector}\" is no HOST:PORT: give the collector's address and port (nfcapd's -p, e.g. \"127.0.0.1:4739\")");
        }
        if self.enterprise_number == 0 {
            anyhow::bail!("[ipfix] enterprise_number = 0 marks no enterprise: give your organisation's number, or leave it out for {DEFAULT_ENTERPRISE_NUMBER}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> anyhow::Result<IpfixConfig> {
        let config: IpfixConfig = toml::from_str(toml)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn a_collector_and_its_transport() {
        let udp = config("collector = \"127.0.0.1:4739\"").unwrap();
        assert_eq!(udp.transport, IpfixTransport::Udp);
        assert_eq!(udp.enterprise_number, DEFAULT_ENTERPRISE_NUMBER);
        let tcp = config("collector = \"[::1]:4739\"\ntransport = \"tcp\"").unwrap();
        assert_eq!(tcp.transport, IpfixTransport::Tcp);
        for bad in [
            "collector = \"nfcapd\"",
            "collector = \":4739\"",
            "collector = \"host:0\"",
        ] {
            let error = config(bad).unwrap_err().to_string();
            assert!(error.contains("is no HOST:PORT"), "{bad}: {error}");
        }
        assert!(config("collector = \"h:1\"\ntransport = \"sctp\"").is_err());
    }
}
