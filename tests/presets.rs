//! Every preset in assets/presets/, filled in by kiln itself (`kiln install --preset NAME
//! --write-answers DIR`, the code an install serves them with) and checked by its
//! distribution's own validator: Kickstart by pykickstart's `ksvalidator` for the named
//! release, Ubuntu's autoinstall user-data by `cloud-init schema` and its autoinstall
//! structure, AutoYaST as well-formed XML in the profile namespace (`xmllint`), a preseed by
//! `debconf-set-selections --checkonly`. A missing validator fails the test, naming its
//! package; each validator is also shown to reject a broken file.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Sandbox, text};

/// Each validator: the program and where it comes from.
const KSVALIDATOR: (&str, &str) = (
    "ksvalidator",
    "PyPI package pykickstart (pip install pykickstart; .ci/setup)",
);
const CLOUD_INIT: (&str, &str) = ("cloud-init", "Debian package cloud-init (.ci/setup)");
const XMLLINT: (&str, &str) = ("xmllint", "Debian package libxml2-utils (.ci/setup)");
const DEBCONF: (&str, &str) = ("debconf-set-selections", "Debian package debconf");
/// Debian's Python, which has the YAML module cloud-init uses.
const PYTHON: (&str, &str) = (
    "/usr/bin/python3",
    "Debian package python3-yaml (with cloud-init)",
);

const AUTOYAST_NAMESPACE: &str = "http://www.suse.com/1.0/yast2ns";

fn run(tool: (&str, &str), args: &[&str], file: &Path) -> Output {
    Command::new(tool.0)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run ({e}): install the {}", tool.0, tool.1))
}

/// Run the validator on `file` and on a copy with `broken` appended: the first must pass,
/// the second fail (a validator that passes everything proves nothing).
fn validate(tool: (&str, &str), args: &[&str], file: &Path, broken: &str) {
    let out = run(tool, args, file);
    assert!(
        out.status.success(),
        "{} {args:?} rejects {}:\n{}{}\n--- file ---\n{}",
        tool.0,
        file.display(),
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(file).unwrap()
    );
    let copy = file.with_extension("broken");
    let mut body = std::fs::read_to_string(file).unwrap();
    body.push_str(broken);
    std::fs::write(&copy, body).unwrap();
    let out = run(tool, args, &copy);
    assert!(
        !out.status.success(),
        "{} {args:?} accepts a broken file:\n{}",
        tool.0,
        text(&out.stdout)
    );
}

/// The presets shipped: every folder with a preset.toml.
fn presets() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/presets");
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().join("preset.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `kiln install --write-answers`: the preset's files and kernel arguments.
fn fill(sandbox: &Sandbox, preset: &str) -> (PathBuf, String) {
    let password = sandbox.path().join("password");
    std::fs::write(&password, "Builder-pass-1\n").unwrap();
    let dir = sandbox.path().join(preset);
    let out = sandbox.kiln(&[
        "install",
        "ci-image.qcow2",
        "--preset",
        preset,
        "--user",
        "builder",
        "--password-file",
        &password.display().to_string(),
        "--mirror",
        "http://10.0.2.2:3142/dist",
        "--http-port",
        "8099",
        "--write-answers",
        &dir.display().to_string(),
    ]);
    assert!(out.status.success(), "{preset}: {}", text(&out.stderr));
    (dir, text(&out.stdout).trim().to_string())
}

/// ksvalidator's name for a preset's release: fedora-41 → F41, rhel-9 → RHEL9.
fn kickstart_version(preset: &str) -> String {
    let (distro, release) = preset.rsplit_once('-').unwrap();
    match distro {
        "fedora" => format!("F{release}"),
        "rhel" => format!("RHEL{release}"),
        other => panic!("{preset}: which ksvalidator version is {other}? add it here"),
    }
}

/// The autoinstall structure Subiquity needs, and kiln's CI-ready steps in it.
const AUTOINSTALL_CHECK: &str = r#"
import sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
auto = data["autoinstall"]
assert auto["version"] == 1, "autoinstall version 1"
assert auto["shutdown"] == "poweroff", "powers off"
assert auto["ssh"]["install-server"] is True, "installs openssh-server"
assert "openssh-server" in auto["packages"]
assert auto["storage"]["layout"]["name"] == "direct"
assert "identity" in auto or "user-data" in auto, "a user"
late = " ".join(auto["late-commands"])
assert "/sshd_config" in late and "passwd -d root" in late, "CI-ready sshd and root"
assert set(auto) <= {"version", "early-commands", "locale", "keyboard", "timezone", "network",
    "proxy", "apt", "updates", "refresh-installer", "storage", "ssh", "packages", "user-data",
    "identity", "late-commands", "shutdown", "interactive-sections", "kernel", "snaps",
    "source", "drivers", "codecs", "oem", "debconf-selections", "reporting",
    "error-commands", "active-directory", "ubuntu-pro"}, "only autoinstall's own keys"
"#;

#[test]
fn every_preset_fills_in_completely_and_passes_its_distributions_validator() {
    let sandbox = Sandbox::new();
    let names = presets();
    for expected in [
        "debian-12",
        "fedora-41",
        "opensuse-leap-15",
        "rhel-9",
        "ubuntu-24.04",
    ] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
    let reference = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/sshd_config.reference"),
    )
    .unwrap();
    for preset in &names {
        let (dir, kernel_args) = fill(&sandbox, preset);
        // The installer finds its answers on kiln's server and talks on the serial console.
        assert!(
            kernel_args.contains("http://10.0.2.2:8099/"),
            "{preset}: {kernel_args}"
        );
        assert!(
            kernel_args.contains("console=ttyS0,115200n8"),
            "{preset}: {kernel_args}"
        );
        assert!(!kernel_args.contains("{{"), "{preset}: {kernel_args}");
        assert_eq!(
            std::fs::read_to_string(dir.join("sshd_config")).unwrap(),
            reference,
            "{preset}"
        );
        let mut validated = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let file = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let body = std::fs::read_to_string(&file).unwrap();
            assert!(
                !body.contains("{{"),
                "{preset}/{name} has an unfilled placeholder"
            );
            match name.as_str() {
                "sshd_config" | "meta-data" => continue,
                "ks.cfg" => {
                    let version = kickstart_version(preset);
                    validate(
                        KSVALIDATOR,
                        &["-e", "-v", &version],
                        &file,
                        "\nnosuchcommand --now\n",
                    );
                    assert!(body.contains("\npoweroff\n"), "{preset}: powers off");
                }
                "user-data" => {
                    validate(
                        CLOUD_INIT,
                        &["schema", "--config-file"],
                        &file,
                        "\nruncmd: 5\n",
                    );
                    let out = run(PYTHON, &["-c", AUTOINSTALL_CHECK], &file);
                    assert!(out.status.success(), "{preset}: {}", text(&out.stderr));
                }
                "autoinst.xml" => {
                    validate(XMLLINT, &["--noout"], &file, "<unclosed>");
                    let xpath = "namespace-uri(/*)";
                    let out = run(XMLLINT, &["--xpath", xpath], &file);
                    assert_eq!(text(&out.stdout).trim(), AUTOYAST_NAMESPACE, "{preset}");
                    let halt = "string(//*[local-name()='final_halt'])";
                    let out = run(XMLLINT, &["--xpath", halt], &file);
                    assert_eq!(text(&out.stdout).trim(), "true", "{preset}: powers off");
                }
                "preseed.cfg" => {
                    validate(DEBCONF, &["--checkonly"], &file, "\nd-i\n");
                    assert!(body.contains("exit/poweroff boolean true"), "{preset}");
                }
                other => panic!("{preset}: no validator known for {other}; add one here"),
            }
            validated += 1;
        }
        assert!(validated > 0, "{preset}: no answer file was validated");
    }
}
