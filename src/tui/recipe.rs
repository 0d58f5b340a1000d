//! The workbench's side of a recipe (`kiln RECIPE.toml`): the forms filled from it, and `b`
//! running its plan stage by stage — each stage's task shown on the screen nearest to it
//! (provisioning on Configure's, with its machine), questions and kept machines as for a
//! single step. What runs and what is skipped is the plan's business (`engine/plan.rs`).

use super::app::{App, RecipeMode, RunningStep, screen_of};
use crate::engine::build;
use crate::engine::plan::{Next, Plan, PlanRun};
use crate::engine::recipe::Recipe;
use crate::engine::task::TaskOptions;
use crate::engine::workflow::{Secrets, StepError, StepOptions, StepResult};

impl App {
    /// Open the image a recipe builds: the forms filled from the recipe (its first verify
    /// profile and publish destination), the step list showing its plan.
    pub fn open_recipe(&mut self, recipe: &Recipe) {
        let image = build::image_path(recipe);
        self.open_image(&image);
        let mut choices = build::choices(recipe);
        if let Some(profile) = recipe.verify.profiles.first() {
            choices.profile = Some(*profile);
        }
        if let Some(publish) = recipe.publish.first() {
            choices.update(&build::publish_choices(recipe, publish));
        }
        self.create.fill(&image.display().to_string(), &choices);
        self.install.fill(&choices);
        self.configure.fill(&choices);
        self.verify.fill(&choices);
        self.publish.fill(&choices);
        if let Ok(Secrets {
            password: Some(password),
            ..
        }) = build::secrets(recipe)
        {
            self.configure.form.set_text("password", &password);
        }
        let plan = Plan::recipe(recipe, true, Vec::new());
        self.notice = Some(format!(
            "recipe {}: {} stages; b runs them from the first not done (as `kiln build {} \
             --resume`), Enter a single step",
            recipe.name,
            plan.stages().count(),
            recipe.file.display()
        ));
        self.selected = 0;
        self.focus = super::app::Focus::Steps;
        self.recipe = Some(RecipeMode {
            recipe: recipe.clone(),
            plan,
            run: None,
            running: 0..0,
        });
    }

    /// Run the recipe's plan from the first stage not done; verify, publish and post-build
    /// always run, as in `kiln build --resume`.
    pub fn build_recipe(&mut self) {
        if self.is_running() {
            return;
        }
        let Some(recipe) = self.recipe.as_ref().map(|mode| mode.recipe.clone()) else {
            self.notice = Some("b runs a recipe: open one with `kiln RECIPE.toml`".into());
            return;
        };
        let secrets = build::secrets(&recipe);
        let tokens: Result<Vec<_>, String> = recipe.publish.iter().map(build::token).collect();
        let (secrets, tokens) = match (secrets, tokens) {
            (Ok(secrets), Ok(tokens)) => (secrets, tokens),
            (Err(problem), _) | (_, Err(problem)) => {
                self.notice = Some(format!("recipe {}: {problem}", recipe.name));
                return;
            }
        };
        let workflow = match self.workflow_for(&build::image_path(&recipe)) {
            Ok(workflow) => workflow.clone(),
            Err(problem) => {
                self.notice = Some(problem);
                return;
            }
        };
        let options = StepOptions {
            // A failed stage's machine stays up for a look (r retries, s stops it); questions
            // are asked as for a single step.
            task: TaskOptions {
                hold_failures: true,
                ..TaskOptions::default()
            },
            ..StepOptions::default()
        };
        let plan = Plan::recipe(&recipe, true, tokens);
        let (run, warnings) = PlanRun::new(workflow, plan, secrets, options);
        if let Some(warning) = warnings.into_iter().next() {
            self.notice = Some(warning);
        }
        if let Some(mode) = self.recipe.as_mut() {
            mode.run = Some(run);
        }
        self.advance_plan();
    }

    /// Start the plan's next stage (skipping those it does not run again), or say how it
    /// ended.
    pub(super) fn advance_plan(&mut self) {
        let Some(mode) = self.recipe.as_mut() else {
            return;
        };
        let Some(run) = mode.run.as_mut() else {
            return;
        };
        let started = loop {
            match run.next_stage() {
                Next::Skipped { .. } => continue,
                Next::Started { indices, task, .. } => break Some((indices, task)),
                Next::Finished => break None,
            }
        };
        match started {
            Some((indices, task)) => {
                let stage = mode
                    .plan
                    .stages()
                    .nth(indices.start)
                    .expect("a planned stage");
                let step = screen_of(stage);
                self.selected = indices.start;
                mode.running = indices;
                self.run_mut(step).reset();
                self.running = Some(RunningStep { step, task });
            }
            None => {
                let completed = run.completed();
                mode.run = None;
                mode.running = 0..0;
                let name = &mode.recipe.name;
                self.notice = Some(match completed {
                    true => format!("recipe {name}: every stage is done"),
                    false => format!(
                        "recipe {name}: stopped at a stage that did not succeed (b runs it again)"
                    ),
                });
            }
        }
    }

    /// A task ended: when it was the recipe plan's, the plan hears of it. Returns whether it
    /// was.
    pub(super) fn plan_stage_ended(&mut self, result: &Result<StepResult, StepError>) -> bool {
        let Some(run) = self.recipe.as_mut().and_then(|mode| mode.run.as_mut()) else {
            return false;
        };
        run.ended(result);
        true
    }
}
