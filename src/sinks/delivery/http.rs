//! One POST of a batch, and what of the server's answer a verdict is made from.

use std::time::SystemTime;

/// What the server answered, as far as a verdict needs it.
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    /// At most `ANSWER_LIMIT` bytes of it: a reason, never data.
    pub body: Vec<u8>,
    pub at: SystemTime,
}

const ANSWER_LIMIT: u64 = 64 * 1024;

/// Sends the batch; an error is that no answer came (unreachable, timed out).
pub fn post(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    body: &[u8],
) -> Result<Answer, ureq::Error> {
    let mut response = request.send(body)?;
    let retry_after = response
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .body_mut()
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_vec()
        .unwrap_or_default();
    Ok(Answer {
        status: response.status().as_u16(),
        retry_after,
        body,
        at: SystemTime::now(),
    })
}

/// A server's reason on one log line: control characters and runs of whitespace made
/// single spaces, cut at `max_chars`.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let printable: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .filter(|c| *c != char::REPLACEMENT_CHARACTER)
        .collect();
    let mut text = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(cut) = text.char_indices().nth(max_chars).map(|(i, _)| i) {
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() {
        "no reason given".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_reason_is_one_printable_line_cut_at_its_limit() {
        assert_eq!(one_line("bad\n\tline\u{0}  here", 100), "bad line here");
        assert_eq!(one_line("äöü and more", 3), "äöü…");
        assert_eq!(one_line(" \n ", 10), "no reason given");
    }
}
