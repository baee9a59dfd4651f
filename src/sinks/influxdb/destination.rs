//! Sends a batch of line-protocol points to InfluxDB's write API, gzipped if asked.

use super::endpoint::Endpoint;
use super::verdict::classify;
use crate::sinks::delivery::{http, Destination, Verdict};
use std::io::Write;

pub struct InfluxDestination {
    pub endpoint: Endpoint,
    pub gzip: bool,
}

impl Destination for InfluxDestination {
    fn server(&self) -> &str {
        "InfluxDB"
    }

    fn items(&self) -> &str {
        "points"
    }

    fn send(&self, lines: &[String]) -> Verdict {
        let body = match self.body(lines) {
            Ok(body) => body,
            Err(error) => {
                return Verdict::Retry {
                    after: None,
                    message: format!("cannot compress a batch: {error}"),
                }
            }
        };
        let mut request = self
            .endpoint
            .agent
            .post(&self.endpoint.url)
            .header("Content-Type", "text/plain; charset=utf-8");
        if self.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        if let Some(authorization) = &self.endpoint.authorization {
            request = request.header("Authorization", authorization);
        }
        match http::post(request, &body) {
            Ok(answer) => classify(
                answer.status,
                answer.retry_after.as_deref(),
                &String::from_utf8_lossy(&answer.body),
                answer.at,
            ),
            Err(error) => Verdict::Retry {
                after: None,
                message: format!(
                    "cannot reach InfluxDB at {}: {error}; points are kept and retried",
                    self.endpoint.url.split('?').next().unwrap_or_default()
                ),
            },
        }
    }
}

impl InfluxDestination {
    fn body(&self, lines: &[String]) -> std::io::Result<Vec<u8>> {
        let size = lines.iter().map(String::len).sum();
        if !self.gzip {
            let mut body = Vec::with_capacity(size);
            for line in lines {
                body.extend_from_slice(line.as_bytes());
            }
            return Ok(body);
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(size / 4),
            flate2::Compression::fast(),
        );
        for line in lines {
            encoder.write_all(line.as_bytes())?;
        }
        encoder.finish()
    }
}
