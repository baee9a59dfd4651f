//! The packages as packaging/packages.sh builds them: the .deb installed with dpkg (its
//! unit verified by systemd-analyze, its manual pages read with man, an admin's file
//! modes kept across an upgrade) and the RPM read and installed with Debian's rpm tools.

mod lab;

use lab::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

struct Packages {
    deb: PathBuf,
    rpm: PathBuf,
}

/// Both packages, built once from the release build the tests run.
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let built = run(
            root.join("packaging/packages.sh").to_str().unwrap(),
            &["release"],
        );
        let deb = PathBuf::from(built.lines().find(|l| l.ends_with(".deb")).unwrap().trim());
        let version = env!("CARGO_PKG_VERSION");
        let rpm = root.join(format!(
            "target/generate-rpm/netgraph-{version}-1.{}.rpm",
            std::env::consts::ARCH
        ));
        assert!(rpm.exists(), "{} after {built}", rpm.display());
        Packages { deb, rpm }
    })
}

/// What both packages must install.
const FILES: [&str; 8] = [
    "/usr/bin/netgraph",
    "/etc/netgraph/netgraph.toml",
    "/usr/share/man/man1/netgraph.1.gz",
    "/usr/share/man/man1/netgraph-run.1.gz",
    "/usr/share/man/man1/netgraph-report.1.gz",
    "/usr/share/netgraph/grafana/dashboards/netgraph-influxql.json",
    "/usr/share/netgraph/prometheus/netgraph-alerts.yml",
    "/usr/share/doc/netgraph/examples/netgraph.toml",
];

fn mode_and_owner(path: &str) -> String {
    run("stat", &["-c", "%a %U %G", path]).trim().to_string()
}

/// Installs the .deb, runs `netgraph check` from it, verifies the unit, reads a manual
/// page, upgrades over an admin's modes, then purges it.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn the_debian_package_installs_and_checks() {
    require_root();
    let deb = packages().deb.to_str().unwrap();
    run("dpkg", &["-i", deb]);
    let installed = std::panic::catch_unwind(|| {
        // What the package holds (a minimal image's dpkg may leave out documentation
        // and manual pages when it installs).
        let listing = run("dpkg-deb", &["-c", deb]);
        for file in FILES.iter().chain(&[
            "/usr/lib/systemd/system/netgraph.service",
            "/usr/share/doc/netgraph/copyright",
            "/usr/share/doc/netgraph/changelog.Debian.gz",
        ]) {
            assert!(
                listing.contains(&format!(".{file}")),
                "{file} not in the package:\n{listing}"
            );
        }
        let installed = run("dpkg", &["-L", "netgraph"]);
        assert!(installed.contains("/usr/bin/netgraph"), "{installed}");
        let copyright = std::fs::read_to_string("/usr/share/doc/netgraph/copyright").unwrap();
        assert!(
            copyright.contains("Copyright: 2026 the netgraph developers")
                && copyright.contains("License: MIT")
                && !copyright.contains("missing"),
            "{copyright}"
        );
        let changelog = run("zcat", &["/usr/share/doc/netgraph/changelog.Debian.gz"]);
        assert!(
            changelog.starts_with(&format!("netgraph ({}-1)", env!("CARGO_PKG_VERSION"))),
            "{changelog}"
        );
        // The manual page a user reads, rendered by man-db (from the package's own
        // file where this system's dpkg leaves manual pages out).
        let installed_page = "/usr/share/man/man1/netgraph-report.1.gz";
        let page = if std::path::Path::new(installed_page).exists() {
            run("man", &["-P", "cat", "netgraph-report"])
        } else {
            let unpacked =
                std::env::temp_dir().join(format!("netgraph-deb-{}", std::process::id()));
            run("dpkg-deb", &["-x", deb, unpacked.to_str().unwrap()]);
            let file = unpacked.join(&installed_page[1..]);
            let page = run("man", &["-P", "cat", "-l", file.to_str().unwrap()]);
            let _ = std::fs::remove_dir_all(&unpacked);
            page
        };
        assert!(
            page.contains("netgraph-report") && page.contains("--last-month"),
            "{page}"
        );
        run("getent", &["passwd", "netgraph"]);
        assert_eq!(
            mode_and_owner("/etc/netgraph/netgraph.toml"),
            "640 root netgraph"
        );
        let output = Command::new("/usr/bin/netgraph")
            .arg("check")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            out.contains("configuration: /etc/netgraph/netgraph.toml"),
            "{out}"
        );
        assert!(out.contains("ok    eBPF engine"), "{out}");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "/lib/systemd/system/netgraph.service"])
            .output()
            .unwrap();
        let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
        assert!(
            verify.status.success() && complaints.trim().is_empty(),
            "systemd-analyze: {complaints}"
        );
        let security = Command::new("systemd-analyze")
            .args([
                "security",
                "--offline=true",
                "/lib/systemd/system/netgraph.service",
            ])
            .output()
            .unwrap();
        let analysis = String::from_utf8_lossy(&security.stdout).into_owned();
        let exposure: f64 = analysis
            .lines()
            .find_map(|l| l.split("exposure level for netgraph.service: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in {analysis}"));
        assert!(exposure <= 2.5, "exposure {exposure}:\n{analysis}");
        // An admin tightens the file; an upgrade (the package again) leaves it so.
        run("chmod", &["600", "/etc/netgraph/netgraph.toml"]);
        run("dpkg", &["-i", deb]);
        assert_eq!(
            mode_and_owner("/etc/netgraph/netgraph.toml"),
            "600 root netgraph"
        );
        report(&format!("Debian package {deb}: installs, `netgraph check` runs from it, systemd-analyze verify is clean, security exposure {exposure}, man pages render, an admin's modes survive an upgrade"));
    });
    run("dpkg", &["--purge", "netgraph"]);
    if let Err(panic) = installed {
        std::panic::resume_unwind(panic);
    }
}

/// The RPM holds what the .deb does, in RPM paths, with the same user, modes and unit;
/// its scripts create the user and enable the unit; rpmlint passes it (with the
/// reasons for what it would flag in packaging/rpm/rpmlint.toml); it installs.
#[test]
#[ignore = "needs root; scripts/test.sh runs it as root"]
fn the_rpm_holds_the_same_files_user_and_unit() {
    require_root();
    let rpm = packages().rpm.to_str().unwrap();
    let listing = run("rpm", &["-qpl", rpm]);
    for file in FILES
        .iter()
        .chain(&["/usr/lib/systemd/system/netgraph.service"])
    {
        assert!(
            listing.lines().any(|l| l == *file),
            "{file} not in the RPM:\n{listing}"
        );
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/netgraph.service"),
    )
    .unwrap();
    let root = std::env::temp_dir().join(format!("netgraph-rpm-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Files, modes and owners: the configuration 640 root:netgraph, kept on upgrade.
    let files = run(
        "rpm",
        &[
            "-qp",
            "--qf",
            "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]",
            rpm,
        ],
    );
    assert!(
        files
            .lines()
            .any(|l| l == "-rw-r----- root netgraph cn /etc/netgraph/netgraph.toml"),
        "{files}"
    );
    assert!(
        files
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x root root") && l.ends_with(" /usr/bin/netgraph")),
        "{files}"
    );
    let scripts = run("rpm", &["-qp", "--scripts", rpm]);
    for expected in [
        "groupadd --system netgraph",
        "useradd --system --gid netgraph",
        "systemctl enable --now netgraph.service",
        "systemctl disable --now netgraph.service",
    ] {
        assert!(scripts.contains(expected), "{expected}:\n{scripts}");
    }
    let requires = run("rpm", &["-qp", "--requires", rpm]);
    assert!(requires.contains("systemd"), "{requires}");
    let lint = Command::new("rpmlint")
        .args(["-c", "packaging/rpm/rpmlint.toml", rpm])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("rpmlint runs (scripts/test.sh installs it)");
    let said = String::from_utf8_lossy(&lint.stdout).into_owned();
    assert!(
        lint.status.success() && said.contains(" 0 errors"),
        "{said}"
    );
    // Installed into a scratch root (its scripts need an RPM system's tools).
    run(
        "rpm",
        &[
            "--root",
            root.to_str().unwrap(),
            "--nodeps",
            "--noscripts",
            "-i",
            rpm,
        ],
    );
    let installed = std::fs::read_to_string(root.join("usr/lib/systemd/system/netgraph.service"));
    let binary = root.join("usr/bin/netgraph");
    let version = Command::new(&binary).arg("--version").output();
    let _ = std::fs::remove_dir_all(&root);
    assert_eq!(installed.unwrap(), unit, "the .deb's unit");
    let version = version.unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );
    report(&format!(
        "RPM {rpm}: the .deb's files, unit, user and modes; rpmlint clean; installs into a scratch root"
    ));
}
