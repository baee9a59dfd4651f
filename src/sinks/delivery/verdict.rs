//! What a server's answer means for a batch: settled (written, or refused for good)
//! or kept to be sent again.

use std::time::{Duration, SystemTime};

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Written,
    /// The server stored the good lines and refused `dropped` others (InfluxDB answers 400
    /// "partial write"); `dropped` is `None` when it did not say how many.
    PartlyWritten {
        dropped: Option<u64>,
        message: String,
    },
    /// Malformed data (400, 422): dropped.
    Rejected {
        message: String,
    },
    /// 413: the same points in smaller requests.
    TooLarge,
    /// Kept and sent again after `after` (from `Retry-After`) or the backoff.
    Retry {
        after: Option<Duration>,
        message: String,
    },
}

/// `Retry-After` is either seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}
