//! One workflow for every frontend. The workbench, `kiln run`, `kiln check` and each
//! `kiln <step>` start a step here and get the same [`StepTask`] back: the request is built
//! from the session's choices ([`requests`]), the outcome is recorded in the session file,
//! publishing waits for a fresh verify, and questions come back as events on the task.
//!
//! Recording rules, the same for everyone:
//! - a step is recorded from the moment it begins; refusals (another kiln is on it, publish
//!   before verify, a declined replace) are not recorded, because nothing was attempted;
//! - a session file that cannot be written (an image in a read-only place) is a warning on
//!   the step's log: the work goes on, it just cannot be resumed.

pub mod base;
pub mod requests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::Step;
use super::host::Accelerator;
use super::session::{Choices, Session, SessionError, StageKey, StepRecord, StepStatus};
use super::task::{self, Cancelled, Question, Reporter, Summary, Task, TaskOptions, TaskPanicked};
use crate::engine::host::config::Settings;
use crate::engine::host::temp_file;
use crate::engine::steps::configure::{self, ConfigureError, Configured};
use crate::engine::steps::image::{self, CreateError, ImageInfo};
use crate::engine::steps::install::{self, InstallError, InstallOutcome};
use crate::engine::steps::post_build::Finished;
use crate::engine::steps::provision::Provisioned;
use crate::engine::steps::publish::{self, PublishError, Published, Token};
use crate::engine::steps::verify::{self, Report};
use base::BaseCopy;

/// What a step runs with besides the person's choices: settings resolved once (CLI > config
/// file > defaults), the accelerator this host really has, and kiln's own directories.
#[derive(Debug, Clone)]
pub struct Environment {
    pub settings: Settings,
    pub accelerator: Accelerator,
    /// Where machine records live (crash recovery), when kiln has a data directory.
    pub record_dir: Option<PathBuf>,
    /// kiln's config directory (the Djinn token file lives there).
    pub config_dir: Option<PathBuf>,
}

/// What is never written down: asked for, or read from files, on every run.
#[derive(Default, Clone)]
pub struct Secrets {
    /// The install's password for the user (also given to sudo).
    pub password: Option<String>,
    pub passphrase: Option<String>,
    pub token: Option<Token>,
}

/// A secret kept in a file: its first line, without the newline (`echo pw > file` works).
pub fn secret_from_file(file: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(file)?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

impl std::fmt::Debug for Secrets {
    /// Says which secrets are present, never what they are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |present: bool| if present { "<given>" } else { "<none>" };
        f.debug_struct("Secrets")
            .field("password", &given(self.password.is_some()))
            .field("passphrase", &given(self.passphrase.is_some()))
            .field("token", &given(self.token.is_some()))
            .finish()
    }
}

/// How this one run of a step goes; nothing here is recorded in the session.
#[derive(Debug, Clone, Default)]
pub struct StepOptions {
    /// Keep a failed step's machine up, answers given in advance.
    pub task: TaskOptions,
    /// Verify: the static checks only (not a verify publishing can rely on: not recorded).
    pub static_only: bool,
    /// Install: stop after this long; configure and verify: how long to wait for SSH.
    pub timeout: Option<Duration>,
    /// Install: do not serve the screen over VNC.
    pub no_vnc: bool,
    /// Publish even though verify has not passed on these bytes.
    pub unverified: bool,
}

/// Whether the session file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording {
    /// The workbench and `kiln run`: the session file is created if there is none.
    Always,
    /// `kiln check` and the step commands: recorded only in an existing session file, so a
    /// one-off command on someone's image leaves nothing behind.
    IfSessionExists,
}

/// What a step produced.
#[derive(Debug)]
pub enum StepResult {
    Created(ImageInfo),
    Installed(InstallOutcome),
    Configured(Configured),
    /// The report, passed or not: verify's failures are verdicts, not errors.
    Verified(Report),
    Published(Published),
    /// A base image copied into place: a recipe's, or a cloud image standing for the install.
    Copied(BaseCopy),
    /// A recipe's provisioning steps and cleanup, in one boot.
    Provisioned(Provisioned),
    /// The image's facts taken and the post-build command run.
    Finished(Finished),
}

impl StepResult {
    /// Whether the step did what it is for (a verify report with a failed check did not).
    pub fn succeeded(&self) -> bool {
        match self {
            StepResult::Verified(report) => report.passed(),
            _ => true,
        }
    }
}

impl Summary for StepResult {
    fn summary(&self) -> String {
        match self {
            StepResult::Created(info) => info.summary(),
            StepResult::Installed(outcome) => outcome.summary(),
            StepResult::Configured(configured) => configured.summary(),
            StepResult::Verified(report) => report.summary(),
            StepResult::Published(published) => published.summary(),
            StepResult::Copied(copy) => copy.summary(),
            StepResult::Provisioned(provisioned) => provisioned.summary(),
            StepResult::Finished(finished) => finished.summary(),
        }
    }
}

/// Why a step did not produce a result. Frontends map these to exit codes and colours the
/// same way: refused and usage are the person's to fix (exit 2), failed is the image's (1).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Not started, nothing recorded: another kiln runs it, publish before verify, …
    #[error("{0}")]
    Refused(String),
    /// The request or the environment is wrong (a bad size, no ISO, QEMU missing).
    #[error("{0}")]
    Usage(String),
    /// The step ran and failed.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

impl From<TaskPanicked> for StepError {
    fn from(panicked: TaskPanicked) -> StepError {
        StepError::Failed(panicked.to_string())
    }
}

impl StepError {
    /// The person must change something before trying again (exit 2 rather than 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, StepError::Refused(_) | StepError::Usage(_))
    }
}

/// A running step, whichever it is.
pub type StepTask = Task<StepResult, StepError>;

/// Whether `step` boots a machine (and so can keep one for inspection after a failure).
pub fn boots_a_machine(step: Step) -> bool {
    matches!(step, Step::Install | Step::Configure | Step::Verify)
}

/// One image's journey: its session and what steps run with. Clones share the session.
#[derive(Clone)]
pub struct Workflow {
    session: Arc<Mutex<Session>>,
    pub environment: Environment,
}

impl Workflow {
    /// The workflow of `image`, from its session file (or a new session).
    pub fn open(
        image: &Path,
        recording: Recording,
        environment: Environment,
    ) -> Result<Workflow, SessionError> {
        let session = match recording {
            Recording::Always => Session::open(image)?,
            Recording::IfSessionExists => Session::open_if_exists(image)?,
        };
        Ok(Workflow {
            session: Arc::new(Mutex::new(session)),
            environment,
        })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        lock(&self.session)
    }

    pub fn image(&self) -> PathBuf {
        self.session().image().to_path_buf()
    }

    pub fn session_path(&self) -> PathBuf {
        self.session().path().to_path_buf()
    }

    /// The choices carried so far.
    pub fn choices(&self) -> Choices {
        self.session().choices.clone()
    }

    /// Take the choices a frontend made (recorded when the next step begins).
    pub fn choose(&self, choices: &Choices) {
        self.session().choices.update(choices);
    }

    pub fn status(&self, step: Step) -> StepStatus {
        self.session().status(step)
    }

    /// Where a step or another stage stands by its record (see [`Session::stage_status`]).
    pub fn stage_status(&self, stage: StageKey) -> StepStatus {
        self.session().stage_status(stage)
    }

    pub fn record(&self, stage: impl Into<StageKey>) -> Option<StepRecord> {
        self.session().record(stage).cloned()
    }

    /// Forget every record and choice (a fresh build); written when the next stage begins.
    pub fn start_over(&self) {
        self.session().start_over();
    }

    /// Record `step` as done another way (`how`); the warning when that could not be written.
    pub fn record_skipped(&self, step: Step, how: &str) -> Option<String> {
        unrecorded(self.session().skip(step, how))
    }

    /// A stage outside the five steps begins (provisioning, post-build); the warning when
    /// it could not be written.
    pub fn begin_stage(&self, stage: StageKey) -> Option<String> {
        unrecorded(self.session().begin(stage))
    }

    /// Such a stage ended, with the digest of what it ran with.
    pub fn end_stage(
        &self,
        stage: StageKey,
        result: Result<String, String>,
        inputs: Option<String>,
    ) -> Option<String> {
        unrecorded(self.session().end_with_inputs(stage, result, inputs))
    }

    /// Such a stage was stopped on request.
    pub fn stop_stage(&self, stage: StageKey, summary: &str) -> Option<String> {
        unrecorded(self.session().stopped(stage, summary))
    }

    /// The first step not done (or no longer true): where the flow resumes.
    pub fn resume_at(&self) -> Option<Step> {
        self.session().resume_at()
    }

    /// An image kiln did not create is adopted: create (and install, unless an ISO was
    /// chosen) recorded as skipped. Returns the warning when that could not be written.
    pub fn adopt_existing_image(&self) -> Option<String> {
        unrecorded(self.session().adopt_existing_image())
    }

    /// Starting the flow at `first`: the earlier steps not done were done another way.
    /// Returns the warning when that could not be written.
    pub fn skip_before(&self, first: Step) -> Option<String> {
        let mut session = self.session();
        let mut unrecorded = None;
        for earlier in Step::ALL.into_iter().filter(|s| *s < first) {
            if !session.status(earlier).is_settled() {
                let reason = format!("not run by kiln: the flow was started at {}", first.name());
                // Recorded in memory either way, so this run still starts at `first`.
                if let Err(e) = session.skip(earlier, &reason) {
                    unrecorded = Some(not_recorded(&e));
                }
            }
        }
        unrecorded
    }

    /// Start `step` with the carried choices. Everything from here on — refusals, warnings,
    /// questions, the result — arrives as events on the returned task.
    pub fn start(&self, step: Step, secrets: Secrets, options: StepOptions) -> StepTask {
        let title = title(step, &self.session());
        let session = self.session.clone();
        let environment = self.environment.clone();
        task::spawn(title, options.task, move |reporter| {
            run_step(step, session, environment, secrets, options, reporter)
        })
    }
}

/// The value behind `mutex`, even after a panic while it was held: what the workflow and the
/// plan keep there (the session, a stage's report lines) is changed in single calls, so it is
/// still a valid value.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The step's first log line, the same in every frontend.
fn title(step: Step, session: &Session) -> String {
    let image = session.image().display();
    let choices = &session.choices;
    match step {
        Step::Create => format!(
            "creating {image} ({})",
            choices
                .size
                .as_ref()
                .map_or(requests::DEFAULT_SIZE.to_string(), ToString::to_string)
        ),
        Step::Install if choices.starts_from_cloud_image() => format!(
            "copying the cloud image {} onto {image}",
            choices
                .base_image
                .as_deref()
                .unwrap_or(Path::new(""))
                .display()
        ),
        Step::Install => match &choices.iso {
            Some(iso) => format!("installing {} onto {image}", iso.display()),
            None => format!("installing onto {image}"),
        },
        Step::Configure if through_seed(session) => {
            format!("configuring {image} through a NoCloud seed (a cloud image)")
        }
        Step::Configure => format!(
            "configuring {image} as {}",
            choices.user.as_deref().unwrap_or("root")
        ),
        Step::Verify => format!("checking {image}"),
        Step::Publish => format!(
            "publishing {image} to {}",
            choices.target.unwrap_or_default().name()
        ),
    }
}

/// The whole life of one step: refusals, begin, the work, the record of how it ended.
async fn run_step(
    step: Step,
    session: Arc<Mutex<Session>>,
    environment: Environment,
    secrets: Secrets,
    options: StepOptions,
    reporter: Reporter,
) -> Result<StepResult, StepError> {
    let image = lock(&session).image().to_path_buf();
    let mut force = false;
    {
        let mut session = lock(&session);
        if step != Step::Create
            && let Err(e) = session.adopt_existing_image()
        {
            reporter.warn(not_recorded(&e));
        }
        if step == Step::Publish && session.is_persistent() && !options.unverified {
            session.publish_allowed().map_err(|refusal| {
                StepError::Refused(format!(
                    "{refusal} (`kiln check {}` or `kiln run`; --unverified publishes anyway)",
                    image.display()
                ))
            })?;
        }
    }
    // A directory or a missing folder is the plan's to explain; an existing file is asked about.
    if step == Step::Create && image.is_file() {
        let question = Question::ReplaceFile {
            path: image.clone(),
        };
        if !reporter.ask(question).await {
            return Err(StepError::Refused(
                image::CreateError::Exists(image).to_string(),
            ));
        }
        force = true;
    }
    // A cloud image's copy stands for the blank disk create would have made.
    let configured_before = {
        let mut session = lock(&session);
        let cloud = session.choices.starts_from_cloud_image();
        if step == Step::Install
            && cloud
            && !session.status(Step::Create).is_settled()
            && let Err(e) = session.skip(Step::Create, "the cloud image's copy stands for it")
        {
            reporter.warn(not_recorded(&e));
        }
        step == Step::Configure && cloud && !through_seed(&session)
    };
    // A static-only check is not a verify the flow can publish on: it is not recorded.
    let recorded = !(step == Step::Verify && options.static_only);
    if recorded {
        match lock(&session).begin(step) {
            Ok(()) => {}
            Err(e @ SessionError::Write(..)) => reporter.warn(not_recorded(&e)),
            Err(e) => return Err(StepError::Refused(e.to_string())),
        }
    }
    // A kiln killed mid-step could not remove its temporary files (a half image, a half
    // compacted copy, a session file being written): they go now, and the log says so.
    for leftover in temp_file::sweep(&temp_file::parent_dir(&image)) {
        reporter.info(format!(
            "removed {}, left by a kiln that was killed",
            leftover.display()
        ));
    }
    let mut choices = lock(&session).choices.clone();
    if configured_before {
        reporter.info(
            "configured before: cloud-init is off in this image, so kiln logs in as root with the empty password",
        );
        choices.cloud_init = Some(false);
        choices.user = Some("root".into());
        choices.key = None;
    }
    let result = work(
        step,
        &image,
        &choices,
        &environment,
        &secrets,
        &options,
        force,
        &reporter,
    )
    .await;
    if recorded {
        let mut session = lock(&session);
        if let Ok(StepResult::Copied(copy)) = &result {
            session.choices.update(&Choices {
                base_sha256: copy.sha256.clone(),
                ..Choices::default()
            });
        }
        let recorded = match &result {
            Ok(done) if done.succeeded() => session.end(step, Ok(done.summary())),
            Ok(done) => session.end(step, Err(done.summary())),
            // Stopping is not failing: resume runs it again, the list says "stopped".
            Err(StepError::Cancelled(cancelled)) => session.stopped(step, &cancelled.to_string()),
            Err(e) => session.end(step, Err(e.to_string())),
        };
        if let Err(e) = recorded {
            reporter.warn(not_recorded(&e));
        }
    }
    result
}

/// Whether configure gets into a cloud image through kiln's seed. Not once configure is done:
/// cloud-init is switched off and the build user gone by then, so the seed cannot let kiln in
/// again, but root's empty password (configure's own work) does.
fn through_seed(session: &Session) -> bool {
    session.choices.starts_from_cloud_image() && session.status(Step::Configure) != StepStatus::Done
}

/// The warning when a record could not be written, if it could not.
fn unrecorded(written: Result<(), SessionError>) -> Option<String> {
    written.err().map(|e| not_recorded(&e))
}

/// The warning every frontend shows when the session file cannot be written.
pub fn not_recorded(error: &SessionError) -> String {
    format!("{error} — this run is not recorded, so it cannot be resumed")
}

/// Build the step's request and run it.
#[allow(clippy::too_many_arguments)]
async fn work(
    step: Step,
    image: &Path,
    choices: &Choices,
    environment: &Environment,
    secrets: &Secrets,
    options: &StepOptions,
    force: bool,
    reporter: &Reporter,
) -> Result<StepResult, StepError> {
    let reporter = reporter.clone();
    match step {
        Step::Create => {
            let request = requests::create_request(image, choices, force);
            let plan = image::plan_create(&request).await?;
            if let Some(free) = plan.free_space {
                reporter.info(format!(
                    "{} free in the target directory",
                    super::units::human_bytes(free)
                ));
            }
            image::create(plan, reporter)
                .await
                .map(StepResult::Created)
                .map_err(StepError::from)
        }
        Step::Install if choices.starts_from_cloud_image() => {
            let base = choices.base_image.as_deref().unwrap_or(Path::new(""));
            if base.as_os_str().is_empty() {
                return Err(StepError::Usage(
                    "a cloud image needs its path (kiln run --base FILE)".into(),
                ));
            }
            base::copy_base(base, image, choices, &reporter)
                .await
                .map(StepResult::Copied)
        }
        Step::Install => {
            let request = requests::install_request(image, choices, secrets, environment, options)
                .map_err(StepError::Usage)?;
            install::install(request, reporter)
                .await
                .map(StepResult::Installed)
                .map_err(StepError::from)
        }
        Step::Configure => {
            let request =
                requests::configure_request(image, choices, secrets, environment, options)
                    .map_err(StepError::Usage)?;
            configure::configure(request, reporter)
                .await
                .map(StepResult::Configured)
                .map_err(StepError::from)
        }
        Step::Verify => {
            let request = requests::verify_request(image, choices, secrets, environment, options);
            verify::verify(request, reporter)
                .await
                .map(StepResult::Verified)
                .map_err(|e| match e {
                    verify::VerifyError::Cancelled(c) => c.into(),
                    e @ verify::VerifyError::Boot(_) => StepError::Usage(e.to_string()),
                    e => StepError::Failed(e.to_string()),
                })
        }
        Step::Publish => {
            let request = requests::publish_request(image, choices, secrets, environment)?;
            publish::publish(request, reporter)
                .await
                .map(StepResult::Published)
                .map_err(StepError::from)
        }
    }
}

/// Each step's own error, sorted the way every frontend reports it: its cancellation is the
/// shared [`Cancelled`], a usage error is the person's to fix, anything else a failure.
macro_rules! step_errors {
    ($($error:ident),*) => {$(
        impl From<$error> for StepError {
            fn from(error: $error) -> StepError {
                match error {
                    $error::Cancelled(cancelled) => StepError::Cancelled(cancelled),
                    error if error.is_usage() => StepError::Usage(error.to_string()),
                    error => StepError::Failed(error.to_string()),
                }
            }
        }
    )*};
}
step_errors!(CreateError, InstallError, ConfigureError, PublishError);
