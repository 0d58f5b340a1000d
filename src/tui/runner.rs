//! The workbench's side of the engine's workflow: turn the forms into choices, start the
//! selected step, take in its events (questions become dialogs) and show its result. What a
//! step does, what is recorded and what is refused is the workflow's business, not this file's.

use std::path::{Path, PathBuf};

use super::app::{App, Focus, Overlay, RunningStep};
use super::steps::create::CreateScreen;
use super::steps::install::InstallScreen;
use super::widgets::form::FormProblem;
use crate::engine::Step;
use crate::engine::check::{Verdict, printable};
use crate::engine::guest::machine;
use crate::engine::host::Accelerator;
use crate::engine::session::Choices;
use crate::engine::task::{Answers, Event, Level, Question, Summary, TaskOptions};
use crate::engine::workflow::{
    Environment, Recording, Secrets, StepError, StepOptions, StepResult, Workflow,
};

impl App {
    /// Open the workbench on an image: its session's choices pre-filled, the first step not
    /// done selected.
    pub fn open_image(&mut self, image: &Path) {
        let workflow = match self.open_workflow(image) {
            Ok(workflow) => workflow,
            Err(e) => {
                self.notice = Some(e);
                return;
            }
        };
        let unrecorded = workflow.adopt_existing_image();
        let path = image.display().to_string();
        let choices = workflow.choices();
        self.create.fill(&path, &choices);
        self.carry_disk(&path);
        self.install.fill(&choices);
        self.configure.fill(&choices);
        self.verify.fill(&choices);
        self.publish.fill(&choices);
        let resume_at = workflow.resume_at();
        self.selected = Self::index(resume_at.unwrap_or(Step::Publish));
        // Nothing left to do: the step list has the keys, to look around or quit.
        match resume_at {
            Some(_) => self.open_screen(),
            None => self.focus = Focus::Steps,
        }
        self.notice = Some(match (resume_at, unrecorded) {
            (_, Some(warning)) => warning,
            (None, None) => format!("{path}: every step is done"),
            (Some(step), None) => format!("{path}: resuming at {}", step.name()),
        });
        self.workflow = Some(workflow);
    }

    fn open_workflow(&self, image: &Path) -> Result<Workflow, String> {
        Workflow::open(image, Recording::Always, self.environment()).map_err(|e| e.to_string())
    }

    /// The workflow of `image` — the one held, or opened in its place — with the environment
    /// as it is now (the doctor may have answered since).
    pub(super) fn workflow_for(&mut self, image: &Path) -> Result<&mut Workflow, String> {
        if self.workflow.as_ref().is_none_or(|w| w.image() != image) {
            self.workflow = Some(self.open_workflow(image)?);
        }
        let environment = self.environment();
        let workflow = self.workflow.as_mut().expect("opened above");
        workflow.environment = environment;
        Ok(workflow)
    }

    /// What steps run with: the doctor's accelerator (TCG until it has answered).
    fn environment(&self) -> Environment {
        Environment {
            settings: self.settings.clone(),
            accelerator: self
                .doctor
                .as_ref()
                .map_or(Accelerator::Tcg, |report| report.accelerator),
            record_dir: self.record_dir.clone(),
            config_dir: self.config_dir.clone(),
        }
    }

    /// The image a step's form names.
    fn image_of(&self, step: Step) -> PathBuf {
        let key = if step == Step::Create { "path" } else { "disk" };
        PathBuf::from(self.form(step).text(key))
    }

    /// What keeps `step`'s form from starting: no image named, then the step's own.
    pub(super) fn problem(&self, step: Step) -> Option<FormProblem> {
        if self.image_of(step).as_os_str().is_empty() {
            let (field, how) = match step {
                Step::Create => ("path", "type where the new image goes"),
                _ => ("disk", "type the image's path (Tab completes)"),
            };
            return Some(FormProblem::missing(field, "the image", how));
        }
        match step {
            Step::Create => self.create.problem(),
            Step::Install => self.install.problem(),
            Step::Publish => self.publish.problem(),
            Step::Configure => self.configure.problem(),
            Step::Verify => None,
        }
    }

    /// The choices every form makes now, merged (recorded when the step begins).
    fn form_choices(&self) -> Choices {
        let mut choices = self.create.choices();
        for more in [
            self.install.choices(),
            self.configure.choices(),
            self.verify.choices(),
            self.publish.choices(),
        ] {
            choices.update(&more);
        }
        choices
    }

    /// Start a step with what its form says, on the workflow of the image the form names.
    pub fn start(&mut self, step: Step) {
        if self.is_running() {
            return;
        }
        self.run_mut(step).reset();
        // A form not filled in, or holding what the engine would refuse, is refused here, in
        // the engine's words: nothing runs and nothing is recorded.
        if let Some(problem) = self.problem(step) {
            self.form_mut(step).focus(problem.field);
            self.run_mut(step).error = Some(problem.message);
            return;
        }
        let image = self.image_of(step);
        if let Err(e) = self.workflow_for(&image) {
            self.run_mut(step).error = Some(e);
            return;
        }
        let mut choices = self.form_choices();
        let mut secrets = Secrets {
            token: self.publish.secrets().token,
            ..self.configure.secrets()
        };
        if step == Step::Install && self.install.uses_preset() {
            // A preset creates the user: its name and password are Install's, and Configure
            // will log in with them.
            let user = self.install.form.text("user");
            let password = self.install.password();
            choices.user = Some(user.clone());
            self.configure.form.set_text("user", &user);
            self.configure
                .form
                .set_text("password", password.as_deref().unwrap_or_default());
            secrets.password = password;
        }
        let options = StepOptions {
            task: TaskOptions {
                // A failed step's machine stays up for a look (r retries, s stops it).
                hold_failures: true,
                answers: Answers {
                    // The form's checkbox answers the question in advance; unticked, ask.
                    replace_file: self.create.form.checked("overwrite").then_some(true),
                    apply_sshd_config: None,
                },
            },
            static_only: step == Step::Verify && self.verify.static_only(),
            ..StepOptions::default()
        };
        let workflow = self.workflow.as_mut().expect("opened above");
        workflow.choose(&choices);
        let task = workflow.start(step, secrets, options);
        self.running = Some(RunningStep { step, task });
    }

    /// Answer the running step's open question.
    pub(super) fn answer_step(&self, yes: bool) {
        if let Some(running) = &self.running {
            running.task.answer(yes);
        }
    }

    /// Ask the running step to stop (it cleans up and reports).
    pub(super) fn cancel_running(&self) {
        if let Some(running) = &self.running {
            running.task.cancel();
        }
    }

    /// Take in one event from the running step.
    pub fn apply(&mut self, event: Event) {
        let Some(step) = self.running.as_ref().map(|r| r.step) else {
            return;
        };
        let run = self.run_mut(step);
        match event {
            Event::Machine(view) => run.machine.view = Some(view),
            Event::Check(check) => {
                // Also in the log, so F2 shows every verdict when the list is folded.
                let level = match check.verdict {
                    Verdict::Pass | Verdict::Skipped => Level::Info,
                    Verdict::Fail | Verdict::Warn => Level::Warn,
                };
                run.log.push((level, check.line()));
                run.checks.push(check);
            }
            Event::Started { title } => run.log.push((Level::Info, printable(&title))),
            // Messages can quote the guest: no raw escapes reach the terminal. A message of
            // several lines (a diff, a tool's output) is as many lines of the log: a terminal
            // line cannot hold a line break.
            Event::Log { level, message } => run.log.extend(
                printable(&message)
                    .lines()
                    .map(|line| (level, line.to_string())),
            ),
            Event::Progress(p) => run.progress = Some(p),
            Event::Question(Question::ReplaceFile { path }) => {
                self.overlay = Overlay::ConfirmOverwrite(path)
            }
            Event::Question(Question::ApplySshdConfig { diff }) => {
                self.overlay = Overlay::ConfirmDiff { diff, scroll: 0 }
            }
            Event::Held { error } => {
                run.log.push((
                    Level::Warn,
                    "the machine is kept for a look: r retry, s stop it, c/v type into it".into(),
                ));
                run.held = Some(printable(&error));
            }
            Event::Failed { error: message } => run.error = Some(printable(&message)),
            // The result panel shows what the summary says.
            Event::Finished { .. } => {}
        }
    }

    /// Stop a failed step's kept machine, then run the step again once it has ended.
    pub fn retry(&mut self, step: Step) {
        if self.running.as_ref().is_some_and(|r| r.step == step) {
            self.retry = Some(step);
            self.cancel_running();
        }
    }

    /// The running step has sent its last event: show its result, and on success move to the
    /// next step with the carried choices (the workflow has recorded it already).
    pub async fn finish(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let step = running.step;
        if let Some(machine) = self.machine_mut(step) {
            machine.clear();
        }
        // The events ended, so the task has: this does not wait.
        let result = running.task.result().await;
        let in_plan = self.plan_stage_ended(&result);
        let outcome = self.outcome(result);
        if matches!(
            self.overlay,
            Overlay::ConfirmOverwrite(_) | Overlay::ConfirmDiff { .. }
        ) {
            // The step ended with its question open (cancelled): nobody is asking any more.
            self.overlay = Overlay::None;
        }
        let succeeded = outcome.is_ok();
        let run = self.run_mut(step);
        run.held = None;
        match outcome {
            Ok(lines) => run.outcome = lines,
            Err(message) => run.error = Some(printable(&message)),
        }
        if let Some(again) = self.retry.take() {
            // A recipe's stage runs again with the rest of its plan.
            match in_plan {
                true => self.build_recipe(),
                false => self.start(again),
            }
        } else if in_plan {
            self.advance_plan();
        } else if succeeded {
            // The result stays on screen; `n` moves on to the next step, its form pre-filled.
            self.focus = Focus::Steps;
        }
    }

    /// A step's result in the few lines its screen shows, or the error.
    fn outcome(&mut self, result: Result<StepResult, StepError>) -> Result<Vec<String>, String> {
        let result = result.map_err(|e| e.to_string())?;
        match result {
            StepResult::Created(info) => {
                self.carry_disk(&info.path.display().to_string());
                self.create.form.set_checked("overwrite", false);
                Ok(CreateScreen::outcome(&info))
            }
            StepResult::Installed(outcome) => {
                self.carry_disk(&outcome.image.display().to_string());
                Ok(InstallScreen::outcome(&outcome))
            }
            StepResult::Configured(configured) => {
                let mut lines = vec![configured.summary()];
                lines.extend(configured.diff.lines().map(str::to_string));
                Ok(lines)
            }
            StepResult::Verified(report) if report.passed() => Ok(vec![
                report.summary(),
                "the CI driver should accept this image".into(),
            ]),
            StepResult::Verified(report) => {
                Err(format!("{} — see the fixes above", report.summary()))
            }
            StepResult::Published(published) => {
                let mut lines = vec![published.summary()];
                if let Some(manifest) = published.destination.manifest() {
                    lines.extend(manifest.lines().map(str::to_string));
                }
                if let Some(sum) = &published.checksum {
                    lines.push(format!("sha256 {} ({})", sum.sha256, sum.file.display()));
                }
                Ok(lines)
            }
            StepResult::Copied(copy) => {
                self.carry_disk(&copy.image.display().to_string());
                Ok(InstallScreen::copied(&copy))
            }
            other @ (StepResult::Provisioned(_) | StepResult::Finished(_)) => {
                Ok(vec![other.summary()])
            }
        }
    }

    /// A finished step's disk becomes the next steps' default.
    fn carry_disk(&mut self, path: &str) {
        for form in [
            &mut self.install.form,
            &mut self.configure.form,
            &mut self.verify.form,
            &mut self.publish.form,
        ] {
            form.set_text("disk", path);
        }
    }

    /// Ask about machines a crashed kiln left running, if there are any.
    pub fn offer_leftover_cleanup(&mut self) {
        let Some(dir) = &self.record_dir else {
            return;
        };
        let found = machine::leftovers(dir);
        if !found.is_empty() {
            self.overlay = Overlay::ConfirmCleanLeftovers(found);
        }
    }

    /// Stop whatever runs and wait for it to clean up, before the terminal is given back.
    pub async fn shut_down(&mut self) {
        self.cancel_running();
        while let Some(running) = self.running.as_mut() {
            match running.task.next_event().await {
                Some(event) => self.apply(event),
                None => self.finish().await,
            }
        }
    }
}
