//! netgraph's page in headless Debian chromium (tests/browser/*.mjs).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Opens `url`, charts by `group`, finds `key` in the totals by `group` and clicks it;
/// returns what the page showed (see page.mjs). The screenshot goes to `screenshot`.
pub fn show(url: &str, group: &str, key: &str, screenshot: &Path) -> Value {
    run("page.mjs", &[url, group, key], screenshot)
}

/// Opens `url` and reads the usage view (see usage.mjs); the view's screenshot goes to
/// `screenshot`.
pub fn usage(url: &str, screenshot: &Path) -> Value {
    run("usage.mjs", &[url], screenshot)
}

/// Opens `url` as a new user in the first hour (see first_hour.mjs); the phone-sized
/// screenshot goes to `screenshot`.
pub fn first_hour(url: &str, screenshot: &Path) -> Value {
    run("first_hour.mjs", &[url], screenshot)
}

/// Opens `url` and reads the limit badges of the live list and the alert rules (see
/// limits.mjs), once process `name` shows one.
pub fn limits(url: &str, name: &str, screenshot: &Path) -> Value {
    run("limits.mjs", &[url, name], screenshot)
}

/// Runs a browser script with `args` and the screenshot's path; what it saw, which
/// must include no script error.
fn run(script: &str, args: &[&str], screenshot: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let output = Command::new("node")
        .arg(&script)
        .args(args)
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
