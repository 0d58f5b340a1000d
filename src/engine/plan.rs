//! A plan: the stages one run goes through, in order. This is the only place that decides
//! which stages a run has and which of them run again: `kiln run`, `kiln build` and the
//! workbench build a [`Plan`] and drive a [`PlanRun`], which hands them one task at a time and
//! the lines to report; frontends follow tasks and print, nothing more.
//!
//! What runs again, the same for every plan:
//! - a stage that is not settled (never run, failed, stopped, stale) runs;
//! - a *forced* stage runs even when settled (`kiln run --from`, a fresh `kiln build`, and a
//!   recipe's verify, publish and post-build, which judge and ship the image as it is now);
//! - a provisioning step or the cleanup is settled when it is done, its inputs (the script's
//!   bytes, its variables, …) are what they were, and no stage before it ran after it — so a
//!   resumed build reruns the script that failed and what follows, not the ones before it.
//!
//! Provisioning steps and the cleanup that run together share one boot; each is still
//! recorded on its own (`provision-N`, `cleanup` in the session file) as it ends.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Step;
use super::build;
use super::driver::Profile;
use super::recipe::{Recipe, Source};
use super::session::{Choices, StageKey, StepStatus};
use super::task::{self, Reporter, Summary};
use super::workflow::requests::headless_install_warning;
use super::workflow::{
    Secrets, StepError, StepOptions, StepResult, StepTask, Workflow, base, lock,
};
use crate::engine::steps::configure::Cleanup;
use crate::engine::steps::install::HEADLESS_TIMEOUT;
use crate::engine::steps::post_build::{self, PostBuildCommand};
use crate::engine::steps::provision::{self, ProvisionError, ProvisionProgress, ProvisionStep};
use crate::engine::steps::publish::Token;

/// One stage of a plan.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Copy a base image (only ever read) to the image: a recipe's `[base]`.
    Base(PathBuf),
    Create,
    /// Install, stopped after `timeout` when one is set.
    Install {
        timeout: Option<Duration>,
    },
    Configure,
    /// A recipe's provisioning step, numbered from 1.
    Provision {
        number: usize,
        step: ProvisionStep,
    },
    /// A recipe's cleanup, last in the guest.
    Cleanup(Cleanup),
    /// Verify, imitating `profile` (a recipe names each) or the session's choice.
    Verify(Option<Profile>),
    /// Publish to one destination (a recipe names each) or to the session's choice.
    Publish(Option<Box<Destination>>),
    /// The image's facts (size, SHA-256), then a recipe's post-build command.
    PostBuild(PostBuildCommand),
}

/// One of a recipe's publish destinations: its choices and the token it reads.
#[derive(Debug, Clone)]
pub struct Destination {
    pub choices: Choices,
    pub token: Option<Token>,
}

impl Stage {
    /// The stage's name in reports, logs and the step list.
    pub fn name(&self) -> String {
        match self {
            Stage::Base(_) => "base".into(),
            Stage::Create => Step::Create.name().into(),
            Stage::Install { .. } => Step::Install.name().into(),
            Stage::Configure => Step::Configure.name().into(),
            Stage::Provision { number, .. } => format!("provision {number}"),
            Stage::Cleanup(_) => "cleanup".into(),
            Stage::Verify(None) => Step::Verify.name().into(),
            Stage::Verify(Some(profile)) => format!("verify {}", profile.name()),
            Stage::Publish(None) => Step::Publish.name().into(),
            Stage::Publish(Some(destination)) => format!(
                "publish {}",
                destination.choices.target.unwrap_or_default().name()
            ),
            Stage::PostBuild(_) => "post-build".into(),
        }
    }

    /// One line on what the stage does, for the workbench.
    pub fn purpose(&self) -> &'static str {
        match self {
            Stage::Base(_) => "copy the recipe's base image (never changed itself)",
            Stage::Provision { .. } => "the recipe's provisioning step, as root in the guest",
            Stage::Cleanup(_) => "the recipe's cleanup, last in the guest",
            Stage::PostBuild(_) => "the image's facts, then the recipe's post-build command",
            other => other.step().expect("the five steps").purpose(),
        }
    }

    /// The workflow step this stage is, when it is one of the five.
    pub fn step(&self) -> Option<Step> {
        match self {
            Stage::Create => Some(Step::Create),
            Stage::Install { .. } => Some(Step::Install),
            Stage::Configure => Some(Step::Configure),
            Stage::Verify(_) => Some(Step::Verify),
            Stage::Publish(_) => Some(Step::Publish),
            Stage::Base(_) | Stage::Provision { .. } | Stage::Cleanup(_) | Stage::PostBuild(_) => {
                None
            }
        }
    }

    /// Where the session file keeps this stage's record (a base copy is recorded as the
    /// create it stands for).
    fn key(&self) -> StageKey {
        match self {
            Stage::Base(_) => StageKey::Step(Step::Create),
            Stage::Provision { number, .. } => StageKey::Provision(*number),
            Stage::Cleanup(_) => StageKey::Cleanup,
            Stage::PostBuild(_) => StageKey::PostBuild,
            other => StageKey::Step(other.step().expect("the five steps")),
        }
    }

    /// Runs inside the provisioning boot.
    fn is_in_guest(&self) -> bool {
        matches!(self, Stage::Provision { .. } | Stage::Cleanup(_))
    }

    /// A digest of what a provisioning step or the cleanup runs with; `None` when a file it
    /// names cannot be read (the stage then runs, and says so).
    fn inputs(&self) -> Option<String> {
        let mut digest = Sha256::new();
        let mut add = |part: &[u8]| {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        };
        match self {
            Stage::Provision {
                step: ProvisionStep::Upload { from, to, mode },
                ..
            } => {
                add(b"upload");
                add(from.as_os_str().as_encoded_bytes());
                add(to.as_bytes());
                add(format!("{mode:?}").as_bytes());
                add(&std::fs::read(from).ok()?);
            }
            Stage::Provision {
                step: ProvisionStep::Shell { script, env },
                ..
            } => {
                add(b"shell");
                add(script.as_os_str().as_encoded_bytes());
                for (name, value) in env {
                    add(name.as_bytes());
                    add(value.as_bytes());
                }
                add(&std::fs::read(script).ok()?);
            }
            Stage::Cleanup(extras) => add(format!("{extras:?}").as_bytes()),
            _ => return None,
        }
        Some(hex::encode(digest.finalize()))
    }
}

/// A stage in a plan, and whether it runs even when settled.
#[derive(Debug, Clone)]
struct Planned {
    stage: Stage,
    forced: bool,
}

/// The stages of one run, in order, and the choices they start from.
#[derive(Debug, Clone)]
pub struct Plan {
    stages: Vec<Planned>,
    /// Taken into the session before the first stage.
    choices: Choices,
    /// Start over: the session's records and choices are dropped first (a fresh build).
    fresh: bool,
    /// `kiln run --from STEP`: the steps before it not done are recorded as done another way.
    started_at: Option<Step>,
    /// Said once before the first stage (why a stage is not in the plan).
    pub notes: Vec<String>,
}

impl Plan {
    /// `kiln run`: the five steps up to `until`; from `from` on they run even when done.
    /// Publish is left out when no target is chosen (`choices` are the session's, merged).
    /// The install is stopped after `install_timeout` ([`HEADLESS_TIMEOUT`] when unset).
    pub fn flow(
        choices: Choices,
        carried: &Choices,
        from: Option<Step>,
        until: Option<Step>,
        install_timeout: Option<Duration>,
    ) -> Plan {
        let last = until.unwrap_or(Step::Publish);
        let mut notes = Vec::new();
        let target_chosen = choices.target.or(carried.target).is_some();
        // A cloud image (`--base`, or the workbench's Install) is copied instead of created
        // and installed; a later choice of an installer switches it off.
        let cloud = choices.cloud_init.or(carried.cloud_init) == Some(true);
        let base = choices
            .base_image
            .clone()
            .or(carried.base_image.clone())
            .filter(|_| cloud);
        let stages = Step::ALL
            .into_iter()
            .filter(|step| *step <= last)
            .filter(|step| base.is_none() || *step != Step::Install)
            .filter(|step| {
                let publish_without_target = *step == Step::Publish && !target_chosen;
                if publish_without_target {
                    notes.push(
                        "no publish target (--to djinn|offline|srht): stopping after verify".into(),
                    );
                }
                !publish_without_target
            })
            .map(|step| Planned {
                stage: match step {
                    Step::Create => match &base {
                        Some(base) => Stage::Base(base.clone()),
                        None => Stage::Create,
                    },
                    Step::Install => Stage::Install {
                        timeout: Some(install_timeout.unwrap_or(HEADLESS_TIMEOUT)),
                    },
                    Step::Configure => Stage::Configure,
                    Step::Verify => Stage::Verify(None),
                    Step::Publish => Stage::Publish(None),
                },
                forced: from.is_some_and(|first| step >= first),
            })
            .collect();
        Plan {
            stages,
            choices,
            fresh: false,
            started_at: from,
            notes,
        }
    }

    /// `kiln build`: everything the recipe asks for. Fresh unless `resume`: then the stages
    /// done and still true are not run again (verify, publish and post-build always are).
    pub fn recipe(recipe: &Recipe, resume: bool, tokens: Vec<Option<Token>>) -> Plan {
        let mut stages = Vec::new();
        let mut add = |stage: Stage, forced: bool| stages.push(Planned { stage, forced });
        match &recipe.source {
            Source::Base(base) => add(Stage::Base(base.image.clone()), !resume),
            Source::Install(install) => {
                add(Stage::Create, !resume);
                add(
                    Stage::Install {
                        timeout: Some(install.timeout.unwrap_or(HEADLESS_TIMEOUT)),
                    },
                    !resume,
                );
            }
        }
        add(Stage::Configure, !resume);
        for (index, step) in recipe.provision.iter().enumerate() {
            let number = index + 1;
            let step = step.clone();
            add(Stage::Provision { number, step }, !resume);
        }
        if !recipe.cleanup.is_empty() {
            add(Stage::Cleanup(recipe.cleanup.clone()), !resume);
        }
        for profile in &recipe.verify.profiles {
            add(Stage::Verify(Some(*profile)), true);
        }
        // A destination without a token of its own uses kiln's usual one.
        let tokens = tokens.into_iter().chain(std::iter::repeat(None));
        for (publish, token) in recipe.publish.iter().zip(tokens) {
            let choices = build::publish_choices(recipe, publish);
            add(
                Stage::Publish(Some(Box::new(Destination { choices, token }))),
                true,
            );
        }
        add(Stage::PostBuild(build::post_build_command(recipe)), true);
        Plan {
            stages,
            choices: build::choices(recipe),
            fresh: !resume,
            started_at: None,
            notes: Vec::new(),
        }
    }

    /// The stages, in order.
    pub fn stages(&self) -> impl Iterator<Item = &Stage> {
        self.stages.iter().map(|planned| &planned.stage)
    }

    /// Where the stage at `index` stands on `workflow`'s image: what its record says, and
    /// stale when a provisioning step's inputs changed or a stage before it ran since.
    pub fn status(&self, workflow: &Workflow, index: usize) -> StepStatus {
        let stage = &self.stages[index].stage;
        match stage {
            Stage::Base(_) if !workflow.image().exists() => StepStatus::Pending,
            Stage::Base(_) => match workflow.status(Step::Create) {
                // The copy is recorded as the create it stands for.
                StepStatus::Skipped => StepStatus::Done,
                other => other,
            },
            Stage::Provision { .. } | Stage::Cleanup(_) => {
                let status = workflow.stage_status(stage.key());
                let Some(record) = workflow.record(stage.key()).filter(|_| status.is_settled())
                else {
                    return status;
                };
                let earlier_ran_since = self.stages[..index].iter().find(|earlier| {
                    workflow
                        .record(earlier.stage.key())
                        .is_some_and(|other| other.seq > record.seq)
                });
                if let Some(earlier) = earlier_ran_since {
                    return StepStatus::Stale(format!(
                        "{} ran again after it",
                        earlier.stage.name()
                    ));
                }
                if record.inputs.is_none() || record.inputs != stage.inputs() {
                    return StepStatus::Stale("what it runs changed since".into());
                }
                status
            }
            other => workflow.stage_status(other.key()),
        }
    }
}

/// One stage's line in a run's report: run now, or why not.
#[derive(Debug, Clone, Serialize)]
pub struct StageLine {
    pub step: String,
    /// done, failed or stopped when it ran now; skipped when it did not.
    pub status: &'static str,
    /// Wall-clock seconds this run spent on it (0 when it did not run).
    pub seconds: f64,
    pub summary: String,
}

/// What the frontend does next.
pub enum Next {
    /// The stage at `index` is not run again: report its line.
    Skipped { index: usize, line: StageLine },
    /// Follow this task, which runs the stages at `indices`, then hand its result to
    /// [`PlanRun::ended`].
    Started {
        indices: std::ops::Range<usize>,
        name: String,
        task: StepTask,
    },
    /// Nothing more runs: the plan is done, or a stage did not succeed.
    Finished,
}

/// A plan being run on one image's workflow.
pub struct PlanRun {
    workflow: Workflow,
    plan: Plan,
    secrets: Secrets,
    options: StepOptions,
    position: usize,
    over: bool,
    /// What is in flight: the stages the current task runs, when it started, and the lines
    /// of in-guest stages as they end.
    running: Option<Running>,
}

struct Running {
    stages: Vec<Stage>,
    started: Instant,
    lines: Arc<Mutex<Vec<StageLine>>>,
}

impl PlanRun {
    /// Ready to run `plan`: its choices taken, an image kiln did not make adopted, and the
    /// steps before a forced start recorded as done another way. The warnings (a session
    /// file that cannot be written) are the frontend's to show.
    pub fn new(
        workflow: Workflow,
        plan: Plan,
        secrets: Secrets,
        options: StepOptions,
    ) -> (PlanRun, Vec<String>) {
        let mut warnings = Vec::new();
        if plan.fresh {
            workflow.start_over();
        }
        workflow.choose(&plan.choices);
        let copies_a_base = plan.stages().any(|stage| matches!(stage, Stage::Base(_)));
        if !copies_a_base {
            warnings.extend(workflow.adopt_existing_image());
        }
        // Starting later means the steps before were done another way (an image configured
        // by hand): recorded as skipped, so the next run does not go back to them.
        if let Some(first) = plan.started_at {
            warnings.extend(workflow.skip_before(first));
        }
        warnings.dedup();
        // One warning is enough when both name the same file.
        warnings.truncate(1);
        let run = PlanRun {
            workflow,
            plan,
            secrets,
            options,
            position: 0,
            over: false,
            running: None,
        };
        (run, warnings)
    }

    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The secrets stages run with, once the frontend knows which it needs
    /// ([`PlanRun::will_run`]).
    pub fn set_secrets(&mut self, secrets: Secrets) {
        self.secrets = secrets;
    }

    /// What a headless frontend says before the stages start: an install that nothing will
    /// answer (see [`headless_install_warning`]).
    pub fn headless_warnings(&self) -> Vec<String> {
        let timeout = self.plan.stages[self.position..]
            .iter()
            .find_map(|planned| match planned.stage {
                Stage::Install { timeout } => Some(timeout.unwrap_or(HEADLESS_TIMEOUT)),
                _ => None,
            });
        match timeout {
            Some(timeout) if self.will_run(Step::Install) => {
                headless_install_warning(&self.workflow.choices(), timeout)
                    .into_iter()
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether `step` is going to run (a frontend asks for passwords only when configure
    /// will need them).
    pub fn will_run(&self, step: Step) -> bool {
        (self.position..self.plan.stages.len())
            .any(|index| self.plan.stages[index].stage.step() == Some(step) && self.runs(index))
    }

    /// Whether the stage at `index` runs: forced, or not settled.
    fn runs(&self, index: usize) -> bool {
        let planned = &self.plan.stages[index];
        planned.forced || !self.settled(index)
    }

    fn settled(&self, index: usize) -> bool {
        self.plan.status(&self.workflow, index).is_settled()
    }

    /// The next thing to do. Call again after reporting a skipped line or ending a task.
    pub fn next_stage(&mut self) -> Next {
        if self.over || self.running.is_some() || self.position >= self.plan.stages.len() {
            return Next::Finished;
        }
        let index = self.position;
        if !self.runs(index) {
            self.position += 1;
            let line = self.not_run(index);
            return Next::Skipped { index, line };
        }
        let stage = self.plan.stages[index].stage.clone();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stages, task) = if stage.is_in_guest() {
            // Every in-guest stage from here on runs in the same boot.
            let count = self.plan.stages[index..]
                .iter()
                .take_while(|planned| planned.stage.is_in_guest())
                .count();
            let stages: Vec<Stage> = self.plan.stages[index..index + count]
                .iter()
                .map(|planned| planned.stage.clone())
                .collect();
            let task = self.start_in_guest(stages.clone(), lines.clone());
            (stages, task)
        } else {
            (vec![stage.clone()], self.start(&stage))
        };
        self.position += stages.len();
        let name = match stages.as_slice() {
            [only] => only.name(),
            _ => "provision".into(),
        };
        self.running = Some(Running {
            stages,
            started: Instant::now(),
            lines,
        });
        Next::Started {
            indices: index..self.position,
            name,
            task,
        }
    }

    /// The task [`Next::Started`] gave has ended with `result`: its stages' lines. A stage
    /// that did not succeed ends the run.
    pub fn ended(&mut self, result: &Result<StepResult, StepError>) -> Vec<StageLine> {
        let Some(running) = self.running.take() else {
            return Vec::new();
        };
        let succeeded = matches!(result, Ok(done) if done.succeeded());
        if !succeeded {
            self.over = true;
        }
        let seconds = running.started.elapsed().as_secs_f64();
        if running.stages.iter().all(Stage::is_in_guest) {
            return std::mem::take(&mut *lock(&running.lines));
        }
        let (status, summary) = match result {
            Ok(done) => (if succeeded { "done" } else { "failed" }, done.summary()),
            Err(error) => (ended_by(error), error.to_string()),
        };
        running
            .stages
            .iter()
            .map(|stage| StageLine {
                step: stage.name(),
                status,
                seconds,
                summary: summary.clone(),
            })
            .collect()
    }

    /// Every stage ran or was settled: nothing failed, was stopped, or is left.
    pub fn completed(&self) -> bool {
        !self.over && self.running.is_none() && self.position >= self.plan.stages.len()
    }

    /// Stop here: no further stage starts (a stop was asked for between stages). Returns the
    /// stage that would have run next, if one would have.
    pub fn stop(&mut self) -> Option<String> {
        let next = (self.position..self.plan.stages.len()).find(|index| self.runs(*index));
        self.over = true;
        next.map(|index| self.plan.stages[index].stage.name())
    }

    /// The line of a stage that does not run now: what its record says.
    fn not_run(&self, index: usize) -> StageLine {
        let stage = &self.plan.stages[index].stage;
        let record = self.workflow.record(stage.key());
        let word = self.plan.status(&self.workflow, index).word();
        let summary = match record.and_then(|r| r.summary) {
            Some(summary) => format!("{word} earlier: {summary}"),
            None => format!("{word} earlier"),
        };
        StageLine {
            step: stage.name(),
            status: "skipped",
            seconds: 0.0,
            summary,
        }
    }

    /// Start one stage that is not in the guest.
    fn start(&self, stage: &Stage) -> StepTask {
        let mut options = self.options.clone();
        let mut secrets = self.secrets.clone();
        match stage {
            Stage::Install { timeout } => options.timeout = *timeout,
            Stage::Verify(Some(profile)) => self.workflow.choose(&Choices {
                profile: Some(*profile),
                ..Choices::default()
            }),
            Stage::Publish(Some(destination)) => {
                self.workflow.choose(&destination.choices);
                secrets.token = destination.token.clone().or(secrets.token);
            }
            _ => {}
        }
        match stage {
            Stage::Base(base) => self.copy_base(base.clone()),
            Stage::PostBuild(command) => self.post_build(command.clone()),
            other => {
                let step = other.step().expect("the five steps");
                self.workflow.start(step, secrets, options)
            }
        }
    }

    /// Copy the base; create and install are then recorded as done by the copy, and a cloud
    /// image's SHA-256 is kept in the session.
    fn copy_base(&self, base: PathBuf) -> StepTask {
        let workflow = self.workflow.clone();
        let image = workflow.image();
        let title = format!("copying {} to {}", base.display(), image.display());
        let choices = workflow.choices();
        task::spawn(title, self.options.task, move |reporter| async move {
            let copy = base::copy_base(&base, &image, &choices, &reporter).await?;
            workflow.choose(&Choices {
                base_sha256: copy.sha256.clone(),
                ..Choices::default()
            });
            let how = format!("copied from {}", base.display());
            for step in [Step::Create, Step::Install] {
                if let Some(warning) = workflow.record_skipped(step, &how) {
                    reporter.warn(warning);
                }
            }
            Ok(StepResult::Copied(copy))
        })
    }

    /// The image's facts and the post-build command, recorded as `post-build`.
    fn post_build(&self, command: PostBuildCommand) -> StepTask {
        let workflow = self.workflow.clone();
        let image = workflow.image();
        task::spawn(
            "post-build",
            self.options.task,
            move |reporter| async move {
                if let Some(warning) = workflow.begin_stage(StageKey::PostBuild) {
                    reporter.warn(warning);
                }
                let result = post_build::finish(&command, &image, reporter.clone()).await;
                let outcome = match &result {
                    Ok(finished) => Ok(finished.summary()),
                    Err(error) => Err(error.to_string()),
                };
                if let Some(warning) = workflow.end_stage(StageKey::PostBuild, outcome, None) {
                    reporter.warn(warning);
                }
                result
                    .map(StepResult::Finished)
                    .map_err(|e| StepError::Failed(e.to_string()))
            },
        )
    }

    /// Provisioning steps and the cleanup, in one boot, each recorded as it ends.
    fn start_in_guest(&self, stages: Vec<Stage>, lines: Arc<Mutex<Vec<StageLine>>>) -> StepTask {
        let workflow = self.workflow.clone();
        let mut steps = Vec::new();
        let mut cleanup = Cleanup::none();
        for stage in &stages {
            match stage {
                Stage::Provision { step, .. } => steps.push(step.clone()),
                Stage::Cleanup(chosen) => cleanup = chosen.clone(),
                _ => unreachable!("only in-guest stages are grouped"),
            }
        }
        let request = build::provision_request(&workflow, steps, cleanup);
        let names: Vec<String> = stages.iter().map(Stage::name).collect();
        let title = format!(
            "provisioning {}: {}",
            workflow.image().display(),
            names.join(", ")
        );
        task::spawn(title, self.options.task, move |reporter| async move {
            let tracker = InGuest {
                workflow: workflow.clone(),
                stages,
                lines,
                current: Mutex::new(None),
                reporter: reporter.clone(),
            };
            // Before the boot: a machine that never comes up fails the first stage.
            tracker.began(0);
            let result = provision::provision(request, reporter, |progress| match progress {
                ProvisionProgress::Began(index) => tracker.began(index),
                ProvisionProgress::Done(index, summary) => tracker.done(index, summary),
            })
            .await;
            match result {
                Ok(provisioned) => Ok(StepResult::Provisioned(provisioned)),
                Err(error) => {
                    let error = step_error(error);
                    tracker.failed(&error);
                    Err(error)
                }
            }
        })
    }
}

/// The in-guest stages of one boot, recorded one by one as provisioning reports them.
struct InGuest {
    workflow: Workflow,
    stages: Vec<Stage>,
    lines: Arc<Mutex<Vec<StageLine>>>,
    /// The stage under way and when it began.
    current: Mutex<Option<(usize, Instant)>>,
    reporter: Reporter,
}

impl InGuest {
    fn began(&self, index: usize) {
        let mut current = lock(&self.current);
        if current.is_some_and(|(at, _)| at == index) {
            return;
        }
        *current = Some((index, Instant::now()));
        if let Some(warning) = self.workflow.begin_stage(self.stages[index].key()) {
            self.reporter.warn(warning);
        }
    }

    fn done(&self, index: usize, summary: String) {
        self.close(index, Ok(summary));
    }

    /// The stage under way did not end well.
    fn failed(&self, error: &StepError) {
        let index = lock(&self.current).map_or(0, |(index, _)| index);
        self.close(index, Err(error));
    }

    fn close(&self, index: usize, result: Result<String, &StepError>) {
        let started = lock(&self.current)
            .take()
            .map_or_else(Instant::now, |(_, at)| at);
        let stage = &self.stages[index];
        let (status, summary) = match &result {
            Ok(summary) => ("done", summary.clone()),
            Err(error) => (ended_by(error), error.to_string()),
        };
        let warning = match result {
            Err(StepError::Cancelled(_)) => self.workflow.stop_stage(stage.key(), &summary),
            ended => {
                let outcome = ended.map(|_| summary.clone()).map_err(|_| summary.clone());
                self.workflow
                    .end_stage(stage.key(), outcome, stage.inputs())
            }
        };
        if let Some(warning) = warning {
            self.reporter.warn(warning);
        }
        lock(&self.lines).push(StageLine {
            step: stage.name(),
            status,
            seconds: started.elapsed().as_secs_f64(),
            summary,
        });
    }
}

/// The status of a stage that ended with `error`: stopped on request (not a failure), or
/// failed.
fn ended_by(error: &StepError) -> &'static str {
    match error {
        StepError::Cancelled(_) => "stopped",
        _ => "failed",
    }
}

/// Provisioning's errors, sorted the way every frontend reports them.
fn step_error(error: ProvisionError) -> StepError {
    match error {
        ProvisionError::Cancelled(cancelled) => StepError::Cancelled(cancelled),
        ProvisionError::Disk(refusal) => StepError::Usage(refusal.to_string()),
        other => StepError::Failed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::engine::host::Accelerator;
    use crate::engine::host::config::{CliOverrides, FileConfig, HostResources, resolve};
    use crate::engine::workflow::{Environment, Recording};

    /// A recipe in `dir` that installs, configures and runs two scripts.
    fn recipe(dir: &Path) -> Recipe {
        std::fs::write(dir.join("installer.iso"), b"iso").unwrap();
        for script in ["one.sh", "two.sh"] {
            std::fs::write(dir.join(script), "#!/bin/sh\necho hi\n").unwrap();
        }
        let text = "name = \"ci\"\n[install]\niso = \"installer.iso\"\n\
                    [[provision]]\nshell = \"one.sh\"\n[[provision]]\nshell = \"two.sh\"\n";
        std::fs::write(dir.join("ci.toml"), text).unwrap();
        Recipe::load(&dir.join("ci.toml"), &[]).unwrap()
    }

    /// The recipe's image (a few bytes stand for it), its workflow, and its plan resumed.
    fn resumed_recipe() -> (tempfile::TempDir, Workflow, Plan) {
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe(dir.path());
        let image = build::image_path(&recipe);
        std::fs::write(&image, b"QFI\xfb an image").unwrap();
        let plan = Plan::recipe(&recipe, true, Vec::new());
        (dir, workflow(&image), plan)
    }

    fn workflow(image: &Path) -> Workflow {
        let host = HostResources {
            cpus: 2,
            memory_mib: 8192,
            software_emulation: false,
        };
        let environment = Environment {
            settings: resolve(CliOverrides::default(), FileConfig::default(), host),
            accelerator: Accelerator::Tcg,
            record_dir: None,
            config_dir: None,
        };
        Workflow::open(image, Recording::Always, environment).unwrap()
    }

    /// Record `stage` as its run ended, with the inputs it had then.
    fn ran(workflow: &Workflow, plan: &Plan, index: usize, result: Result<String, String>) {
        let stage = &plan.stages[index].stage;
        assert_eq!(workflow.begin_stage(stage.key()), None);
        assert_eq!(
            workflow.end_stage(stage.key(), result, stage.inputs()),
            None
        );
    }

    fn names(plan: &Plan, indices: std::ops::Range<usize>) -> Vec<String> {
        plan.stages[indices]
            .iter()
            .map(|p| p.stage.name())
            .collect()
    }

    /// A resumed build starts at the first stage not done: a configure that failed runs again
    /// (it is not taken as done another way), and so does everything after it.
    #[test]
    fn a_resumed_recipe_reruns_the_failed_stage_and_what_follows() {
        let (_dir, workflow, plan) = resumed_recipe();
        assert_eq!(
            names(&plan, 0..plan.stages.len()),
            [
                "create",
                "install",
                "configure",
                "provision 1",
                "provision 2",
                "verify djinn",
                "post-build"
            ]
        );
        ran(&workflow, &plan, 0, Ok("created".into()));
        ran(&workflow, &plan, 1, Ok("installed".into()));
        ran(&workflow, &plan, 2, Err("password rejected".into()));
        let (run, warnings) = PlanRun::new(
            workflow.clone(),
            plan.clone(),
            Secrets::default(),
            StepOptions::default(),
        );
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(run.will_run(Step::Configure));
        assert!(!run.runs(0) && !run.runs(1));
        assert_eq!(
            workflow.status(Step::Configure),
            StepStatus::Failed("password rejected".into())
        );
    }

    /// A provisioning step is done only while its inputs and everything before it are as they
    /// were: the second script changing makes it (and only it) run again; configure running
    /// again makes both stale.
    #[test]
    fn provisioning_is_stale_when_its_script_or_an_earlier_stage_changed() {
        let (dir, workflow, plan) = resumed_recipe();
        for index in 0..5 {
            ran(&workflow, &plan, index, Ok("done".into()));
        }
        assert_eq!(plan.status(&workflow, 3), StepStatus::Done);
        assert_eq!(plan.status(&workflow, 4), StepStatus::Done);

        std::fs::write(dir.path().join("two.sh"), "#!/bin/sh\necho changed\n").unwrap();
        assert_eq!(plan.status(&workflow, 3), StepStatus::Done);
        assert_eq!(
            plan.status(&workflow, 4),
            StepStatus::Stale("what it runs changed since".into())
        );

        ran(&workflow, &plan, 2, Ok("configured again".into()));
        assert_eq!(
            plan.status(&workflow, 3),
            StepStatus::Stale("configure ran again after it".into())
        );
    }

    /// A headless install always has a limit: the one given, else two hours.
    #[test]
    fn the_install_stage_is_limited_even_when_no_limit_was_given() {
        let install_limit = |plan: Plan| {
            plan.stages.iter().find_map(|planned| match planned.stage {
                Stage::Install { timeout } => Some(timeout),
                _ => None,
            })
        };
        let flow = |limit| Plan::flow(Choices::default(), &Choices::default(), None, None, limit);
        assert_eq!(install_limit(flow(None)), Some(Some(HEADLESS_TIMEOUT)));
        let given = Duration::from_secs(90 * 60);
        assert_eq!(install_limit(flow(Some(given))), Some(Some(given)));
    }

    /// `kiln run --base CLOUD_IMAGE`: the copy stands for create and install; a later run
    /// without `--base` keeps the session's base, until an installer is chosen instead.
    #[test]
    fn a_flow_from_a_cloud_image_copies_it_instead_of_creating_and_installing() {
        let cloud = Choices {
            base_image: Some(PathBuf::from("/images/cloud.qcow2")),
            cloud_init: Some(true),
            ..Choices::default()
        };
        let plan = Plan::flow(cloud.clone(), &Choices::default(), None, None, None);
        assert_eq!(
            names(&plan, 0..plan.stages.len()),
            ["base", "configure", "verify"]
        );
        let resumed = Plan::flow(Choices::default(), &cloud, None, None, None);
        assert_eq!(
            names(&resumed, 0..resumed.stages.len()),
            ["base", "configure", "verify"]
        );
        // An installer chosen since (the workbench's Install on an ISO) switches the base off.
        let installer = Choices {
            cloud_init: Some(false),
            ..Choices::default()
        };
        let switched = Plan::flow(installer, &cloud, None, None, None);
        assert_eq!(
            names(&switched, 0..switched.stages.len()),
            ["create", "install", "configure", "verify"]
        );
    }

    /// The workbench's Install from a cloud image: the copy replaces the blank disk create
    /// made, grown to the session's size; install is done, and the session keeps the base's
    /// SHA-256. Without create, the copy stands for it.
    #[tokio::test]
    async fn installing_from_a_cloud_image_copies_it_over_the_disk_and_keeps_its_sum() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("cloud.qcow2");
        crate::engine::test_images::qcow2(base.to_str().unwrap(), "1.1", "64M").await;
        let image = dir.path().join("ci.qcow2");
        let workflow = workflow(&image);
        workflow.choose(&Choices {
            base_image: Some(base.clone()),
            cloud_init: Some(true),
            size: Some("128M".parse().unwrap()),
            ..Choices::default()
        });
        let task = workflow.start(Step::Install, Secrets::default(), StepOptions::default());
        let Ok(StepResult::Copied(copy)) = task.result().await else {
            panic!("not copied")
        };
        let sum = copy.sha256.expect("a cloud image is summed");
        assert_eq!(workflow.choices().base_sha256, Some(sum));
        assert_eq!(workflow.status(Step::Create), StepStatus::Skipped);
        assert_eq!(workflow.status(Step::Install), StepStatus::Done);
        assert_eq!(workflow.resume_at(), Some(Step::Configure));
        let info = crate::engine::steps::image::image_info(&image)
            .await
            .unwrap();
        assert_eq!(info.virtual_size, 128 << 20);
        assert!(dir.path().join("cloud.qcow2").is_file());
    }

    /// `kiln run --from verify` on an image configured by hand: the steps before are recorded
    /// as done another way, and publish is left out without a target (with the reason).
    #[test]
    fn a_flow_started_later_records_the_steps_before_as_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("done.qcow2");
        std::fs::write(&image, b"QFI\xfb an image").unwrap();
        let workflow = workflow(&image);
        let plan = Plan::flow(
            Choices::default(),
            &Choices::default(),
            Some(Step::Verify),
            None,
            None,
        );
        assert_eq!(
            names(&plan, 0..plan.stages.len()),
            ["create", "install", "configure", "verify"]
        );
        assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
        let (run, _) = PlanRun::new(
            workflow.clone(),
            plan,
            Secrets::default(),
            StepOptions::default(),
        );
        assert_eq!(workflow.status(Step::Configure), StepStatus::Skipped);
        assert!(!run.will_run(Step::Configure));
        assert!(run.will_run(Step::Verify));
    }
}
