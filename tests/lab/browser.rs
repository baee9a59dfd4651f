//! netgraph's page in headless Debian chromium (tests/browser/page.mjs).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Opens `url`, charts by `group`, finds `key` in the totals by `group` and clicks it;
/// returns what the page showed (see page.mjs). The screenshot goes to `screenshot`.
pub fn show(url: &str, group: &str, key: &str, screenshot: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/page.mjs");
    let output = Command::new("node")
        .arg(&script)
        .args([url, group, key])
        .arg(screenshot)
        .output()
        .expect("node runs (scripts/test.sh installs nodejs and playwright-core)");
    assert!(
        output.status.success(),
        "browser: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "no script errors");
    seen
}

/// Opens `url` and reads the usage view (see usage.mjs); the view's screenshot goes to
/// `screenshot`.
pub fn usage(url: &str, screenshot: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/usage.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(url)
        .arg(screenshot)
        .output()
        .expect("node runs (scripts/test.sh installs nodejs and playwright-core)");
    assert!(
        output.status.success(),
        "browser: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["errors"], serde_json::json!([]), "no script errors");
    seen
}
