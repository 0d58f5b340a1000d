//! `kiln run IMAGE --iso ISO …`: the whole flow headless — create, install, configure, verify,
//! publish — resuming from the image's session file and stopping at the first failure.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;

use super::check::ProfileArg;
use super::configure::{Variant, first_line, key_is_encrypted, prompt};
use super::publish::TargetKind;
use super::{Exit, Format, report};
use crate::engine::Step;
use crate::engine::config::{CliOverrides, Dirs, Settings};
use crate::engine::flow::{self, MachineSettings, Secrets};
use crate::engine::session::{Choices, Session, SessionError};
use crate::engine::task::{self, Summary};
use crate::engine::{configure, host, image, install, publish, verify};

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
    /// Size of a new disk (create), e.g. 10G.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Installer ISO to boot (install). Without one, an existing disk is taken as installed.
    #[arg(long, value_name = "FILE")]
    pub iso: Option<PathBuf>,
    /// The ISO's SHA-256: 64 hex digits, or a SHA256SUMS file.
    #[arg(long, value_name = "HEX|FILE")]
    pub iso_sha256: Option<String>,
    /// The user the installer created (configure logs in as it).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// First line is the user's password (also given to sudo). Never recorded.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Log in with this private key instead of a password.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// Which CI driver verify imitates.
    #[arg(long, value_enum)]
    pub profile: Option<ProfileArg>,
    /// Where publish sends the image; without a target the flow ends after verify.
    #[arg(long, value_enum)]
    pub to: Option<TargetKind>,
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub driver_conf: Option<PathBuf>,
    /// builds.sr.ht tree root (with --to srht).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// builds.sr.ht distro/release, e.g. debian/12 (with --to srht).
    #[arg(long, value_name = "D/R")]
    pub release: Option<String>,
    /// Compact with qemu-img convert before publishing.
    #[arg(long)]
    pub compact: bool,
    /// Write NAME.sha256 next to a locally published image.
    #[arg(long)]
    pub sha256: bool,
    /// Replace an image of the same name (offline runner and builds.sr.ht targets).
    #[arg(long)]
    pub replace: bool,
    /// Start here: run this step and every later one again, even if the session says they are
    /// done; earlier steps not done are recorded as skipped (done another way).
    #[arg(long, value_enum, value_name = "STEP")]
    pub from: Option<StepArg>,
    /// Stop after this step.
    #[arg(long, value_enum, value_name = "STEP")]
    pub until: Option<StepArg>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl RunArgs {
    /// The choices this command line makes; the session keeps the earlier ones it does not.
    fn choices(&self, settings: &Settings, overrides: &CliOverrides) -> Choices {
        let on = |flag: bool| flag.then_some(true);
        Choices {
            size: self.size.clone(),
            iso: self.iso.as_ref().map(|p| absolute(p)),
            iso_checksum: self.iso_sha256.clone(),
            // Only what was asked for on this command line; the defaults may change.
            memory_mib: overrides.memory_mib,
            cpus: overrides.cpus,
            user: self.user.clone(),
            key: self.key.as_ref().map(|p| absolute(p)),
            variant: self.variant.map(|v| {
                match v {
                    Variant::Reference => "reference",
                    Variant::Pam => "pam",
                }
                .into()
            }),
            profile: self.profile.map(|p| {
                match p {
                    ProfileArg::Djinn => "djinn",
                    ProfileArg::Srht => "srht",
                }
                .into()
            }),
            target: self.to.map(|t| t.name().into()),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            url: self.url.clone().or_else(|| settings.djinn_url.clone()),
            driver_conf: self.driver_conf.as_ref().map(|p| absolute(p)),
            root: self.root.as_ref().map(|p| absolute(p)),
            release: self.release.clone(),
            compact: on(self.compact),
            sha256: on(self.sha256),
            replace: on(self.replace),
            ..Choices::default()
        }
    }
}

fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// One step's line in the result.
#[derive(Debug, Serialize)]
struct StepLine {
    step: &'static str,
    status: &'static str,
    /// Wall-clock seconds this run spent on it (0 when it was already done).
    seconds: f64,
    summary: String,
}

/// Why a step did not succeed, and the exit code that says so.
struct StepFailure {
    message: String,
    exit: Exit,
}

impl StepFailure {
    fn usage(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            exit: Exit::Environment,
        }
    }

    fn of(usage: bool, message: String) -> StepFailure {
        StepFailure {
            message,
            exit: if usage {
                Exit::Environment
            } else {
                Exit::Failed
            },
        }
    }
}

pub async fn run(
    args: RunArgs,
    settings: &Settings,
    overrides: &CliOverrides,
    dirs: Option<&Dirs>,
) -> Exit {
    let mut session = match Session::open(&args.image) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("kiln run: {e}");
            return Exit::Environment;
        }
    };
    session.choices.update(&args.choices(settings, overrides));
    if let Err(e) = session.adopt_existing_image() {
        eprintln!("kiln run: {e}");
        return Exit::Environment;
    }
    eprintln!("kiln run: session {}", session.path().display());

    let first = args.from.map(Step::from);
    let last = args.until.map_or(Step::Publish, Step::from);
    // Starting later means the steps before were done another way (an image configured by
    // hand): they are recorded as skipped, so the next `kiln run` does not go back to them.
    if let Some(first) = first {
        for earlier in Step::ALL.into_iter().filter(|s| *s < first) {
            if !session.status(earlier).is_settled()
                && let Err(e) = session.skip(
                    earlier,
                    &format!("not run by kiln: the flow was started at {}", first.name()),
                )
            {
                eprintln!("kiln run: {e}");
                return Exit::Environment;
            }
        }
    }
    let will_run = |session: &Session, step: Step| {
        step <= last && (first.is_some_and(|f| step >= f) || !session.status(step).is_settled())
    };
    let secrets = match secrets(&args, &session, will_run(&session, Step::Configure)) {
        Ok(secrets) => secrets,
        Err(message) => {
            eprintln!("kiln run: {message}");
            return Exit::Environment;
        }
    };
    let (accelerator, why) = host::choose_accelerator().await;
    eprintln!("kiln run: {why}");
    let machines = MachineSettings {
        accelerator,
        memory_mib: settings.memory_mib,
        cpus: settings.cpus,
        record_dir: dirs.map(Dirs::machine_records),
    };
    let config_dir = dirs.map(|d| d.config_dir.clone());

    let mut lines = Vec::new();
    let mut exit = Exit::Ok;
    for step in Step::ALL {
        if step > last {
            break;
        }
        if !will_run(&session, step) {
            let status = session.status(step);
            lines.push(StepLine {
                step: step.name(),
                status: status.word(),
                seconds: 0.0,
                summary: session
                    .record(step)
                    .and_then(|r| r.summary.clone())
                    .unwrap_or_default(),
            });
            continue;
        }
        if step == Step::Publish {
            if session.choices.target.is_none() {
                eprintln!(
                    "kiln run: no publish target (--to djinn|offline|srht): stopping after verify"
                );
                break;
            }
            if let Err(refusal) = session.publish_allowed() {
                eprintln!("kiln run: publish refused: {refusal}");
                exit = Exit::Environment;
                break;
            }
        }
        match session.begin(step) {
            // Not resumable, but the work itself can go on (an image in a read-only place).
            Err(e @ SessionError::Write(..)) => eprintln!("kiln run: warning: {e}"),
            Err(e) => {
                eprintln!("kiln run: {e}");
                exit = Exit::Environment;
                break;
            }
            Ok(()) => {}
        }
        let started = Instant::now();
        let outcome = run_step(step, &session, &secrets, &machines, config_dir.as_deref()).await;
        let seconds = started.elapsed().as_secs_f64();
        let recorded = session.end(
            step,
            match &outcome {
                Ok(summary) => Ok(summary.clone()),
                Err(failure) => Err(failure.message.clone()),
            },
        );
        if let Err(e) = recorded {
            eprintln!("kiln run: {e}");
        }
        let (status, summary) = match outcome {
            Ok(summary) => ("done", summary),
            Err(failure) => {
                exit = failure.exit;
                ("failed", failure.message)
            }
        };
        if let Format::Text = args.format {
            println!(
                "{:<10} {status:<7} {seconds:>7.1} s  {summary}",
                step.name()
            );
        }
        lines.push(StepLine {
            step: step.name(),
            status,
            seconds,
            summary,
        });
        if exit != Exit::Ok {
            break;
        }
    }
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "image": args.image,
                "session": session.path(),
                "steps": lines,
                "resume_at": session.resume_at().map(Step::name),
            })
        ),
        Format::Text => match session.resume_at() {
            None => println!("every step is done"),
            Some(step) => println!("next: {}", step.name()),
        },
    }
    exit
}

/// Passwords come from files or a prompt, only when configure will need them.
fn secrets(args: &RunArgs, session: &Session, configure_runs: bool) -> Result<Secrets, String> {
    let mut secrets = Secrets::default();
    if let Some(file) = &args.password_file {
        secrets.password = Some(first_line(file)?);
    }
    if let Some(file) = &args.passphrase_file {
        secrets.passphrase = Some(first_line(file)?);
    }
    if !configure_runs {
        return Ok(secrets);
    }
    let choices = &session.choices;
    let user = choices.user.as_deref().unwrap_or("root");
    match &choices.key {
        Some(key) if !key.exists() => return Err(format!("key {} does not exist", key.display())),
        Some(key) if secrets.passphrase.is_none() && key_is_encrypted(key) => {
            secrets.passphrase = Some(prompt(&format!("passphrase for {}: ", key.display()))?);
        }
        None if secrets.password.is_none() && user != "root" => {
            secrets.password = Some(prompt(&format!("password for {user}: "))?);
        }
        _ => {}
    }
    Ok(secrets)
}

/// Run one step with the session's choices; the summary on success.
async fn run_step(
    step: Step,
    session: &Session,
    secrets: &Secrets,
    machines: &MachineSettings,
    config_dir: Option<&std::path::Path>,
) -> Result<String, StepFailure> {
    let image = session.image();
    let choices = &session.choices;
    let name = step.name();
    match step {
        Step::Create => {
            let request = flow::create_request(image, choices, false);
            let plan = image::plan_create(&request)
                .await
                .map_err(|e| StepFailure::of(e.is_usage(), e.to_string()))?;
            let title = format!("creating {} ({})", plan.path.display(), plan.size);
            let task = task::spawn(title, |r| image::create(plan, r));
            finish(report::follow(name, task, false).await, |e| e.is_usage())
        }
        Step::Install => {
            let request = flow::install_request(image, choices, machines, true)
                .map_err(StepFailure::usage)?;
            let title = format!(
                "installing {} onto {}",
                request.iso.display(),
                image.display()
            );
            let task = task::spawn(title, |r| install::install(request, r));
            finish(report::follow(name, task, false).await, |e| e.is_usage())
        }
        Step::Configure => {
            let request = flow::configure_request(image, choices, secrets, machines, None);
            let title = format!("configuring {} as {}", image.display(), request.user);
            let task = task::spawn(title, |r| configure::configure(request, r));
            finish(report::follow(name, task, false).await, |e| e.is_usage())
        }
        Step::Verify => {
            let request = flow::verify_request(image, choices, machines, false);
            let title = format!("checking {}", image.display());
            let task = task::spawn(title, |r| verify::verify(request, r));
            match report::follow(name, task, false).await {
                Ok(report) if report.passed() => Ok(report.summary()),
                Ok(report) => Err(StepFailure::of(false, report.summary())),
                Err(e) => Err(StepFailure::of(
                    matches!(e, verify::VerifyError::Boot(_)),
                    e.to_string(),
                )),
            }
        }
        Step::Publish => {
            let request = flow::publish_request(image, choices, secrets, config_dir)
                .map_err(|e| StepFailure::of(e.is_usage(), e.to_string()))?;
            let title = format!(
                "publishing {} to {}",
                image.display(),
                request.target.describe()
            );
            let task = task::spawn(title, |r| publish::publish(request, r));
            finish(report::follow(name, task, false).await, |e| e.is_usage())
        }
    }
}

fn finish<T: Summary, E: std::fmt::Display>(
    result: Result<T, E>,
    is_usage: impl Fn(&E) -> bool,
) -> Result<String, StepFailure> {
    result
        .map(|value| value.summary())
        .map_err(|e| StepFailure::of(is_usage(&e), e.to_string()))
}
