//! What InfluxDB's write API's answer means for the points sent, as the best clients
//! read it: malformed data is dropped (retrying cannot fix it), everything else is kept.

use crate::sinks::delivery::{http, parse_retry_after, Verdict};
#[cfg(test)]
use std::time::Duration;
use std::time::SystemTime;

pub fn classify(status: u16, retry_after: Option<&str>, body: &str, now: SystemTime) -> Verdict {
    let message = server_message(body);
    match status {
        200..=299 => Verdict::Written,
        400 if message.contains("partial write") => Verdict::PartlyWritten {
            dropped: dropped_count(&message),
            message,
        },
        400 | 422 => Verdict::Rejected { message },
        413 => Verdict::TooLarge,
        401 | 403 => Verdict::Retry {
            after: None,
            message: format!(
                "the server refused the credentials ({status}: {message}); check username/password or token and the write permission; points are kept and retried"
            ),
        },
        404 => Verdict::Retry {
            after: None,
            message: format!(
                "not found (404: {message}); create the database or bucket, or fix its name; points are kept and retried"
            ),
        },
        _ => Verdict::Retry {
            after: retry_after.and_then(|value| parse_retry_after(value, now)),
            message: format!("the server answered {status}: {message}; points are kept and retried"),
        },
    }
}

/// InfluxDB puts its reason in `{"error": ...}` (1.x), `{"message": ...}` (2.x, 3.x) or
/// plain text.
fn server_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = parsed.as_ref().and_then(|v| {
        ["error", "message"]
            .iter()
            .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_string))
    });
    let text = field.unwrap_or_else(|| body.trim().to_string());
    http::one_line(&text, 500)
}

/// 1.x says `partial write: ... dropped=N`.
fn dropped_count(message: &str) -> Option<u64> {
    let rest = &message[message.find("dropped=")? + "dropped=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn influxdb_answers_map_to_the_right_verdicts() {
        assert_eq!(classify(204, None, "", NOW), Verdict::Written);
        let partial =
            r#"{"error":"partial write: unable to parse 'x': invalid field format dropped=2"}"#;
        match classify(400, None, partial, NOW) {
            Verdict::PartlyWritten { dropped, message } => {
                assert_eq!(dropped, Some(2));
                assert!(message.starts_with("partial write"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            classify(400, None, r#"{"error":"unable to parse"}"#, NOW),
            Verdict::Rejected {
                message: "unable to parse".into()
            }
        );
        assert!(matches!(
            classify(422, None, r#"{"message":"bad"}"#, NOW),
            Verdict::Rejected { .. }
        ));
        assert_eq!(classify(413, None, "", NOW), Verdict::TooLarge);
        for status in [401, 403, 404, 500] {
            assert!(matches!(
                classify(status, None, "", NOW),
                Verdict::Retry { after: None, .. }
            ));
        }
    }

    #[test]
    fn retry_after_is_honoured_in_both_forms() {
        let seconds = classify(429, Some("7"), "", NOW);
        assert!(
            matches!(seconds, Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
        );
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let date = classify(503, Some("Wed, 21 Oct 2015 07:28:30 GMT"), "", now);
        assert!(
            matches!(date, Verdict::Retry { after: Some(d), .. } if d == Duration::from_secs(30))
        );
        let garbage = classify(503, Some("soon"), "", now);
        assert!(matches!(garbage, Verdict::Retry { after: None, .. }));
    }
}
