//! The recipes that ship (assets/recipes) run as shipped: `kiln build --check` on each, as
//! shipped, fails only for what the person supplies (assets/recipes/README.md lists it) and
//! names all of it in one message; with stand-ins for those files it passes. Neither writes
//! anything. No QEMU: `--check` never boots.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use support::{Sandbox, text};

/// Each shipped recipe, what `--check` must say is missing as shipped (one line each), and
/// the stand-ins that satisfy it — the files assets/recipes/README.md tells the person to
/// put beside the recipe.
const SHIPPED: [(&str, &[&str], &[&str]); 2] = [
    (
        "debian-12.toml",
        &[
            "[install] iso: debian-12-netinst.iso does not exist",
            "[install] iso_sha256: SHA256SUMS does not exist",
            "[configure] password_file: the file does not exist",
        ],
        &[
            "debian-12-netinst.iso",
            "SHA256SUMS",
            "secrets/builder-password.txt",
        ],
    ),
    (
        "fixture-ci.toml",
        &[
            "[install] iso: installer.iso does not exist",
            "[configure] password_file: the file does not exist",
            "[[publish]] #2 driver_conf: driver.conf does not exist",
        ],
        &["installer.iso", "password.txt", "driver.conf"],
    ),
];

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/recipes")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every path under `dir`, to see that nothing was written there (kiln's own log, in the
/// sandbox's data directory, is not the recipe's business).
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(listing(&path));
        }
        paths.insert(path);
    }
    paths
}

#[test]
fn every_shipped_recipe_is_in_the_table() {
    let shipped: BTreeSet<String> = std::fs::read_dir(shipped_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    let known: BTreeSet<String> = SHIPPED.iter().map(|(name, ..)| name.to_string()).collect();
    assert_eq!(shipped, known, "a recipe that ships needs a row in SHIPPED");
}

#[test]
fn shipped_recipes_fail_only_for_what_the_person_supplies_and_then_pass_check() {
    for (name, missing, stand_ins) in SHIPPED {
        let sandbox = Sandbox::new();
        let recipes = sandbox.work().join("recipes");
        copy_dir(&shipped_dir(), &recipes);
        let recipe = format!("recipes/{name}");
        let before = listing(&sandbox.work());

        // As shipped: one message naming every missing input, and nothing else.
        for args in [&["build", "--check", &recipe][..], &["build", &recipe]] {
            let out = sandbox.kiln(args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            let header = format!("{} things it needs are not there yet:", missing.len());
            assert!(stderr.contains(&header), "{args:?}: {stderr}");
            let listed: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  ")).collect();
            assert_eq!(listed.len(), missing.len(), "{args:?}: {stderr}");
            for (line, expected) in listed.iter().zip(missing) {
                assert!(line.contains(expected), "{expected:?} not in {line:?}");
            }
            assert_eq!(
                stderr.lines().count(),
                1 + missing.len(),
                "one message: {stderr}"
            );
            assert_eq!(listing(&sandbox.work()), before, "{args:?} wrote something");
        }

        // With the person's files in place, the recipe is ready to build.
        for stand_in in stand_ins {
            let path = recipes.join(stand_in);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "stand-in\n").unwrap();
        }
        let before = listing(&sandbox.work());
        let out = sandbox.kiln(&["build", "--check", &recipe]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        assert!(stdout.contains("ready to build"), "{name}: {stdout}");
        assert!(stdout.contains("verify djinn"), "{name}: {stdout}");
        assert_eq!(listing(&sandbox.work()), before, "--check wrote something");
    }
}

#[test]
fn check_wants_the_variables_a_build_reads_and_places_other_mistakes() {
    let sandbox = Sandbox::new();
    let recipes = sandbox.work().join("recipes");
    copy_dir(&shipped_dir(), &recipes);
    std::fs::write(recipes.join("debian-12-netinst.iso"), "stand-in\n").unwrap();
    std::fs::write(
        recipes.join("env.toml"),
        "name = \"ci\"\n[install]\niso = \"debian-12-netinst.iso\"\n\
         [configure]\nuser = \"builder\"\npassword_env = \"KILN_TEST_RECIPE_PASSWORD\"\n",
    )
    .unwrap();
    let check = |password: Option<&str>| {
        let mut command = std::process::Command::new(support::kiln_bin());
        command
            .args(["build", "--check", "recipes/env.toml"])
            .current_dir(sandbox.work())
            .envs(sandbox.env())
            .env_remove("KILN_TEST_RECIPE_PASSWORD");
        if let Some(password) = password {
            command.env("KILN_TEST_RECIPE_PASSWORD", password);
        }
        command.output().expect("kiln runs")
    };
    let out = check(None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "line 6, column 16: [configure] password_env: the variable KILN_TEST_RECIPE_PASSWORD is not set"
        ),
        "{stderr}"
    );
    let out = check(Some("hunter2"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("hunter2"));

    // A mistake that is not a missing input is its own message, placed at its --var.
    let out = sandbox.kiln(&[
        "build",
        "--check",
        "recipes/env.toml",
        "--var",
        "disk.size=10Q",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--var disk.size"), "{stderr}");
}

/// The recipe format as docs/recipes.md writes it, every key, is a recipe `kiln build --check`
/// accepts once the files it names are there.
#[test]
fn the_documented_format_passes_check() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/recipes.md"))
            .unwrap();
    let start = doc
        .find("<!-- recipe-format -->\n```toml\n")
        .expect("the marked block")
        + "<!-- recipe-format -->\n```toml\n".len();
    let end = start + doc[start..].find("\n```").unwrap();
    let sandbox = Sandbox::new();
    let work = sandbox.work();
    std::fs::write(work.join("recipe.toml"), &doc[start..end]).unwrap();
    for file in [
        "debian-12-netinst.iso",
        "SHA256SUMS",
        "secrets/pw.txt",
        "files/motd",
        "scripts/setup.sh",
    ] {
        std::fs::create_dir_all(work.join(file).parent().unwrap()).unwrap();
        std::fs::write(work.join(file), "stand-in\n").unwrap();
    }
    support::write_script(&work.join("scripts/notify.sh"), "#!/bin/sh\n");
    let conf = sandbox.path().join(".config/djinn/driver.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "driver qemu {\n\tdisks \"/tmp\"\n}\n").unwrap();
    std::fs::create_dir_all(work.join("srht")).unwrap();
    let out = std::process::Command::new(support::kiln_bin())
        .args([
            "build",
            "--check",
            "recipe.toml",
            "--var",
            "publish.2.root=srht",
        ])
        .current_dir(&work)
        .envs(sandbox.env())
        .env("STAGING_DJINN_TOKEN", "stand-in")
        .output()
        .expect("kiln runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for stage in [
        "provision 2",
        "cleanup",
        "verify srht",
        "publish srht",
        "publish rsync",
        "post-build",
    ] {
        assert!(stdout.contains(stage), "{stage}: {stdout}");
    }
}
