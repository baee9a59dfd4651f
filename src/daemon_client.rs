//! The one client of a running daemon's API, for the commands that ask it (`top`,
//! `report`) before reading anything themselves.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DaemonClient {
    url: String,
    token: Option<String>,
}

impl DaemonClient {
    pub fn new(url: &str, token: Option<&str>) -> DaemonClient {
        DaemonClient {
            url: url.trim_end_matches('/').to_string(),
            token: token.map(String::from),
        }
    }

    /// `GET /api/v1/{path}` as JSON, within `timeout`.
    pub fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .build()
            .new_agent();
        let mut request = agent.get(&format!("{}/api/v1/{path}", self.url));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let text = request.call()?.body_mut().read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    /// The live view; also how a command learns whether a daemon answers there.
    pub fn live(&self) -> anyhow::Result<crate::sinks::live::LiveSnapshot> {
        self.get("live", Duration::from_secs(2))
    }

    pub fn describe(&self) -> &str {
        &self.url
    }
}
