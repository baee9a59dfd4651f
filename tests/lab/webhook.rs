//! A webhook receiver on the host's loopback: records every JSON document POSTed to it,
//! and can answer the first few requests with 503 (to see the sender retry).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Webhook {
    pub url: String,
    received: Arc<Mutex<Vec<Value>>>,
    /// Requests answered 503 so far.
    pub refused: Arc<AtomicUsize>,
}

impl Webhook {
    /// Answers the first `refuse` requests 503 Service Unavailable.
    pub fn start(refuse: usize) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(AtomicUsize::new(0));
        let (documents, refusals) = (received.clone(), refused.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or_default();
                let post = line.starts_with("POST /hook ");
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let refuse = refusals.load(Ordering::SeqCst) < refuse;
                let status = if refuse {
                    refusals.fetch_add(1, Ordering::SeqCst);
                    "503 Service Unavailable"
                } else {
                    if post {
                        let document = serde_json::from_slice(&body)
                            .unwrap_or_else(|e| panic!("the webhook got no JSON ({e}): {body:?}"));
                        documents.lock().unwrap().push(document);
                    }
                    "204 No Content"
                };
                let mut stream = reader.into_inner();
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Webhook {
            url,
            received,
            refused,
        }
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// The documents of `rule`, in the order they came.
    pub fn of_rule(&self, rule: &str) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|d| d["rule"] == rule)
            .collect()
    }

    /// Waits until `rule` has `count` documents (or fails after `timeout`).
    pub fn wait_for(&self, rule: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let documents = self.of_rule(rule);
            if documents.len() >= count {
                return documents;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook got {} of {count} notices of {rule} in {timeout:?}: {:?}",
                documents.len(),
                self.received()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
