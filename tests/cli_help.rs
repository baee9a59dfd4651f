//! The command line as a person meets it: every option of every command says what it
//! does, `top --help` lists its keys, and the manual pages are generated for each
//! command.

use std::process::Command;

fn netgraph(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_netgraph"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{args:?}");
    String::from_utf8(output.stdout).unwrap()
}

const COMMANDS: [&str; 6] = ["run", "top", "check", "report", "limit", "capture"];

#[test]
fn every_option_of_every_command_has_a_help_text() {
    for command in COMMANDS {
        let help = netgraph(&[command, "-h"]);
        let options = help
            .split("Options:")
            .nth(1)
            .unwrap_or_else(|| panic!("{command}: {help}"));
        for line in options.lines().filter(|l| l.trim_start().starts_with('-')) {
            // `  -c, --config <CONFIG>  Configuration file ...`: a flag, two spaces, text.
            let text = line.trim_start().split_once("  ").map(|(_, t)| t.trim());
            assert!(
                text.is_some_and(|t| !t.is_empty()),
                "netgraph {command}: an option without a help text: {line:?}"
            );
        }
    }
}

#[test]
fn top_help_lists_its_keys() {
    let help = netgraph(&["top", "--help"]);
    let keys = help.rsplit("Keys:\n").next().expect("a Keys section");
    for key in ["s, r, n", "m ", "i ", "p, Enter", "q, Esc"] {
        assert!(keys.contains(key), "{key:?} in {keys}");
    }
}

#[test]
fn a_manual_page_for_netgraph_and_each_command() {
    let dir = std::env::temp_dir().join(format!("netgraph-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    netgraph(&["man", dir.to_str().unwrap()]);
    for page in ["netgraph"]
        .into_iter()
        .map(String::from)
        .chain(COMMANDS.iter().map(|c| format!("netgraph-{c}")))
    {
        let text = std::fs::read_to_string(dir.join(format!("{page}.1"))).unwrap();
        assert!(text.starts_with(".ie"), "{page}: roff");
        assert!(text.contains(&format!(".TH {page} 1")), "{page}: {text}");
    }
    // The packaging command is not a page of its own.
    assert!(!dir.join("netgraph-man.1").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
