//! `kiln check IMAGE`: will the CI driver accept this image? Text, JSON or JUnit on stdout;
//! exit 0 all passed, 1 a check failed, 2 the checks could not run.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{Exit, report};
use crate::engine::Step;
use crate::engine::check::Verdict;
use crate::engine::config::Dirs;
use crate::engine::driver::DriverProfile;
use crate::engine::host;
use crate::engine::session::{Session, session_path};
use crate::engine::task::{self, Summary};
use crate::engine::verify::{self, Report, VerifyError, VerifyRequest};

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ProfileArg {
    /// Djinn CI's QEMU driver: root, empty password, 1 CPU, 2048 MiB.
    #[default]
    Djinn,
    /// builds.sr.ht-style runners: user build, virtio-rng.
    Srht,
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The qcow2 image to check (it is never modified).
    pub image: PathBuf,
    /// Which CI driver to imitate for the test boot.
    #[arg(long, value_enum, default_value_t)]
    pub profile: ProfileArg,
    /// Only the checks that need no boot (well under a second).
    #[arg(long)]
    pub static_only: bool,
    /// How to print the report on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
    /// Seconds to wait for SSH after QEMU starts (the Djinn driver waits 300).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
}

pub async fn run(args: CheckArgs, dirs: Option<&Dirs>) -> Exit {
    let profile = if args.static_only {
        None
    } else {
        let (accelerator, why) = host::choose_accelerator().await;
        eprintln!("kiln check: {why}");
        Some(match args.profile {
            ProfileArg::Djinn => DriverProfile::djinn(accelerator),
            ProfileArg::Srht => DriverProfile::srht(accelerator),
        })
    };
    let request = VerifyRequest {
        image: args.image,
        profile,
        deadline: Duration::from_secs(args.timeout),
        record_dir: dirs.map(Dirs::machine_records),
    };
    // An image kiln keeps a session for gets this full check recorded as its verify step (a
    // static-only check is not one); kiln does not start a session for images it only checks.
    let mut session = (request.profile.is_some() && session_path(&request.image).exists())
        .then(|| Session::open(&request.image).ok())
        .flatten();
    if let Some(session) = session.as_mut()
        && let Err(e) = session.begin(Step::Verify)
    {
        eprintln!("kiln check: {e}");
        return Exit::Environment;
    }
    let title = format!("checking {}", request.image.display());
    let task = task::spawn(title, |reporter| verify::verify(request, reporter));
    let result = report::follow("check", task, false).await;
    if let Some(session) = session.as_mut() {
        let outcome = match &result {
            Ok(report) if report.passed() => Ok(report.summary()),
            Ok(report) => Err(report.summary()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = session.end(Step::Verify, outcome) {
            eprintln!("kiln check: {e}");
        }
    }
    match result {
        Ok(report) => {
            print!(
                "{}",
                match args.format {
                    ReportFormat::Text => text(&report),
                    ReportFormat::Json =>
                        serde_json::to_string_pretty(&report).expect("report serialises") + "\n",
                    ReportFormat::Junit => junit(&report),
                }
            );
            if report.passed() {
                Exit::Ok
            } else {
                Exit::Failed
            }
        }
        Err(VerifyError::Cancelled) => Exit::Failed,
        Err(_) => Exit::Environment,
    }
}

/// One line per check, the fix under each failure or warning.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    if let Some(argv) = &report.driver_argv {
        out.push_str(&format!("driver command line: {}\n", argv.join(" ")));
    }
    for check in &report.checks {
        out.push_str(&format!(
            "[{}] {:<48} {}\n",
            check.verdict.word(),
            check.name,
            check.detail
        ));
        if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&check.fix, check.verdict) {
            out.push_str(&format!("       fix: {fix}\n"));
        }
    }
    out.push_str(&format!(
        "{}\n",
        if report.passed() {
            "result: the CI driver should accept this image"
        } else {
            "result: the CI driver will not accept this image"
        }
    ));
    out
}

/// JUnit XML: one testcase per check; failures carry the fix, skips the reason.
pub fn junit(report: &Report) -> String {
    let count = |v: Verdict| report.checks.iter().filter(|c| c.verdict == v).count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"kiln check {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        xml(&report.image.display().to_string()),
        report.checks.len(),
        count(Verdict::Fail),
        count(Verdict::Skipped)
    );
    for check in &report.checks {
        out.push_str(&format!(
            "  <testcase classname=\"kiln.check\" name=\"{}: {}\">",
            check.id,
            xml(check.name)
        ));
        let fix = check.fix.as_deref().map(xml).unwrap_or_default();
        match check.verdict {
            Verdict::Fail => out.push_str(&format!(
                "<failure message=\"{}\">{fix}</failure>",
                xml(&check.detail)
            )),
            Verdict::Skipped => {
                out.push_str(&format!("<skipped message=\"{}\"/>", xml(&check.detail)))
            }
            Verdict::Warn => out.push_str(&format!(
                "<system-out>warning: {} {fix}</system-out>",
                xml(&check.detail)
            )),
            Verdict::Pass => {}
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
