//! `kiln run IMAGE --iso ISO …`: the whole flow headless — create, install, configure, verify,
//! publish — resuming from the image's session file and stopping at the first failure.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::check::ProfileArg;
use super::configure::Variant;
use super::flags::{
    CleanupArgs, CredentialArgs, DestinationArgs, InstallerArgs, positive_duration,
};
use super::{Exit, Format, report};
use crate::engine::Step;
use crate::engine::host::config::{CliOverrides, Dirs, Settings};
use crate::engine::plan::{Next, Plan, PlanRun};
use crate::engine::session::Choices;
use crate::engine::steps::image::DiskSize;
use crate::engine::task::{Answers, TaskOptions};
use crate::engine::workflow::{Recording, Secrets, StepOptions, Workflow};

/// A step named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StepArg {
    Create,
    Install,
    Configure,
    Verify,
    Publish,
}

impl From<StepArg> for Step {
    fn from(step: StepArg) -> Step {
        match step {
            StepArg::Create => Step::Create,
            StepArg::Install => Step::Install,
            StepArg::Configure => Step::Configure,
            StepArg::Verify => Step::Verify,
            StepArg::Publish => Step::Publish,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The image; its session is NAME.kiln.toml beside it. Choices given here are recorded
    /// there, so a second `kiln run IMAGE` needs only the secrets.
    pub image: PathBuf,
    /// Size of a new disk (create), e.g. 10G; with --base, the size the copy is grown to.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<DiskSize>,
    /// Start from a cloud image (Debian's genericcloud, Ubuntu's cloudimg, Fedora Cloud)
    /// instead of create and install: a standalone copy of it (the file itself is never
    /// changed), configured through a NoCloud seed kiln writes for that boot only.
    #[arg(long, value_name = "CLOUD_IMAGE")]
    pub base: Option<PathBuf>,
    /// With --base: your own cloud-init user-data, merged into kiln's seed.
    #[arg(long, value_name = "FILE", requires = "base")]
    pub user_data: Option<PathBuf>,
    /// With --base: keep the build user the seed creates (kiln-build: key login, sudo without
    /// a password) in the published image.
    #[arg(long, requires = "base")]
    pub keep_build_user: bool,
    #[command(flatten)]
    pub installer: InstallerArgs,
    #[command(flatten)]
    pub credentials: CredentialArgs,
    #[command(flatten)]
    pub cleanup: CleanupArgs,
    /// Which documented sshd_config configure installs [default: reference].
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// Which CI driver verify imitates.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Start here: run this step and every later one again, even if the session says they are
    /// done; earlier steps not done are recorded as skipped (done another way).
    #[arg(long, value_enum, value_name = "STEP")]
    pub from: Option<StepArg>,
    /// Stop after this step.
    #[arg(long, value_enum, value_name = "STEP")]
    pub until: Option<StepArg>,
    /// Stop the installer and fail when it has not powered off after this long, e.g. 90m
    /// (a bare number is seconds) [default: 2h].
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    pub install_timeout: Option<Duration>,
    /// How to print the per-step result on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl RunArgs {
    /// The choices this command line makes; the session keeps the earlier ones it does not.
    fn choices(&self, overrides: &CliOverrides) -> Result<Choices, String> {
        let mut choices = self.installer.choices()?;
        choices.update(&self.credentials.choices());
        choices.update(&self.cleanup.choices());
        choices.update(&self.destination.choices()?);
        choices.update(&Choices {
            size: self.size.clone(),
            // Only what was asked for on this command line; the defaults may change.
            memory_mib: overrides.memory_mib,
            cpus: overrides.cpus,
            variant: self.variant.map(Into::into),
            profile: self.profile.map(Into::into),
            ..Choices::default()
        });
        if let Some(base) = &self.base {
            if choices.cloud_init == Some(false) {
                return Err(
                    "--base starts from a cloud image, --iso, --kernel and --preset from an installer: give one of them"
                        .into(),
                );
            }
            choices.update(&Choices {
                base_image: Some(
                    std::path::absolute(base).map_err(|e| format!("{}: {e}", base.display()))?,
                ),
                cloud_init: Some(true),
                user_data: match &self.user_data {
                    Some(file) => Some(
                        std::path::absolute(file)
                            .map_err(|e| format!("{}: {e}", file.display()))?,
                    ),
                    None => None,
                },
                keep_build_user: self.keep_build_user.then_some(true),
                ..Choices::default()
            });
        }
        Ok(choices)
    }
}

pub async fn run(
    args: RunArgs,
    settings: &Settings,
    overrides: &CliOverrides,
    dirs: Option<&Dirs>,
) -> Result<Exit, Exit> {
    let environment = super::environment("run", true, settings, dirs).await;
    let workflow = Workflow::open(&args.image, Recording::Always, environment)
        .map_err(|e| super::refused("run", e))?;
    let choices = args
        .choices(overrides)
        .map_err(|e| super::refused("run", e))?;
    // Headless: nobody to ask. A disk is never replaced (create runs only where there is
    // none); the sshd_config diff is printed, then applied.
    let options = StepOptions {
        task: TaskOptions {
            answers: Answers {
                replace_file: Some(false),
                apply_sshd_config: Some(true),
            },
            ..TaskOptions::default()
        },
        ..StepOptions::default()
    };
    let plan = Plan::flow(
        choices,
        &workflow.choices(),
        args.from.map(Step::from),
        args.until.map(Step::from),
        args.install_timeout,
    );
    let notes = plan.notes.clone();
    let (mut run, warnings) = PlanRun::new(workflow, plan, Secrets::default(), options);
    for warning in warnings.into_iter().chain(run.headless_warnings()) {
        eprintln!("kiln run: warning: {warning}");
    }
    eprintln!(
        "kiln run: session {}",
        run.workflow().session_path().display()
    );
    // Passwords come from files, or a prompt only when configure will need them.
    let choices = run.workflow().choices();
    // A cloud image is entered through kiln's own seed: no password to ask for.
    let through_seed = choices.starts_from_cloud_image();
    let login = (run.will_run(Step::Configure) && !through_seed).then(|| {
        let user = choices.user.as_deref().unwrap_or("root");
        (user, choices.key.as_deref())
    });
    let secrets = args
        .credentials
        .secrets(login)
        .map_err(|e| super::refused("run", e))?;
    run.set_secrets(secrets);

    let mut lines = Vec::new();
    let mut exit = Exit::Ok;
    loop {
        match report::next_stage(&mut run, "run") {
            // A stop asked for between stages ends the flow too.
            Next::Finished if exit == Exit::Ok && !run.completed() => {
                exit = Exit::Failed;
                break;
            }
            Next::Finished => break,
            Next::Skipped { line, .. } => lines.push(line),
            Next::Started { name, task, .. } => {
                let result = report::follow(&name, task, false).await;
                exit = Exit::for_result(&result);
                for line in run.ended(&result) {
                    if let Format::Text = args.format {
                        println!(
                            "{:<10} {:<7} {:>7.1} s  {}",
                            line.step, line.status, line.seconds, line.summary
                        );
                    }
                    lines.push(line);
                }
            }
        }
    }
    for note in notes.iter().filter(|_| exit == Exit::Ok) {
        eprintln!("kiln run: {note}");
    }
    let workflow = run.workflow();
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "image": args.image,
                "session": workflow.session_path(),
                "steps": lines,
                "resume_at": workflow.resume_at().map(Step::name),
            })
        ),
        Format::Text => match workflow.resume_at() {
            None => println!("every step is done"),
            Some(step) => println!("next: {}", step.name()),
        },
    }
    Ok(exit)
}
