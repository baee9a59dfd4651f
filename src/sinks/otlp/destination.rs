//! Sends spooled intervals to an OTLP/HTTP collector as one protobuf request: each line
//! is one interval's `ExportMetricsServiceRequest`, and protobuf's concatenation of
//! messages merges their repeated fields, so the intervals' bytes back to back are one
//! request with all their resource metrics.

use crate::sinks::delivery::{http, parse_retry_after, Destination, Verdict};
use base64::Engine;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use std::io::Write;
use std::time::SystemTime;

pub struct OtlpDestination {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    pub agent: ureq::Agent,
}

/// One interval's request as a spool line.
pub fn to_line(request: &[u8]) -> String {
    let mut line = base64::engine::general_purpose::STANDARD.encode(request);
    line.push('\n');
    line
}

impl Destination for OtlpDestination {
    fn server(&self) -> &str {
        "the OTLP collector"
    }

    fn items(&self) -> &str {
        "intervals"
    }

    fn send(&self, lines: &[String]) -> Verdict {
        let body = match self.body(lines) {
            Ok(body) => body,
            // Only a line damaged on disk gets here: sending it again cannot help.
            Err(message) => return Verdict::Rejected { message },
        };
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf");
        if self.gzip {
            request = request.header("Content-Encoding", "gzip");
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        match http::post(request, &body) {
            Ok(answer) => classify(
                answer.status,
                answer.retry_after.as_deref(),
                &answer.body,
                answer.at,
            ),
            Err(error) => Verdict::Retry {
                after: None,
                message: format!(
                    "cannot reach the OTLP collector at {}: {error}; intervals are kept and retried",
                    self.url
                ),
            },
        }
    }
}

impl OtlpDestination {
    fn body(&self, lines: &[String]) -> Result<Vec<u8>, String> {
        let mut request = Vec::new();
        for line in lines {
            base64::engine::general_purpose::STANDARD
                .decode_vec(line.trim_end(), &mut request)
                .map_err(|e| format!("a spooled interval is damaged ({e})"))?;
        }
        if !self.gzip {
            return Ok(request);
        }
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(request.len() / 4),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&request)
            .and_then(|()| encoder.finish())
            .map_err(|e| format!("cannot compress a request: {e}"))
    }
}

/// What the collector's answer means, as OTLP/HTTP's specification says: 400 is data it
/// will never take; 429, 502, 503 and 504 are worth a retry, after Retry-After; the
/// others (credentials, a wrong path) are kept and retried too, so fixing the collector
/// loses nothing.
fn classify(status: u16, retry_after: Option<&str>, body: &[u8], now: SystemTime) -> Verdict {
    let message = || server_message(body);
    match status {
        200..=299 => match ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|response| response.partial_success)
            .filter(|partial| partial.rejected_data_points > 0)
        {
            Some(partial) => Verdict::PartlyWritten {
                dropped: None,
                message: format!(
                    "{} data points rejected: {}",
                    partial.rejected_data_points, partial.error_message
                ),
            },
            None => Verdict::Written,
        },
        400 => Verdict::Rejected { message: message() },
        413 => Verdict::TooLarge,
        401 | 403 => Verdict::Retry {
            after: None,
            message: format!("the OTLP collector refused the credentials ({status}: {}); check [otlp] headers; intervals are kept and retried", message()),
        },
        404 => Verdict::Retry {
            after: None,
            message: format!("the OTLP collector has no such path (404: {}); check [otlp] endpoint (OTLP/HTTP takes /v1/metrics); intervals are kept and retried", message()),
        },
        _ => Verdict::Retry {
            after: retry_after.and_then(|value| parse_retry_after(value, now)),
            message: format!(
                "the OTLP collector answered {status}: {}; intervals are kept and retried",
                message()
            ),
        },
    }
}

/// A google.rpc.Status in protobuf, JSON or plain text: its readable part, on one line.
fn server_message(body: &[u8]) -> String {
    http::one_line(&String::from_utf8_lossy(body), 300)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
    use std::time::Duration;

    #[test]
    fn answers_as_the_specification_reads_them() {
        let now = SystemTime::now();
        assert_eq!(classify(200, None, b"", now), Verdict::Written);
        let partial = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "bad unit".into(),
            }),
        };
        let Verdict::PartlyWritten { message, .. } =
            classify(200, None, &partial.encode_to_vec(), now)
        else {
            panic!()
        };
        assert_eq!(message, "3 data points rejected: bad unit");
        assert!(
            matches!(classify(400, None, b"\x08\x03\x12\x07invalid", now), Verdict::Rejected { message } if message.contains("invalid"))
        );
        assert_eq!(classify(413, None, b"", now), Verdict::TooLarge);
        let Verdict::Retry { after, message } = classify(503, Some("7"), b"busy", now) else {
            panic!()
        };
        assert_eq!(after, Some(Duration::from_secs(7)));
        assert!(message.contains("503: busy"), "{message}");
        for status in [401, 404, 429, 500] {
            assert!(
                matches!(classify(status, None, b"", now), Verdict::Retry { .. }),
                "{status}"
            );
        }
    }

    #[test]
    fn spooled_intervals_concatenate_into_one_request() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
        use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
        let one = |schema: &str| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                schema_url: schema.into(),
                ..Default::default()
            }],
        };
        let destination = OtlpDestination {
            url: String::new(),
            headers: Vec::new(),
            gzip: false,
            agent: ureq::Agent::new_with_defaults(),
        };
        let lines = [
            to_line(&one("a").encode_to_vec()),
            to_line(&one("b").encode_to_vec()),
        ];
        let merged =
            ExportMetricsServiceRequest::decode(&destination.body(&lines).unwrap()[..]).unwrap();
        let schemas: Vec<&str> = merged
            .resource_metrics
            .iter()
            .map(|r| r.schema_url.as_str())
            .collect();
        assert_eq!(schemas, ["a", "b"]);
        let damaged = [String::from("not base64!\n")];
        assert!(destination.body(&damaged).unwrap_err().contains("damaged"));
    }
}
