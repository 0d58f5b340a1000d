//! `kiln build RECIPE.toml`: rebuild an image unattended from a recipe — create (or copy a
//! base), install, configure, provision, verify under each profile, publish to each
//! destination, then the post-build command. Stops at the first failure; NAME.build.log holds
//! every line printed, NAME.build.json one line per step and the image's facts.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{Exit, report};
use crate::engine::Step;
use crate::engine::build::{self, BuildSummary, StepRecord};
use crate::engine::config::{Dirs, Settings};
use crate::engine::provision;
use crate::engine::recipe::{Recipe, Source};
use crate::engine::session::session_path;
use crate::engine::task::{self, Answers, Summary, TaskOptions};
use crate::engine::workflow::{Recording, Secrets, StepError, StepOptions, StepResult, Workflow};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe (TOML); paths in it are relative to its directory, where NAME.qcow2,
    /// NAME.build.log and NAME.build.json are written.
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. --var disk.size=20G --var publish.0.namespace=test.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Keep the image and its session: steps already done are not run again. Without it a
    /// build starts from a fresh disk.
    #[arg(long)]
    pub resume: bool,
}

/// The build as it goes: each step's line, and the log every printed line also goes to.
struct Progress {
    records: Vec<StepRecord>,
    log: std::fs::File,
}

impl Progress {
    /// Run one step's task to its end, logging it; false when it did not succeed.
    async fn follow<T: Summary, E: std::fmt::Display + From<task::TaskPanicked>>(
        &mut self,
        step: String,
        task: task::Task<T, E>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let result = report::follow_logged(&step, task, false, &mut self.log).await;
        let (status, summary) = match &result {
            Ok(done) => ("done", done.summary()),
            Err(error) => ("failed", error.to_string()),
        };
        self.records.push(StepRecord {
            step,
            status,
            seconds: started.elapsed().as_secs_f64(),
            summary,
        });
        result
    }

    fn record(&mut self, step: &str, status: &'static str, summary: String) {
        let _ = writeln!(self.log, "kiln build: {step}: {status}: {summary}");
        self.records.push(StepRecord {
            step: step.into(),
            status,
            seconds: 0.0,
            summary,
        });
    }
}

pub async fn run(args: BuildArgs, settings: &Settings, dirs: Option<&Dirs>) -> Exit {
    let recipe = match load(&args) {
        Ok(recipe) => recipe,
        Err(problem) => {
            eprintln!("kiln build: {problem}");
            return Exit::Environment;
        }
    };
    let secrets = match build::secrets(&recipe) {
        Ok(secrets) => secrets,
        Err(problem) => {
            eprintln!("kiln build: {problem}");
            return Exit::Environment;
        }
    };
    let image = build::image_path(&recipe);
    let (log_path, json_path) = build::report_paths(&recipe);
    let log = match std::fs::File::create(&log_path) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("kiln build: cannot write {}: {e}", log_path.display());
            return Exit::Environment;
        }
    };
    let mut progress = Progress {
        records: Vec::new(),
        log,
    };
    let (exit, facts, destinations) = run_steps(
        &recipe,
        &args,
        &image,
        secrets,
        settings,
        dirs,
        &mut progress,
    )
    .await;
    let summary = BuildSummary {
        recipe: recipe.file.clone(),
        name: recipe.name.clone(),
        ok: exit == Exit::Ok,
        steps: progress.records,
        sha256: facts.as_ref().map(|f| f.sha256.clone()),
        image: facts,
        destinations,
    };
    let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    if let Err(e) = std::fs::write(&json_path, json + "\n") {
        eprintln!("kiln build: cannot write {}: {e}", json_path.display());
    }
    eprintln!(
        "kiln build: {} — log {}, summary {}",
        if exit == Exit::Ok { "built" } else { "failed" },
        log_path.display(),
        json_path.display()
    );
    exit
}

/// The recipe with the `--var` overrides, checked, and the variables it reads all set.
fn load(args: &BuildArgs) -> Result<Recipe, String> {
    let vars = args
        .vars
        .iter()
        .map(|var| {
            var.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| format!("--var {var}: write KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let recipe = Recipe::load(&args.recipe, &vars).map_err(|e| e.to_string())?;
    let unset = recipe.unset_variables();
    if !unset.is_empty() {
        return Err(format!(
            "{}: the recipe reads variables that are not set: {}",
            recipe.file.display(),
            unset.join(", ")
        ));
    }
    Ok(recipe)
}

/// Every step in order, stopping at the first failure. Returns the exit, the image's facts
/// (once finished) and the destinations published to.
async fn run_steps(
    recipe: &Recipe,
    args: &BuildArgs,
    image: &std::path::Path,
    secrets: Secrets,
    settings: &Settings,
    dirs: Option<&Dirs>,
    progress: &mut Progress,
) -> (Exit, Option<build::ImageFacts>, Vec<String>) {
    let failed = |error: &StepError| (Exit::for_step(error), None, Vec::new());
    if !args.resume {
        // A fresh build: the session of an earlier one would skip its steps.
        let _ = std::fs::remove_file(session_path(image));
    }
    if let Source::Base(base) = &recipe.source
        && (!args.resume || !image.exists())
    {
        if let Err(e) = build::copy_base(&base.image, image).await {
            progress.record(
                "base",
                "failed",
                format!("cannot copy {}: {e}", base.image.display()),
            );
            return (Exit::Environment, None, Vec::new());
        }
        progress.record(
            "base",
            "done",
            format!("copied {} to {}", base.image.display(), image.display()),
        );
    }
    let environment = super::environment("build", true, settings, dirs).await;
    let accelerator = environment.accelerator;
    let record_dir = environment.record_dir.clone();
    let workflow = match Workflow::open(image, Recording::Always, environment) {
        Ok(workflow) => workflow,
        Err(e) => {
            eprintln!("kiln build: {e}");
            return (Exit::Environment, None, Vec::new());
        }
    };
    workflow.choose(&build::choices(recipe));
    if matches!(recipe.source, Source::Base(_)) {
        let _ = workflow.skip_before(Step::Configure);
    }
    let options = |step: Step| StepOptions {
        task: TaskOptions {
            answers: Answers {
                // A fresh build replaces the disk it made last time.
                replace_file: Some(!args.resume),
                apply_sshd_config: Some(true),
            },
            ..TaskOptions::default()
        },
        timeout: if step == Step::Install {
            build::install_timeout(recipe)
        } else {
            None
        },
        ..StepOptions::default()
    };
    for step in [Step::Create, Step::Install, Step::Configure] {
        if workflow.status(step).is_settled() {
            progress.record(step.name(), "skipped", workflow.status(step).word().into());
            continue;
        }
        let task = workflow.start(step, secrets.clone(), options(step));
        if let Err(error) = progress.follow(step.name().into(), task).await {
            return failed(&error);
        }
    }
    if build::has_provisioning(recipe) {
        let request = build::provision_request(
            recipe,
            image,
            &workflow.environment.settings,
            accelerator,
            record_dir,
        );
        let task = task::spawn("provision", TaskOptions::default(), |reporter| {
            provision::provision(request, reporter)
        });
        if progress.follow("provision".into(), task).await.is_err() {
            return (Exit::Failed, None, Vec::new());
        }
    }
    for profile in &recipe.verify.profiles {
        workflow.choose(&build::verify_choices(*profile));
        let task = workflow.start(Step::Verify, secrets.clone(), options(Step::Verify));
        let name = format!("verify {}", profile.name());
        let result = progress.follow(name, task).await;
        // Each profile's verdicts as JUnit, for the CI system that runs the build.
        if let Ok(StepResult::Verified(report)) = &result {
            let file = build::junit_path(recipe, profile.name());
            if let Err(e) = std::fs::write(&file, super::check::junit(report)) {
                eprintln!("kiln build: cannot write {}: {e}", file.display());
            }
        }
        match result {
            Ok(result) if result.succeeded() => {}
            Ok(_) => return (Exit::Failed, None, Vec::new()),
            Err(error) => return failed(&error),
        }
    }
    let mut destinations = Vec::new();
    for publish in &recipe.publish {
        let token = match build::token(publish) {
            Ok(token) => token,
            Err(problem) => {
                progress.record("publish", "failed", problem);
                return (Exit::Environment, None, destinations);
            }
        };
        workflow.choose(&build::publish_choices(recipe, publish));
        let secrets = Secrets {
            token,
            ..secrets.clone()
        };
        let task = workflow.start(Step::Publish, secrets, options(Step::Publish));
        let name = format!("publish {}", publish.target.name());
        match progress.follow(name, task).await {
            Ok(result) => destinations.push(result.summary()),
            Err(error) => return (Exit::for_step(&error), None, destinations),
        }
    }
    let image = image.to_path_buf();
    let recipe_copy = recipe.clone();
    let task = task::spawn(
        "post-build",
        TaskOptions::default(),
        move |reporter| async move { build::finish(&recipe_copy, &image, reporter).await },
    );
    match progress.follow("post-build".into(), task).await {
        Ok(finished) => (Exit::Ok, Some(finished.facts), destinations),
        Err(_) => (Exit::Failed, None, destinations),
    }
}
