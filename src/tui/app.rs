//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::cell::Cell;
use std::path::PathBuf;

use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::guest_keys;
use super::keymap::{Action, Context, Keymap};
use super::steps::configure::ConfigureScreen;
use super::steps::create::CreateScreen;
use super::steps::install::InstallScreen;
use super::steps::machine_pane::{KeyTarget, MachinePane};
use super::steps::publish::PublishScreen;
use super::steps::run::StepRun;
use super::steps::verify::VerifyScreen;
use super::theme::Theme;
use super::widgets::form::FieldKind;

/// Lines a PgUp or PgDn moves the log or the diff.
const PAGE: isize = 10;
use crate::engine::Step;
use crate::engine::guest::machine::MachineRecord;
use crate::engine::host::config::Settings;
use crate::engine::host::{HostReport, Verdict};
use crate::engine::plan::{Plan, PlanRun, Stage};
use crate::engine::recipe::Recipe;
use crate::engine::session::StepStatus;
use crate::engine::task::Level;
use crate::engine::workflow::{self, StepTask, Workflow};

/// A recipe opened in the workbench (`kiln RECIPE.toml`): the step list shows its plan's
/// stages, and `b` runs them in order as `kiln build --resume` would.
pub struct RecipeMode {
    pub recipe: Recipe,
    pub plan: Plan,
    /// The plan while it runs.
    pub run: Option<PlanRun>,
    /// The rows (plan indices) the running task runs.
    pub running: std::ops::Range<usize>,
}

/// The one step the workbench runs at a time.
pub struct RunningStep {
    pub step: Step,
    pub task: StepTask,
}

/// Which part of the workbench receives keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Steps,
    Screen,
}

/// What is drawn over the screen, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Doctor,
    /// Create asks before replacing an existing file (a question from the running step).
    ConfirmOverwrite(PathBuf),
    ConfirmStop,
    /// The sshd_config diff, waiting for the person's yes before configure applies it (a
    /// question from the running step).
    /// The sshd_config diff configure asks about, scrolled down by `scroll` lines.
    ConfirmDiff {
        diff: String,
        scroll: usize,
    },
    /// Machines an earlier kiln left running (it crashed or was killed): stop them?
    ConfirmCleanLeftovers(Vec<(PathBuf, MachineRecord)>),
    /// The whole log of a step, scrolled up by `scroll` lines from the newest.
    Log {
        step: Step,
        scroll: usize,
    },
}

/// Input for the guest, delivered by the async loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestInput {
    Serial(Vec<u8>),
    Vga(Vec<&'static str>),
}

/// Something the key handler asks the async loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Start the step with what its form says.
    Start(Step),
    Guest(GuestInput),
    /// Stop machines an earlier kiln left behind.
    CleanLeftovers(Vec<(PathBuf, MachineRecord)>),
    /// Stop the failed step's kept machine and run the step again.
    Retry(Step),
    /// Run the open recipe's stages from the first not done.
    Build,
    Quit,
}

/// Where things were drawn last, so a mouse click can find what it hit (and a scroll key
/// how far it can go).
#[derive(Debug, Default)]
pub struct HitAreas {
    /// The step list's inner area: row `i` is step `i`.
    pub steps: Cell<Rect>,
    /// Diff lines the sshd_config dialog showed at once.
    pub diff_rows: Cell<usize>,
}

/// The whole workbench state.
pub struct App {
    pub settings: Settings,
    pub theme: Theme,
    /// What each key does where; the help and the footer are drawn from it too.
    pub keymap: Keymap,
    /// A notice for the status line (e.g. a broken user theme).
    pub notice: Option<String>,
    pub selected: usize,
    pub focus: Focus,
    pub overlay: Overlay,
    pub create: CreateScreen,
    pub install: InstallScreen,
    pub configure: ConfigureScreen,
    pub verify: VerifyScreen,
    pub publish: PublishScreen,
    /// The image being worked on: its session (NAME.kiln.toml) and how steps run.
    pub workflow: Option<Workflow>,
    /// A failed step whose kept machine is being stopped so the step can run again.
    pub retry: Option<Step>,
    pub hits: HitAreas,
    pub doctor: Option<HostReport>,
    /// Terminal graphics for guest screens; `None`: half blocks.
    pub picker: Option<ratatui_image::picker::Picker>,
    /// What was found about the terminal's graphics, for the full-screen status line.
    pub graphics: String,
    /// The one step running in the background, if any.
    pub running: Option<RunningStep>,
    /// The recipe the workbench was opened on, if any.
    pub recipe: Option<RecipeMode>,
    /// Where machine records live (crash recovery), when kiln has a data directory.
    pub record_dir: Option<PathBuf>,
    /// kiln's config directory (the Djinn token file lives there).
    pub config_dir: Option<PathBuf>,
    /// The terminal's width at the last draw, to know whether the screen pane is visible.
    pub width: u16,
    pub quitting: bool,
}

impl App {
    pub fn new(settings: Settings, theme: Theme) -> App {
        App {
            create: CreateScreen::new(&settings),
            install: InstallScreen::new(),
            configure: ConfigureScreen::new(),
            verify: VerifyScreen::new(),
            publish: PublishScreen::new(&settings),
            settings,
            theme,
            keymap: Keymap::built_in(),
            notice: None,
            selected: 0,
            focus: Focus::Steps,
            overlay: Overlay::None,
            workflow: None,
            retry: None,
            hits: HitAreas::default(),
            doctor: None,
            picker: None,
            graphics: String::new(),
            running: None,
            recipe: None,
            record_dir: None,
            config_dir: None,
            width: 80,
            quitting: false,
        }
    }

    /// Save the guest's screen that `step`'s pane shows as `NAME.screen-N.png` beside the
    /// image (the first free N), and say where in the status line.
    fn save_picture(&mut self, step: Step) {
        let (Some(picture), Some(workflow)) = (
            self.machine(step).and_then(|m| m.picture.clone()),
            self.workflow.as_ref(),
        ) else {
            self.notice = Some("no guest screen to save yet".into());
            return;
        };
        self.notice = Some(
            match crate::engine::guest::screen::save_png(&picture, &workflow.image()) {
                Ok(path) => format!("saved the guest's screen to {}", path.display()),
                Err(e) => format!("could not save the guest's screen: {e}"),
            },
        );
    }

    /// The step whose screen the selected row shows.
    pub fn selected_step(&self) -> Step {
        match &self.recipe {
            Some(mode) => mode
                .plan
                .stages()
                .nth(self.selected)
                .map_or(Step::Create, screen_of),
            None => Step::ALL[self.selected],
        }
    }

    /// How many rows the step list has: the five steps, or a recipe's stages.
    pub fn rows(&self) -> usize {
        match &self.recipe {
            Some(mode) => mode.plan.stages().count(),
            None => Step::ALL.len(),
        }
    }

    /// A row's name and where it stands.
    pub fn row(&self, row: usize) -> (String, StepStatus) {
        let Some(mode) = &self.recipe else {
            let step = Step::ALL[row];
            return (
                format!("{} {}", row + 1, step.title()),
                self.step_state(step),
            );
        };
        let stage = mode.plan.stages().nth(row).expect("a row of the plan");
        let status = if mode.run.is_some() && mode.running.contains(&row) {
            self.step_state(screen_of(stage))
        } else {
            self.workflow
                .as_ref()
                .map_or(StepStatus::Pending, |w| mode.plan.status(w, row))
        };
        (stage.name(), status)
    }

    /// The title of `step`'s screen: the step's own, or the recipe stage it shows.
    pub fn screen_title(&self, step: Step) -> String {
        let stage = self
            .recipe
            .as_ref()
            .and_then(|mode| mode.plan.stages().nth(self.selected))
            .filter(|stage| stage.step() != Some(step));
        match stage {
            Some(stage) => format!("{} — {}", stage.name(), stage.purpose()),
            None => format!("{} — {}", step.title(), step.purpose()),
        }
    }

    /// What the step list shows: running here, else what the session says.
    pub fn step_state(&self, step: Step) -> StepStatus {
        if self.running.as_ref().is_some_and(|r| r.step == step) {
            // A failed step keeping its machine up for a look has failed all the same.
            return match &self.run(step).held {
                Some(error) => StepStatus::Failed(error.clone()),
                None => StepStatus::Running {
                    pid: std::process::id(),
                },
            };
        }
        let Some(workflow) = &self.workflow else {
            return StepStatus::Pending;
        };
        workflow.status(step)
    }

    /// What `step` needs that the doctor found missing, and the command that installs it: the
    /// line under the step's button (None until the doctor has looked, or when all is there).
    pub fn missing_tools(&self, step: Step) -> Option<(Level, String)> {
        let needed: &[&str] = match step {
            Step::Create | Step::Publish => &["qemu-img"],
            Step::Install | Step::Configure | Step::Verify => &["qemu-system-x86_64", "qemu-img"],
        };
        let missing: Vec<String> = self
            .doctor
            .as_ref()?
            .checks
            .iter()
            .filter(|check| check.verdict == Verdict::Fail && needed.contains(&check.name.as_str()))
            .map(|check| match &check.fix {
                Some(fix) => format!("{} {}; install it: {fix}", check.name, check.detail),
                None => format!("{} {}", check.name, check.detail),
            })
            .collect();
        (!missing.is_empty()).then(|| (Level::Warn, missing.join(" · ")))
    }

    pub(super) fn index(step: Step) -> usize {
        Step::ALL
            .iter()
            .position(|s| *s == step)
            .expect("every step is listed")
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The machine pane of a step's screen (steps that boot one).
    pub fn machine(&self, step: Step) -> Option<&MachinePane> {
        workflow::boots_a_machine(step).then(|| &self.run(step).machine)
    }

    pub(super) fn machine_mut(&mut self, step: Step) -> Option<&mut MachinePane> {
        workflow::boots_a_machine(step).then(|| &mut self.run_mut(step).machine)
    }

    /// What a step's screen shows about its current or last run.
    pub fn run(&self, step: Step) -> &StepRun {
        match step {
            Step::Create => &self.create.run,
            Step::Install => &self.install.run,
            Step::Configure => &self.configure.run,
            Step::Verify => &self.verify.run,
            Step::Publish => &self.publish.run,
        }
    }

    pub(super) fn run_mut(&mut self, step: Step) -> &mut StepRun {
        match step {
            Step::Create => &mut self.create.run,
            Step::Install => &mut self.install.run,
            Step::Configure => &mut self.configure.run,
            Step::Verify => &mut self.verify.run,
            Step::Publish => &mut self.publish.run,
        }
    }

    /// The form of a step's screen.
    pub fn form(&self, step: Step) -> &super::widgets::form::Form {
        match step {
            Step::Create => &self.create.form,
            Step::Install => &self.install.form,
            Step::Configure => &self.configure.form,
            Step::Verify => &self.verify.form,
            Step::Publish => &self.publish.form,
        }
    }

    pub(super) fn form_mut(&mut self, step: Step) -> &mut super::widgets::form::Form {
        match step {
            Step::Create => &mut self.create.form,
            Step::Install => &mut self.install.form,
            Step::Configure => &mut self.configure.form,
            Step::Verify => &mut self.verify.form,
            Step::Publish => &mut self.publish.form,
        }
    }

    /// Whether a fresh screenshot should be taken (a machine on screen, its VGA pane visible).
    pub fn wants_screenshot(&self) -> bool {
        self.machine(self.selected_step())
            .is_some_and(|m| m.screen_visible(self.width))
    }

    /// Where keys go now: the guest, an overlay, the step list, or the step's screen.
    pub fn key_context(&self) -> Context {
        let step = self.selected_step();
        let machine = self.machine(step);
        if machine.is_some_and(|m| m.keys_to != KeyTarget::Kiln) {
            return Context::Guest;
        }
        match self.overlay {
            Overlay::ConfirmOverwrite(_)
            | Overlay::ConfirmStop
            | Overlay::ConfirmCleanLeftovers(_) => return Context::Confirm,
            Overlay::ConfirmDiff { .. } => return Context::Diff,
            Overlay::Help | Overlay::Doctor => return Context::Overlay,
            Overlay::Log { .. } => return Context::Log,
            Overlay::None => {}
        }
        if self.focus == Focus::Steps {
            return Context::StepList;
        }
        let running_here = self.running.as_ref().is_some_and(|r| r.step == step);
        if running_here && self.run(step).held.is_some() {
            Context::Held
        } else if running_here && machine.is_some() {
            Context::Machine
        } else if running_here {
            Context::Running
        } else if self.is_running() {
            Context::Waiting
        } else {
            match self.form(step).focused_field().kind {
                FieldKind::Text(_) => Context::TextField,
                FieldKind::Choice(..) => Context::ChoiceField,
                FieldKind::Check(_) => Context::Checkbox,
                FieldKind::Button => Context::Form,
            }
        }
    }

    /// A key was pressed; returns work for the async loop, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        let context = self.key_context();
        match self.keymap.action(context, &key) {
            Some(action) => self.perform(action),
            None => self.type_key(context, key),
        }
    }

    /// A key the keymap leaves alone: text for the guest or a text field, else nothing.
    fn type_key(&mut self, context: Context, key: KeyEvent) -> Option<Command> {
        let step = self.selected_step();
        match context {
            Context::Guest => {
                let machine = self.machine_mut(step)?;
                // The machine is gone: any key gives the keyboard back.
                if machine.view.is_none() {
                    machine.keys_to = KeyTarget::Kiln;
                    return None;
                }
                match machine.keys_to {
                    KeyTarget::Serial => guest_keys::serial_bytes(&key)
                        .map(|b| Command::Guest(GuestInput::Serial(b))),
                    KeyTarget::Vga => {
                        guest_keys::vga_keys(&key).map(|k| Command::Guest(GuestInput::Vga(k)))
                    }
                    KeyTarget::Kiln => None,
                }
            }
            Context::TextField => {
                self.form_mut(step).type_key(key);
                None
            }
            _ => None,
        }
    }

    /// Do what a key asked for.
    fn perform(&mut self, action: Action) -> Option<Command> {
        let step = self.selected_step();
        let last_step = self.rows() - 1;
        match action {
            Action::Quit => return Some(Command::Quit),
            Action::Help => self.toggle(Overlay::Help),
            Action::Doctor => self.toggle(Overlay::Doctor),
            Action::ShowLog => {
                self.overlay = if matches!(self.overlay, Overlay::Log { .. }) {
                    Overlay::None
                } else {
                    Overlay::Log { step, scroll: 0 }
                }
            }
            Action::StepUp => self.selected = self.selected.saturating_sub(1),
            Action::StepDown => self.selected = (self.selected + 1).min(last_step),
            Action::OpenStep => self.open_screen(),
            Action::NextStep => {
                self.selected = (self.selected + 1).min(last_step);
                self.open_screen();
            }
            Action::NextField => self.form_mut(step).next_field(),
            Action::PrevField => self.form_mut(step).prev_field(),
            Action::CompleteOrNextField => self.form_mut(step).complete_or_next_field(),
            Action::ClearField => self.form_mut(step).clear_field(),
            Action::ChangeChoice => self.form_mut(step).change_choice(),
            Action::PrevChoice => self.form_mut(step).prev_choice(),
            Action::RunStep => return Some(self.start_command(step)),
            Action::Back => self.focus = Focus::Steps,
            Action::Cancel => self.overlay = Overlay::ConfirmStop,
            Action::ConsoleKeys => self.machine_mut(step)?.type_into_console(),
            Action::ScreenKeys => self.machine_mut(step)?.type_into_screen(),
            Action::SwitchPane => self.machine_mut(step)?.switch_pane(),
            Action::FullScreen => self.machine_mut(step)?.toggle_fullscreen(),
            Action::SavePicture => self.save_picture(step),
            Action::ReleaseKeyboard => self.machine_mut(step)?.keys_to = KeyTarget::Kiln,
            Action::Retry => return Some(Command::Retry(step)),
            Action::Build => return Some(Command::Build),
            Action::StopKept => self.cancel_running(),
            Action::Yes => return self.answer(true),
            Action::No => return self.answer(false),
            Action::Close => self.overlay = Overlay::None,
            Action::ScrollUp => self.scroll(-1),
            Action::ScrollDown => self.scroll(1),
            Action::PageUp => self.scroll(-PAGE),
            Action::PageDown => self.scroll(PAGE),
            Action::ScrollEnd => self.scroll(isize::MAX),
        }
        None
    }

    /// Move the open log or diff `lines` towards its end (negative: towards its start), no
    /// further up than its first line.
    fn scroll(&mut self, lines: isize) {
        let log_lines = match self.overlay {
            Overlay::Log { step, .. } => self.run(step).log.len(),
            _ => 0,
        };
        match &mut self.overlay {
            // The log's scroll counts up from its newest line.
            Overlay::Log { scroll, .. } => {
                let most = log_lines.saturating_sub(1);
                *scroll = scroll
                    .saturating_add_signed(lines.saturating_neg())
                    .min(most);
            }
            Overlay::ConfirmDiff { diff, scroll } => {
                // The last page is full: scrolling stops where the last line shows.
                let most = diff
                    .lines()
                    .count()
                    .saturating_sub(self.hits.diff_rows.get().max(1));
                *scroll = scroll.saturating_add_signed(lines).min(most);
            }
            _ => {}
        }
    }

    /// A mouse click: on the step list it selects a step; on a form it focuses the field
    /// (a button runs its step, a checkbox or choice changes).
    pub fn handle_mouse(&mut self, mouse: MouseEvent) -> Option<Command> {
        if mouse.kind != MouseEventKind::Down(MouseButton::Left) || self.overlay != Overlay::None {
            return None;
        }
        let at = Position::new(mouse.column, mouse.row);
        let steps = self.hits.steps.get();
        if steps.contains(at) {
            let row = usize::from(at.y - steps.y);
            if row < self.rows() {
                self.selected = row;
                self.focus = Focus::Steps;
            }
            return None;
        }
        let step = self.selected_step();
        if matches!(self.step_state(step), StepStatus::Running { .. }) || self.is_running() {
            return None;
        }
        let clicked = self.form_mut(step).click(at)?;
        self.focus = Focus::Screen;
        clicked.then_some(self.start_command(step))
    }

    fn start_command(&self, step: Step) -> Command {
        Command::Start(step)
    }

    fn toggle(&mut self, overlay: Overlay) {
        self.overlay = if self.overlay == overlay {
            Overlay::None
        } else {
            overlay
        };
    }

    /// Give the selected step's screen the keys, its cursor where typing is needed.
    pub(super) fn open_screen(&mut self) {
        self.focus = Focus::Screen;
        if !self.is_running() {
            let step = self.selected_step();
            self.form_mut(step).focus_first_empty();
        }
    }

    /// The answer to the open question: closes it and does what it asked about.
    fn answer(&mut self, yes: bool) -> Option<Command> {
        let overlay = std::mem::replace(&mut self.overlay, Overlay::None);
        match overlay {
            Overlay::ConfirmOverwrite(_) | Overlay::ConfirmDiff { .. } => {
                self.answer_step(yes);
                None
            }
            Overlay::ConfirmCleanLeftovers(found) if yes => Some(Command::CleanLeftovers(found)),
            Overlay::ConfirmStop if yes => {
                self.cancel_running();
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
impl App {
    /// A workbench with `theme` and the settings of a 2-CPU, 8 GiB host: what tests draw.
    pub(crate) fn for_tests(theme: &str) -> App {
        use crate::engine::host::config::{CliOverrides, FileConfig, HostResources, resolve};
        let host = HostResources {
            cpus: 2,
            memory_mib: 8192,
            software_emulation: false,
        };
        let settings = resolve(CliOverrides::default(), FileConfig::default(), host);
        App::new(settings, super::theme::Theme::built_in(theme))
    }
}

/// Which of the five screens shows a stage: its own step's, or the one nearest to it (a base
/// copy on Create's, provisioning on Configure's with its machine, post-build on Publish's).
pub fn screen_of(stage: &Stage) -> Step {
    match stage {
        Stage::Base(_) => Step::Create,
        Stage::Provision { .. } | Stage::Cleanup(_) => Step::Configure,
        Stage::PostBuild(_) => Step::Publish,
        other => other.step().expect("the five steps"),
    }
}
