//! `kiln check IMAGE`: will the CI driver accept this image? Text, JSON or JUnit on stdout;
//! exit 0 all passed, 1 a check failed, 2 the checks could not run.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::flags::BootTimeoutArgs;
use super::{Exit, report};
use crate::engine::Step;
use crate::engine::check::Verdict;
use crate::engine::driver::Profile;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::session::Choices;
use crate::engine::steps::verify::Report;
use crate::engine::workflow::{Secrets, StepOptions, StepResult};

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ProfileArg {
    /// Djinn CI's QEMU driver: root, empty password, 1 CPU, 2048 MiB.
    #[default]
    Djinn,
    /// builds.sr.ht-style runners: user build, virtio-rng.
    Srht,
}

impl From<ProfileArg> for Profile {
    fn from(profile: ProfileArg) -> Profile {
        match profile {
            ProfileArg::Djinn => Profile::Djinn,
            ProfileArg::Srht => Profile::Srht,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
// `kiln check` called it --timeout before it had configure's name.
#[command(mut_arg("boot_timeout", |wait| wait.alias("timeout")))]
pub struct CheckArgs {
    /// The qcow2 image to check (it is never modified).
    pub image: PathBuf,
    /// Which CI driver to imitate for the test boot [default: the session's choice, else djinn].
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Only the checks that need no boot (well under a second).
    #[arg(long)]
    pub static_only: bool,
    /// How to print the report on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: ReportFormat,
    #[command(flatten)]
    pub boot: BootTimeoutArgs,
}

/// An image with a session gets this full check recorded as its verify step (a static-only
/// check is not one); an image without one is checked and left as it was.
pub async fn run(args: CheckArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let workflow =
        match super::one_step("check", &args.image, !args.static_only, settings, dirs).await {
            Ok(workflow) => workflow,
            Err(exit) => return exit,
        };
    workflow.choose(&Choices {
        profile: args.profile.map(Profile::from),
        ..Choices::default()
    });
    let options = StepOptions {
        static_only: args.static_only,
        timeout: args.boot.timeout(),
        ..StepOptions::default()
    };
    let task = workflow.start(Step::Verify, Secrets::default(), options);
    match report::follow("check", task, false).await {
        Ok(StepResult::Verified(report)) => {
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
        Ok(_) => Exit::Failed,
        Err(e) => Exit::for_step(&e),
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
