//! Hostile and broken inputs a person (or an attacker) can hand kiln: each gets a clear error
//! and the exit code that says whose fix it is — never a panic, a hang, or a lost file. None of
//! these boot a machine, so they are quick.

mod support;

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::{Sandbox, kiln_bin, text};

/// `kiln ARGS…` (arguments may be any bytes), killed if it hangs.
fn kiln(sandbox: &Sandbox, args: &[&std::ffi::OsStr]) -> Output {
    let mut child = Command::new(kiln_bin())
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kiln {args:?} hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn os(text: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(text)
}

/// Exit `code`, a message containing `words`, and no panic.
fn refused(out: &Output, code: i32, words: &str) {
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(words), "wanted {words:?} in:\n{stderr}");
}

fn create(sandbox: &Sandbox, name: &str) {
    let out = kiln(sandbox, &[os("create"), os(name), os("--size"), os("64M")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn installer_isos_that_are_not_files() {
    let sandbox = Sandbox::new();
    create(&sandbox, "d.qcow2");
    let work = sandbox.work();
    std::fs::write(work.join("empty.iso"), b"").unwrap();
    std::fs::create_dir(work.join("dir.iso")).unwrap();
    let fifo = work.join("fifo.iso");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (iso, words) in [
        ("empty.iso", "empty.iso"),
        ("dir.iso", "dir.iso"),
        ("fifo.iso", "fifo.iso"),
        ("missing.iso", "missing.iso"),
    ] {
        let out = kiln(
            &sandbox,
            &[os("install"), os("d.qcow2"), os("--iso"), os(iso)],
        );
        refused(&out, 2, words);
    }
}

#[test]
fn broken_session_files_are_named_and_never_overwritten() {
    let sandbox = Sandbox::new();
    create(&sandbox, "d.qcow2");
    let session = sandbox.work().join("d.kiln.toml");
    for content in [
        &b"\x00\xff\xfe binary junk \x1b[2J"[..],
        b"[steps.create]\noutcome = \"exploded\"\n",
        b"[choices]\nvariant = \"fancy\"\n",
    ] {
        std::fs::write(&session, content).unwrap();
        for args in [
            &[os("run"), os("d.qcow2"), os("--until"), os("create")][..],
            &[os("check"), os("d.qcow2"), os("--static-only")],
        ] {
            let out = kiln(&sandbox, args);
            refused(&out, 2, "d.kiln.toml");
            assert!(
                text(&out.stderr).contains("move it away to start over"),
                "{}",
                text(&out.stderr)
            );
            assert!(
                !text(&out.stderr).contains('\x1b'),
                "raw escape in the message"
            );
            assert_eq!(std::fs::read(&session).unwrap(), content, "overwritten");
        }
    }
}

#[test]
fn paths_that_are_not_utf8_are_refused_clearly_not_mangled() {
    let sandbox = Sandbox::new();
    let name = std::ffi::OsStr::from_bytes(b"bad\xff.qcow2");
    let out = kiln(&sandbox, &[os("create"), name, os("--size"), os("64M")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The flow records what it can; the boot is refused with the reason, not "no such file".
    let out = kiln(
        &sandbox,
        &[
            os("run"),
            name,
            os("--from"),
            os("verify"),
            os("--until"),
            os("verify"),
        ],
    );
    refused(&out, 2, "not valid UTF-8");
    // An ISO path that cannot be recorded is a warning, and the step still runs.
    let iso = std::ffi::OsStr::from_bytes(b"i\xff.iso");
    let out = kiln(
        &sandbox,
        &[
            os("run"),
            os("b.qcow2"),
            os("--size"),
            os("64M"),
            os("--iso"),
            iso,
            os("--until"),
            os("create"),
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("not recorded"), "{stderr}");
    assert!(Path::new(&sandbox.work().join("b.qcow2")).exists());
}
