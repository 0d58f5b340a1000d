//! `kiln build RECIPE.toml`: rebuild an image unattended from a recipe — create (or copy a
//! base), install, configure, provision, verify under each profile, publish to each
//! destination, then the post-build command. Stops at the first failure; NAME.build.log holds
//! every line printed, NAME.build.json one line per step and the image's facts. With
//! `--check`, only what a build checks before it starts, then a line on what it would do.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{Exit, report};
use crate::engine::build;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::plan::{Next, Plan, PlanRun, StageLine};
use crate::engine::recipe::Recipe;
use crate::engine::session::Session;
use crate::engine::steps::post_build::ImageFacts;
use crate::engine::task::{Answers, Summary, TaskOptions};
use crate::engine::workflow::{Recording, StepOptions, StepResult, Workflow};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The recipe (TOML); paths in it are relative to its directory, where NAME.qcow2,
    /// NAME.build.log and NAME.build.json are written.
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. --var disk.size=20G --var publish.0.namespace=test.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// Keep the image and its session: stages done and unchanged are not run again. Without
    /// it a build starts from a fresh disk.
    #[arg(long)]
    pub resume: bool,
    /// Check the recipe as a build would before it starts — every key, every file it names,
    /// every variable it reads, its secrets readable — then stop: nothing boots, nothing is
    /// written. Exit 0 when a build could start, 2 with everything that is missing.
    #[arg(long)]
    pub check: bool,
}

pub async fn run(args: BuildArgs, settings: &Settings, dirs: Option<&Dirs>) -> Result<Exit, Exit> {
    let recipe = load(&args).map_err(|e| super::refused("build", e))?;
    let secrets = build::secrets(&recipe).map_err(|e| super::refused("build", e))?;
    let tokens = (recipe.publish.iter().map(build::token))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| super::refused("build", e))?;
    let image = build::image_path(&recipe);
    if args.check {
        return checked(&recipe, &image, args.resume, tokens);
    }
    let (log_path, json_path) = build::report_paths(&recipe);
    let mut log = std::fs::File::create(&log_path).map_err(|e| {
        super::refused("build", format!("cannot write {}: {e}", log_path.display()))
    })?;
    let environment = super::environment("build", true, settings, dirs).await;
    let workflow = Workflow::open(&image, Recording::Always, environment)
        .map_err(|e| super::refused("build", e))?;
    let options = StepOptions {
        task: TaskOptions {
            answers: Answers {
                // A fresh build replaces the disk it made last time.
                replace_file: Some(!args.resume),
                apply_sshd_config: Some(true),
            },
            ..TaskOptions::default()
        },
        ..StepOptions::default()
    };
    let plan = Plan::recipe(&recipe, args.resume, tokens);
    let (run, warnings) = PlanRun::new(workflow, plan, secrets, options);
    for warning in warnings.into_iter().chain(run.headless_warnings()) {
        report::say(&mut log, format!("kiln build: warning: {warning}"));
    }
    let mut report = BuildReport::default();
    let exit = follow(run, &recipe, &mut log, &mut report).await;
    let summary = BuildSummary {
        recipe: recipe.file.clone(),
        name: recipe.name.clone(),
        ok: exit == Exit::Ok,
        steps: report.lines,
        sha256: report.facts.as_ref().map(|f| f.sha256.clone()),
        image: report.facts,
        destinations: report.destinations,
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
    Ok(exit)
}

/// NAME.build.json.
#[derive(Debug, Clone, Serialize)]
struct BuildSummary {
    recipe: PathBuf,
    name: String,
    ok: bool,
    steps: Vec<StageLine>,
    image: Option<ImageFacts>,
    /// Where the image was published, one line per destination.
    destinations: Vec<String>,
    /// The image's SHA-256, also in `image` (here for scripts that want one field).
    sha256: Option<String>,
}

/// What NAME.build.json says besides the recipe: each stage's line, the image's facts once
/// finished, the destinations published to.
#[derive(Default)]
struct BuildReport {
    lines: Vec<StageLine>,
    facts: Option<ImageFacts>,
    destinations: Vec<String>,
}

/// Follow the plan's stages to the end or the first failure, logging every line.
async fn follow(
    mut run: PlanRun,
    recipe: &Recipe,
    log: &mut std::fs::File,
    report: &mut BuildReport,
) -> Exit {
    let mut exit = Exit::Ok;
    loop {
        match report::next_stage(&mut run, "build") {
            // A stop asked for between stages ends the build too.
            Next::Finished if exit == Exit::Ok && !run.completed() => return Exit::Failed,
            Next::Finished => return exit,
            Next::Skipped { line, .. } => {
                report::say(
                    log,
                    format!("kiln build: {}: skipped: {}", line.step, line.summary),
                );
                report.lines.push(line);
            }
            Next::Started { name, task, .. } => {
                let result = report::follow_logged(&name, task, false, log).await;
                match &result {
                    // Each profile's verdicts as JUnit, for the CI system that runs the build.
                    Ok(StepResult::Verified(verified)) => {
                        let profile = verified
                            .profile
                            .as_ref()
                            .map(|d| d.profile)
                            .unwrap_or_default();
                        let file = build::junit_path(recipe, profile.name());
                        if let Err(e) = std::fs::write(&file, super::check::junit(verified)) {
                            eprintln!("kiln build: cannot write {}: {e}", file.display());
                        }
                    }
                    Ok(StepResult::Published(published)) => {
                        report.destinations.push(published.summary())
                    }
                    Ok(StepResult::Finished(finished)) => {
                        report.facts = Some(finished.facts.clone())
                    }
                    _ => {}
                }
                exit = Exit::for_result(&result);
                report.lines.extend(run.ended(&result));
            }
        }
    }
}

/// `kiln build --check`: the recipe passed every check a build makes before it starts; the
/// image's session (read, never written) must be readable too. Says what a build would do.
fn checked(
    recipe: &Recipe,
    image: &std::path::Path,
    resume: bool,
    tokens: Vec<Option<crate::engine::steps::publish::Token>>,
) -> Result<Exit, Exit> {
    Session::open(image).map_err(|e| super::refused("build", e))?;
    let plan = Plan::recipe(recipe, resume, tokens);
    let stages: Vec<String> = plan.stages().map(|stage| stage.name()).collect();
    println!(
        "{}: ready to build {} ({})",
        recipe.file.display(),
        image.display(),
        stages.join(", ")
    );
    Ok(Exit::Ok)
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
    Recipe::load_to_build(&args.recipe, &vars).map_err(|e| e.to_string())
}
