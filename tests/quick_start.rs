//! The README's Quick start, run as written: its one fenced block is found by its marker,
//! split into commands, and every command that can run here runs, in order, in one bash — in
//! a private HOME, with the `kiln` this test was built with on PATH. What cannot run here is
//! listed in [`HOW`] with the reason, and what stands in for the real thing is listed in
//! [`STAND_INS`]: the Debian netinst (not downloadable here, and its full install needs
//! installer modules this machine's mirror lacks) is kiln's fixture installer ISO under the
//! netinst's name, which installs its own system (user builder) whatever the preset asks.
//! A command the table does not know fails the test, so the README cannot grow one unseen.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use support::djinn::{DjinnConfig, DjinnServer};
use support::fixtures::fixtures;
use support::{Sandbox, kiln_bin, offline_runner, text};

const MARKER: &str = "<!-- quick-start:";

/// What the test does with a command of the Quick start, by how the command starts.
enum How {
    /// Run it as written.
    Run,
    /// Run it as written, giving it the fake Djinn server's token on stdin.
    RunWithToken,
    /// Run it with `placeholder` replaced: `why`.
    RunReplacing {
        placeholder: &'static str,
        why: &'static str,
    },
    /// Not run here, for this reason; `check` looks at what it can instead.
    NotRun { why: &'static str, check: fn(&str) },
}

/// Each command of the Quick start, by its first words, and what the test does with it.
static HOW: [(&str, How); 10] = [
    (
        "sudo apt-get install",
        How::NotRun {
            why: "needs root and the network; .ci/setup installs these packages on this host, \
                  and each name is checked to be a package apt knows",
            check: packages_are_known,
        },
    ),
    (
        "cargo install --locked --path .",
        How::NotRun {
            why: "a release build of kiln takes minutes; the kiln on PATH is the one cargo \
                  built for this test",
            check: cargo_install_is_of_this_package,
        },
    ),
    ("kiln doctor", How::Run),
    ("mkdir -p ~/images && cd ~/images", How::Run),
    ("(umask 077; head -c 18 /dev/urandom", How::Run),
    ("kiln run debian-12.qcow2", How::Run),
    ("kiln check debian-12.qcow2", How::Run),
    ("read -rs KILN_DJINN_TOKEN", How::RunWithToken),
    (
        "kiln publish debian-12.qcow2 --to djinn",
        How::RunReplacing {
            placeholder: "https://djinn.example/api",
            why: "the fake Djinn server (tests/support/djinn.rs) stands in for yours",
        },
    ),
    ("kiln publish debian-12.qcow2 --to offline", How::Run),
];

/// What the test puts in place of what a person brings, and why.
const STAND_INS: [&str; 4] = [
    "~/images/debian-12.99.0-amd64-netinst.iso: kiln's fixture installer ISO \
     (tests/fixtures/build.sh), with a SHA256SUMS listing it, in place of Debian's netinst",
    "builder.password: after the Quick start makes it, it holds the fixture user's password \
     (the fixture installer creates its own user; the preset's answer file is served but unused)",
    "the offline runner: a driver.conf in the private HOME naming a disks directory",
    "the Djinn token typed at `read -rs`: the fake server's, on stdin",
];

/// The Quick start's commands: the marked block's logical lines (continuations joined),
/// without blank and comment-only lines.
fn quick_start_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &readme[readme
        .find(MARKER)
        .expect("the README marks its Quick start")..];
    let start = after
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + "```sh\n".len();
    let block = &after[start..start + after[start..].find("\n```").unwrap()];
    assert!(
        !after[start..].contains(MARKER),
        "one Quick start block, one marker"
    );
    let mut commands = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let trimmed = line.trim();
        if pending.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(rest) => pending.push_str(&format!("{} ", rest.trim_end())),
            None => {
                pending.push_str(trimmed);
                commands.push(std::mem::take(&mut pending));
            }
        }
    }
    commands
}

fn how(command: &str) -> &'static How {
    let known: Vec<&(&str, How)> = HOW
        .iter()
        .filter(|(start, _)| command.starts_with(start))
        .collect();
    match known[..] {
        [(_, how)] => how,
        _ => panic!(
            "the Quick start has a command this test does not know (or knows twice): {command}\n\
             say in tests/quick_start.rs's HOW whether it runs here"
        ),
    }
}

fn packages_are_known(command: &str) {
    let packages = command
        .split_whitespace()
        .skip(3)
        .filter(|w| !w.starts_with('-'));
    for package in packages.take_while(|word| !word.starts_with('#')) {
        let out = Command::new("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .expect("apt-cache runs");
        assert!(
            out.status.success() && !out.stdout.is_empty(),
            "apt knows no package {package}: {}",
            text(&out.stderr)
        );
    }
}

fn cargo_install_is_of_this_package(command: &str) {
    // From a clone, `.` is this repository: the package that builds the binary `kiln`.
    assert!(command.contains("--path ."), "{command}");
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"kiln\""),
        "Cargo.toml builds kiln"
    );
}

/// `text` in single quotes for bash.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The fixture ISO under the netinst's name, with its SHA256SUMS, where the Quick start
/// expects the person to have put them.
fn put_the_netinst_in_place(images: &Path) {
    std::fs::create_dir_all(images).unwrap();
    let name = "debian-12.99.0-amd64-netinst.iso";
    std::fs::copy(&fixtures().iso, images.join(name)).unwrap();
    let out = Command::new("sha256sum")
        .arg(name)
        .current_dir(images)
        .output()
        .expect("sha256sum runs");
    assert!(out.status.success());
    std::fs::write(images.join("SHA256SUMS"), &out.stdout).unwrap();
}

#[test]
fn the_quick_start_runs_as_written() {
    const TOKEN: &str = "kiln-quick-start-token-51c2";
    let commands = quick_start_commands();
    for (start, _) in &HOW {
        assert!(
            commands.iter().any(|command| command.starts_with(start)),
            "HOW names `{start}`, which the Quick start no longer has"
        );
    }
    let sandbox = Sandbox::new();
    let images = sandbox.path().join("images");
    put_the_netinst_in_place(&images);
    let (driver_conf, disks) = offline_runner(&sandbox);
    let djinn_conf = sandbox.path().join("config/djinn/driver.conf");
    std::fs::create_dir_all(djinn_conf.parent().unwrap()).unwrap();
    std::fs::copy(&driver_conf, &djinn_conf).unwrap();
    let djinn = DjinnServer::start(DjinnConfig::default().token(
        TOKEN,
        "tester",
        &["image:write", "image:read"],
    ));
    let bin = sandbox.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(kiln_bin(), bin.join("kiln")).unwrap();

    // One bash runs them all, in order: `cd` and `export` carry over as they would for a
    // person. Only `read` gets stdin.
    let mut script = String::from("set -euo pipefail\n");
    for (number, command) in commands.iter().enumerate() {
        let number = number + 1;
        let run = match how(command) {
            How::NotRun { why, check } => {
                check(command);
                eprintln!("quick start {number}, not run: {command}\n  ({why})");
                continue;
            }
            How::Run => format!("{{ {command}\n}} </dev/null"),
            How::RunWithToken => command.clone(),
            How::RunReplacing { placeholder, why } => {
                assert!(command.contains(placeholder), "{command}");
                eprintln!("quick start {number}: {placeholder} replaced: {why}");
                let replaced = command.replace(placeholder, &djinn.base_url());
                format!("{{ {replaced}\n}} </dev/null")
            }
        };
        let say = quoted(&format!("== quick start {number}: {command}"));
        script.push_str(&format!("echo \"[${{SECONDS}} s]\" {say} >&2\n{run}\n"));
        if command.contains("> builder.password") {
            // The fixture installer made its own user: the password it knows.
            let password = quoted(fixtures().var("KILN_GUEST_PASSWORD"));
            script.push_str(&format!("printf '%s\\n' {password} > builder.password\n"));
        }
    }
    eprintln!("stand-ins:\n  {}", STAND_INS.join("\n  "));

    let mut child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env_remove("KILN_DJINN_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bash runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{TOKEN}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "the Quick start failed:\n{stderr}\nstdout:\n{}",
        text(&out.stdout)
    );
    assert!(!stderr.contains(TOKEN) && !text(&out.stdout).contains(TOKEN));
    // When each command started, for the slowest-test report.
    for line in stderr.lines().filter(|line| line.starts_with('[')) {
        eprintln!("{line}");
    }

    // The image was built, verified, and published to both places, byte for byte.
    let image = images.join("debian-12.qcow2");
    let bytes = std::fs::read(&image).unwrap();
    let stored = djinn.images();
    assert_eq!(stored.len(), 1, "{:?}", djinn.requests());
    assert_eq!(
        (stored[0].name.as_str(), stored[0].namespace.as_str()),
        ("debian-12", "images")
    );
    assert_eq!(djinn.stored_bytes(stored[0].id), bytes);
    let offline = disks.join("qemu/x86_64/debian/debian-12");
    assert_eq!(std::fs::read(offline).unwrap(), bytes);
    let session = std::fs::read_to_string(images.join("debian-12.kiln.toml")).unwrap();
    assert!(!session.contains(TOKEN) && !session.contains(fixtures().var("KILN_GUEST_PASSWORD")));
}
