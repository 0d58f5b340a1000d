//! `kiln check` over the matrix of broken images (tests/fixtures/variants.sh, one defect each):
//! the check the defect breaks has its verdict and names the real cause, and no message kiln
//! writes carries Rust's own notation. Without KILN_FULL_MATRIX=1 only the CI set runs (at
//! least one image per check a defect breaks, two kiln processes at a time: 9 booted rows and
//! the 3 static ones, to keep CI within its time); with it, every row
//! (benches/check-matrix.sh). KILN_MATRIX_ONLY=name,name picks rows by variant.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::fixtures::variant;
use support::guest::qemu_running_with;
use support::{Sandbox, kiln_bin, text};

/// What `kiln check` must say about one image.
struct Row {
    variant: &'static str,
    /// The check the defect breaks (or, for a defect kiln must not fail, the one it is about).
    check: &'static str,
    /// Its verdict: `fail`, or `pass`/`warn` for an image the driver accepts (then no check
    /// fails).
    verdict: &'static str,
    /// Case-sensitive, in that check's detail (or its detail or fix, with `in_fix`).
    phrase: &'static str,
    in_fix: bool,
    /// (check, phrase) pairs that check's detail and fix must not contain: a wrong cause.
    not: &'static [(&'static str, &'static str)],
    /// `ready-time` at least this many seconds (the image is slow on purpose).
    min_ready_s: f64,
    /// The static checks are the whole story: no boot.
    static_only: bool,
    /// In the CI set (the most distinct: one image per class of defect).
    ci: bool,
}

const ROW: Row = Row {
    variant: "",
    check: "",
    verdict: "fail",
    phrase: "",
    in_fix: false,
    not: &[],
    min_ready_s: 0.0,
    static_only: false,
    ci: false,
};

/// Commands cannot run for root: kiln must not blame AcceptEnv for the lost variable.
const NOT_SETENV: &[(&str, &str)] = &[("env", "refused the Setenv")];

const MATRIX: &[Row] = &[
    // The image files themselves (static checks only, well under a second each).
    Row {
        variant: "compat010",
        check: "qcow2-v3",
        phrase: "compat 0.10",
        static_only: true,
        ci: true,
        ..ROW
    },
    Row {
        variant: "backing",
        check: "standalone",
        phrase: "backing file",
        static_only: true,
        ci: true,
        ..ROW
    },
    Row {
        variant: "raw",
        check: "format",
        phrase: "raw",
        static_only: true,
        ci: true,
        ..ROW
    },
    // sshd is not reachable.
    Row {
        variant: "sshd-disabled",
        check: "ssh-banner",
        phrase: "nothing listens on port 22",
        ..ROW
    },
    Row {
        variant: "host-keys-missing",
        check: "ssh-banner",
        phrase: "host key",
        ci: true,
        ..ROW
    },
    Row {
        variant: "listen-ipv6",
        check: "ssh-banner",
        phrase: "ListenAddress",
        ci: false,
        ..ROW
    },
    Row {
        variant: "slow-first-boot",
        check: "ready-time",
        verdict: "pass",
        min_ready_s: 60.0,
        ci: true,
        ..ROW
    },
    // root cannot log in.
    Row {
        variant: "root-password",
        check: "root-login",
        phrase: "passwd -d root",
        in_fix: true,
        ..ROW
    },
    Row {
        variant: "no-empty-passwords",
        check: "root-login",
        phrase: "PermitEmptyPasswords",
        in_fix: true,
        ..ROW
    },
    Row {
        variant: "prohibit-password",
        check: "root-login",
        phrase: "PermitRootLogin",
        in_fix: true,
        ..ROW
    },
    Row {
        variant: "pam-no-nullok",
        check: "root-login",
        phrase: "PAM",
        ci: true,
        ..ROW
    },
    Row {
        variant: "shell-missing",
        check: "root-login",
        phrase: "login shell",
        ..ROW
    },
    // SFTP does not work.
    Row {
        variant: "no-sftp",
        check: "sftp",
        phrase: "Subsystem",
        ..ROW
    },
    Row {
        variant: "sftp-server-missing",
        check: "sftp",
        phrase: "does not exist",
        ci: true,
        ..ROW
    },
    Row {
        variant: "force-command",
        check: "sftp",
        phrase: "ForceCommand",
        ci: true,
        ..ROW
    },
    // The script cannot be written.
    Row {
        variant: "disk-full",
        check: "script-upload",
        phrase: "no space left",
        ci: true,
        ..ROW
    },
    Row {
        variant: "read-only-root",
        check: "script-upload",
        phrase: "read-only",
        ci: false,
        ..ROW
    },
    // Build variables are lost.
    Row {
        variant: "no-acceptenv",
        check: "env",
        phrase: "acceptenv",
        ..ROW
    },
    // The script cannot run.
    Row {
        variant: "shell-false",
        check: "script-run",
        phrase: "login shell /bin/false",
        not: NOT_SETENV,
        ci: true,
        ..ROW
    },
    Row {
        variant: "shell-nologin",
        check: "script-run",
        phrase: "login shell /usr/sbin/nologin",
        not: NOT_SETENV,
        ..ROW
    },
    Row {
        variant: "noexec-home",
        check: "script-run",
        phrase: "noexec",
        not: NOT_SETENV,
        ci: false,
        ..ROW
    },
    Row {
        variant: "max-sessions",
        check: "script-run",
        phrase: "MaxSessions",
        ci: false,
        ..ROW
    },
    // Every login waits for a resolver that does not answer: the driver gets in, slowly.
    Row {
        variant: "use-dns",
        check: "root-login",
        verdict: "warn",
        phrase: "looks up the client's name",
        ci: true,
        ..ROW
    },
    // The console: a quiet kernel and no serial getty still show that it booted.
    Row {
        variant: "quiet-console",
        check: "boots",
        verdict: "pass",
        ci: true,
        ..ROW
    },
];

/// Two kiln processes (two TCG guests) at a time: CI has two cores.
const JOBS: usize = 2;
/// Longer than any check may take (the driver's 5 minutes for SSH, then the job's commands).
const KILN_LIMIT: Duration = Duration::from_secs(20 * 60);

#[test]
fn each_broken_image_fails_its_own_check_and_names_the_cause() {
    let full = std::env::var("KILN_FULL_MATRIX").is_ok_and(|v| v == "1");
    let only = std::env::var("KILN_MATRIX_ONLY").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let rows: Vec<&Row> = MATRIX
        .iter()
        .filter(|r| full || r.ci || only.contains(&r.variant))
        .filter(|r| only.is_empty() || only.contains(&r.variant))
        .collect();
    assert!(!rows.is_empty(), "no row is named {only:?}");
    let images: Vec<PathBuf> = rows.iter().map(|r| variant(r.variant)).collect();
    println!(
        "matrix: {} of {} rows ({}), {JOBS} at a time",
        rows.len(),
        MATRIX.len(),
        match (only.is_empty(), full) {
            (false, _) => "KILN_MATRIX_ONLY",
            (true, true) => "full",
            (true, false) => "CI set",
        }
    );

    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..JOBS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let (Some(row), Some(image)) = (rows.get(i), images.get(i)) else {
                        break;
                    };
                    let outcome = check_row(row, image);
                    // One println: the row's lines stay together whatever the other worker prints.
                    println!(
                        "matrix: {:<20} {:>6.1} s  {}{}",
                        row.variant,
                        outcome.seconds,
                        if outcome.problems.is_empty() {
                            "ok"
                        } else {
                            "WRONG"
                        },
                        outcome
                            .problems
                            .iter()
                            .map(|p| format!("\nmatrix:     - {p}"))
                            .collect::<String>()
                    );
                    outcomes.lock().unwrap().push((i, outcome));
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap();
    outcomes.sort_by_key(|(i, _)| *i);
    println!(
        "matrix: {} rows in {:.1} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|(_, o)| !o.problems.is_empty())
        .map(|(i, o)| format!("{}:\n  {}", rows[*i].variant, o.problems.join("\n  ")))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}

/// How one row went: what was wrong (nothing, when it passed) and how long kiln took.
struct Outcome {
    problems: Vec<String>,
    seconds: f64,
}

fn check_row(row: &Row, image: &Path) -> Outcome {
    let started = Instant::now();
    let mut problems = Vec::new();
    let sandbox = Sandbox::new();
    let mut args = vec!["check", image.to_str().unwrap(), "--format", "json"];
    if row.static_only {
        args.push("--static-only");
    }
    let (code, stdout, stderr) = run_limited(&sandbox, &args, KILN_LIMIT);
    let exit = code.map_or("no exit code (killed)".to_string(), |c| format!("exit {c}"));
    let seconds = started.elapsed().as_secs_f64();
    if qemu_running_with(&image.display().to_string()) {
        problems.push("QEMU left running".to_string());
    }
    let report: Value = match serde_json::from_str(&stdout) {
        Ok(report) => report,
        Err(e) => {
            problems.push(format!(
                "no JSON report ({e}), {exit}; stderr ends:\n{}",
                tail(&stderr, 15)
            ));
            return Outcome { problems, seconds };
        }
    };
    let checks = report["checks"].as_array().cloned().unwrap_or_default();
    let field = |c: &Value, key: &str| c[key].as_str().unwrap_or_default().to_string();
    let summary = |c: &Value| {
        format!(
            "{} {}: {} (fix: {})",
            field(c, "verdict"),
            field(c, "id"),
            field(c, "detail"),
            field(c, "fix")
        )
    };

    let want_code = if row.verdict == "fail" { 1 } else { 0 };
    if code != Some(want_code) {
        problems.push(format!("{exit}, want exit {want_code}"));
    }
    match checks.iter().find(|c| c["id"] == row.check) {
        None => problems.push(format!("no check {}", row.check)),
        Some(check) => {
            let detail = field(check, "detail");
            let fix = field(check, "fix");
            if check["verdict"] != row.verdict {
                problems.push(format!(
                    "want {} {}, got {}",
                    row.verdict,
                    row.check,
                    summary(check)
                ));
                // Skipped: an earlier check failed, and that is the one to read.
                let first = checks.iter().find(|c| c["verdict"] == "fail");
                if let Some(first) = first.filter(|f| f["id"] != row.check) {
                    problems.push(format!("the first failure: {}", summary(first)));
                }
            }
            let seen = detail.contains(row.phrase) || (row.in_fix && fix.contains(row.phrase));
            if !seen {
                problems.push(format!(
                    "{} does not say `{}` in its detail{}: {}",
                    row.check,
                    row.phrase,
                    if row.in_fix { " or fix" } else { "" },
                    summary(check)
                ));
            }
            if row.min_ready_s > 0.0 {
                let ready: f64 = detail
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0);
                if ready < row.min_ready_s {
                    problems.push(format!(
                        "ready after {ready} s, want at least {} s (the first-boot job did not hold sshd back?)",
                        row.min_ready_s
                    ));
                }
            }
        }
    }
    for (id, phrase) in row.not {
        let wrong = |c: &&Value| {
            c["id"] == *id
                && (field(c, "detail").contains(phrase) || field(c, "fix").contains(phrase))
        };
        if let Some(check) = checks.iter().find(wrong) {
            problems.push(format!(
                "{id} blames the wrong cause (`{phrase}`): {}",
                summary(check)
            ));
        }
    }
    if row.verdict != "fail" {
        for check in checks.iter().filter(|c| c["verdict"] == "fail") {
            problems.push(format!(
                "an image the driver accepts failed: {}",
                summary(check)
            ));
        }
    }

    // Every message is for people: details, fixes, and what kiln printed on stderr.
    let mut messages: Vec<(String, String)> = Vec::new();
    for check in &checks {
        let id = field(check, "id");
        messages.push((format!("{id} detail"), field(check, "detail")));
        messages.push((format!("{id} fix"), field(check, "fix")));
    }
    for line in stderr.lines() {
        messages.push(("stderr".to_string(), line.to_string()));
    }
    for (whose, message) in messages {
        if let Some(notation) = rust_notation(&message) {
            problems.push(format!(
                "Rust notation {notation} in the {whose}: {message}"
            ));
        }
    }
    Outcome { problems, seconds }
}

/// `kiln ARGS…` in the sandbox, killed after `limit`: exit code, stdout, stderr.
fn run_limited(sandbox: &Sandbox, args: &[&str], limit: Duration) -> (Option<i32>, String, String) {
    let mut child = Command::new(kiln_bin())
        .args(args)
        .current_dir(sandbox.work())
        .envs(sandbox.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text(&bytes)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = stdout.join().unwrap();
    let mut stderr = stderr.join().unwrap();
    if status.is_none() {
        stderr.push_str(&format!(
            "\n(killed by the test after {} s)",
            limit.as_secs()
        ));
    }
    (status.and_then(|s| s.code()), stdout, stderr)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Rust's own notation in a message meant for people (`Some(1)`, `Ok(None)`, a `{:?}`-quoted
/// string or slice, an error's struct form, an enum variant's name): what was found.
fn rust_notation(message: &str) -> Option<String> {
    const MARKS: [&str; 18] = [
        "Some(",
        "Ok(",
        "Err(",
        "\\n",
        "\\r",
        "\\t",
        "\\\"",
        "\\u{",
        "(\"",
        "[\"",
        "\", \"",
        ": \"",
        "Os {",
        "kind: ",
        "ConnectFailed",
        "AdministrativelyProhibited",
        "UnknownChannelType",
        "ResourceShortage",
    ];
    if let Some(mark) = MARKS.iter().find(|m| message.contains(*m)) {
        return Some(format!("`{mark}`"));
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    for (at, _) in message.match_indices("None") {
        if !word(message[..at].chars().next_back()) && !word(message[at + 4..].chars().next()) {
            return Some("`None`".to_string());
        }
    }
    if message.trim_start().starts_with('"') {
        return Some("a `{:?}`-quoted string".to_string());
    }
    // `[12, 34]` or `[eb, 63]`: a slice printed with `{:?}`.
    let bytes: Vec<char> = message.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        if *c != '[' {
            continue;
        }
        let rest: String = bytes[i + 1..].iter().take(12).collect();
        let first: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        if !first.is_empty() && rest[first.len()..].starts_with(", ") {
            let after = &rest[first.len() + 2..];
            if after.chars().next().is_some_and(|c| c.is_ascii_hexdigit()) {
                return Some("a `{:?}` slice".to_string());
            }
        }
    }
    None
}

#[test]
fn rust_notation_is_told_from_prose() {
    for rust in [
        "script exit Some(1), streamed output false, failing command Ok(Some(1))",
        "artifact missing or altered: None",
        "failed: Os { code: 28, kind: StorageFull, message: \"No space left on device\" }",
        "the server refused to open a session channel: ConnectFailed",
        "starts with [eb, 63, 90, 00], not QFI\\xfb",
        "names [\"a\", \"b\"]",
        "\"quoted\"",
        "line one\\nline two",
    ] {
        assert!(rust_notation(rust).is_some(), "{rust}");
    }
    for prose in [
        "script exited 1; root's login shell is /bin/false",
        "starts with QFI\\xfb",
        "sshd -T says: acceptenv *; Noneless NoneSuch",
        "the serial console ends with:\nlogin: [  OK  ] Started ssh.service",
        "virtual 4 GiB [2 GiB used], `PermitRootLogin yes`",
    ] {
        assert_eq!(rust_notation(prose), None, "{prose}");
    }
}
