//! `kiln create`, `kiln doctor` and `kiln config` as a script would run them.

mod support;

use clap::CommandFactory;
use support::{Sandbox, qemu_img_info, text};

#[test]
fn create_makes_a_qcow2_v3_of_the_requested_size() {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["create", "debian-12.qcow2", "--size", "3G"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = qemu_img_info(&sandbox.work().join("debian-12.qcow2"));
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
    assert_eq!(info["virtual-size"], 3u64 << 30);
    assert!(text(&out.stdout).contains("compat:       1.1"));
    // No temporary files are left beside the image.
    let names: Vec<_> = std::fs::read_dir(sandbox.work())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["debian-12.qcow2"]);
}

#[test]
fn second_create_without_force_fails_and_keeps_the_file() {
    let sandbox = Sandbox::new();
    let image = sandbox.work().join("ci.qcow2");
    assert!(
        sandbox
            .kiln(&["create", "ci.qcow2", "--size", "1G"])
            .status
            .success()
    );
    let before = std::fs::read(&image).unwrap();

    let out = sandbox.kiln(&["create", "ci.qcow2", "--size", "2G"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "the first image was touched"
    );

    let out = sandbox.kiln(&["create", "ci.qcow2", "--size", "2G", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(qemu_img_info(&image)["virtual-size"], 2u64 << 30);
}

#[test]
fn create_explains_bad_input() {
    let sandbox = Sandbox::new();
    let cases: [(&[&str], &str); 4] = [
        (&["create", "a.qcow2", "--size", "10"], "has no unit"),
        (
            &["create", "a.qcow2", "--size", "ten"],
            "does not start with a number",
        ),
        (&["create", "missing/a.qcow2"], "does not exist"),
        (&["create", "."], "is a directory"),
    ];
    for (args, expected) in cases {
        let out = sandbox.kiln(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = sandbox.kiln(&["create", "big image.qcow2", "--size", "21G"]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("above the recommended 20 GB"), "{stderr}");
    assert!(stderr.contains("not a valid Djinn image name"), "{stderr}");
}

#[test]
fn create_refuses_to_replace_an_image_in_use() {
    let sandbox = Sandbox::new();
    let image = sandbox.work().join("busy.qcow2");
    assert!(
        sandbox
            .kiln(&["create", "busy.qcow2", "--size", "1G"])
            .status
            .success()
    );
    let holder = support::ImageLock::hold(&image);
    let before = std::fs::read(&image).unwrap();
    let out = sandbox.kiln(&["create", "busy.qcow2", "--size", "2G", "--force"]);
    drop(holder);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("in use"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&image).unwrap(), before);
}

#[test]
fn doctor_reports_every_check_and_json_is_stable() {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["doctor", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "qemu-img",
            "qemu-system-x86_64",
            "KVM",
            "CPUs and memory",
            "disk space"
        ]
    );
    assert!(["kvm", "tcg"].contains(&report["accelerator"].as_str().unwrap()));
}

#[test]
fn doctor_fails_with_the_fix_when_qemu_is_missing() {
    let sandbox = Sandbox::new();
    let out = std::process::Command::new(support::kiln_bin())
        .arg("doctor")
        .envs(sandbox.env())
        .env("PATH", sandbox.path()) // nothing on PATH
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("fix: apt-get install qemu-utils"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: apt-get install qemu-system-x86"),
        "{stdout}"
    );
}

#[test]
fn config_precedence_and_template() {
    let sandbox = Sandbox::new();
    std::fs::create_dir_all(sandbox.config_dir()).unwrap();
    std::fs::write(
        sandbox.config_dir().join("config.toml"),
        "memory_mib = 3000\ncpus = 1\n[djinn]\nnamespace = \"team\"\n",
    )
    .unwrap();
    let out = sandbox.kiln(&["config", "--memory", "1500"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let settings: toml::Value = toml::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(settings["memory_mib"].as_integer(), Some(1500)); // CLI wins
    assert_eq!(settings["cpus"].as_integer(), Some(1)); // file
    assert_eq!(settings["theme"].as_str(), Some("auto")); // default
    assert_eq!(settings["djinn_namespace"].as_str(), Some("team"));

    let out = sandbox.kiln(&["config", "--print-template"]);
    assert!(text(&out.stdout).contains("#memory_mib = 4096"));

    std::fs::write(
        sandbox.config_dir().join("config.toml"),
        "cpus = \"many\"\n",
    )
    .unwrap();
    let out = sandbox.kiln(&["config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("config.toml") && stderr.contains("cpus"),
        "{stderr}"
    );
}

#[test]
fn global_flags_go_before_any_command_and_a_mistyped_command_is_not_taken_for_an_image() {
    let sandbox = Sandbox::new();
    let out = sandbox.kiln(&["--memory", "1024", "--cpus", "1", "config", "--path"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("config.toml"));

    let out = sandbox.kiln(&["--memory", "512", "confgure"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("neither a command nor an image"),
        "{}",
        text(&out.stderr)
    );
    // An image path, but no terminal: the workbench says what to use instead.
    let out = sandbox.kiln(&["disk.qcow2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("kiln run"),
        "{}",
        text(&out.stderr)
    );
}

/// Every flag of every command says what it does (`-h` puts it on the flag's own line). The
/// commands are clap's own list, at any depth, so a new one cannot be left out.
#[test]
fn every_flag_of_every_command_is_described() {
    let sandbox = Sandbox::new();
    let commands = command_paths(&kiln::cli::Args::command(), &[]);
    assert!(commands.len() > 1, "no subcommands found: {commands:?}");
    for path in &commands {
        let args: Vec<&str> = path.iter().map(String::as_str).chain(["-h"]).collect();
        let out = sandbox.kiln(&args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        let options = help
            .split("Options:")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: no options in\n{help}"));
        let lines: Vec<&str> = options.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with('-') {
                continue;
            }
            let words = |rest: &str| !rest.is_empty() && !rest.starts_with('[');
            // `  -h, --help   Print help`, `      --size <SIZE>  Size of …`: the flag, a gap,
            // words; or, where a flag is too wide for that (clap then puts every help on the
            // next line), words on the next line that is no flag.
            let same_line =
                (line.trim_start().split_once("  ")).is_some_and(|(_, rest)| words(rest.trim()));
            let next_line = (lines.get(at + 1))
                .is_some_and(|next| !next.trim_start().starts_with('-') && words(next.trim()));
            assert!(same_line || next_line, "{args:?}: undescribed flag: {line}");
        }
    }
}

/// The words that name `command` (`path`) and each of its subcommands, at any depth.
fn command_paths(command: &clap::Command, path: &[String]) -> Vec<Vec<String>> {
    let mut paths = vec![path.to_vec()];
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let deeper: Vec<String> = path
            .iter()
            .cloned()
            .chain([sub.get_name().into()])
            .collect();
        paths.extend(command_paths(sub, &deeper));
    }
    paths
}
