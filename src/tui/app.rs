//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::cell::Cell;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};

use super::guest_keys;
use super::runner::RunningStep;
use super::steps::configure::ConfigureScreen;
use super::steps::create::CreateScreen;
use super::steps::install::InstallScreen;
use super::steps::machine_pane::{KeyTarget, MachinePane};
use super::steps::publish::PublishScreen;
use super::steps::run::StepRun;
use super::steps::verify::VerifyScreen;
use super::theme::Theme;
use crate::engine::Step;
use crate::engine::config::Settings;
use crate::engine::host::HostReport;
use crate::engine::machine::MachineRecord;
use crate::engine::session::StepStatus;
use crate::engine::workflow::{self, Workflow};

/// Where a step stands, as the step list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Done,
    /// Not run by kiln: the image was made or installed elsewhere.
    Skipped,
    Failed,
    /// Done once, but no longer true (the image changed, an earlier step ran again).
    Stale,
    /// A kiln running it was killed or crashed.
    Interrupted,
}

impl StepState {
    /// The word the step list shows after the title.
    pub fn word(self) -> &'static str {
        match self {
            StepState::Pending => "",
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Skipped => "skipped",
            StepState::Failed => "failed",
            StepState::Stale => "stale",
            StepState::Interrupted => "interrupted",
        }
    }
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
    ConfirmDiff(String),
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
    Quit,
}

/// Where things were drawn last, so a mouse click can find what it hit.
#[derive(Debug, Default)]
pub struct HitAreas {
    /// The step list's inner area: row `i` is step `i`.
    pub steps: Cell<Rect>,
}

/// The whole workbench state.
pub struct App {
    pub settings: Settings,
    pub theme: Theme,
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
    /// The one step running in the background, if any.
    pub running: Option<RunningStep>,
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
            notice: None,
            selected: 0,
            focus: Focus::Steps,
            overlay: Overlay::None,
            workflow: None,
            retry: None,
            hits: HitAreas::default(),
            doctor: None,
            running: None,
            record_dir: None,
            config_dir: None,
            width: 80,
            quitting: false,
        }
    }

    pub fn selected_step(&self) -> Step {
        Step::ALL[self.selected]
    }

    /// What the step list shows: running here, else what the session says.
    pub fn step_state(&self, step: Step) -> StepState {
        if self.running.as_ref().is_some_and(|r| r.step == step) {
            // A failed step keeping its machine up for a look has failed all the same.
            return if self.run(step).held.is_some() {
                StepState::Failed
            } else {
                StepState::Running
            };
        }
        let Some(workflow) = &self.workflow else {
            return StepState::Pending;
        };
        match workflow.status(step) {
            StepStatus::Pending => StepState::Pending,
            StepStatus::Running { .. } => StepState::Running,
            StepStatus::Interrupted => StepState::Interrupted,
            StepStatus::Done => StepState::Done,
            StepStatus::Skipped => StepState::Skipped,
            StepStatus::Failed(_) => StepState::Failed,
            StepStatus::Stale(_) => StepState::Stale,
        }
    }

    /// Why a stale step is stale, for its screen.
    pub fn stale_reason(&self, step: Step) -> Option<String> {
        match self.workflow.as_ref()?.status(step) {
            StepStatus::Stale(reason) => Some(reason),
            _ => None,
        }
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

    fn form_mut(&mut self, step: Step) -> &mut super::widgets::form::Form {
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

    /// A key was pressed; returns work for the async loop, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        // While the guest has the keyboard, everything but the release chord goes to it.
        let step = self.selected_step();
        if let Some(machine) = self.machine_mut(step)
            && machine.keys_to != KeyTarget::Kiln
        {
            if guest_keys::is_release_chord(&key) || machine.view.is_none() {
                machine.keys_to = KeyTarget::Kiln;
                return None;
            }
            return match machine.keys_to {
                KeyTarget::Serial => {
                    guest_keys::serial_bytes(&key).map(|b| Command::Guest(GuestInput::Serial(b)))
                }
                KeyTarget::Vga => {
                    guest_keys::vga_keys(&key).map(|k| Command::Guest(GuestInput::Vga(k)))
                }
                KeyTarget::Kiln => None,
            };
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        if key.code == KeyCode::F(1) {
            self.toggle(Overlay::Help);
            return None;
        }
        if key.code == KeyCode::F(2) {
            let log = Overlay::Log { step, scroll: 0 };
            self.overlay = if matches!(self.overlay, Overlay::Log { .. }) {
                Overlay::None
            } else {
                log
            };
            return None;
        }
        match self.overlay.clone() {
            Overlay::ConfirmOverwrite(_)
            | Overlay::ConfirmStop
            | Overlay::ConfirmDiff(_)
            | Overlay::ConfirmCleanLeftovers(_) => {
                return self.confirm_key(key);
            }
            Overlay::Help | Overlay::Doctor => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Char('d')
                ) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::Log { step, scroll } => {
                let scroll = match key.code {
                    KeyCode::Esc | KeyCode::Char('q') => {
                        self.overlay = Overlay::None;
                        return None;
                    }
                    KeyCode::Up | KeyCode::Char('k') => scroll + 1,
                    KeyCode::Down | KeyCode::Char('j') => scroll.saturating_sub(1),
                    KeyCode::PageUp => scroll + 10,
                    KeyCode::PageDown => scroll.saturating_sub(10),
                    KeyCode::End => 0,
                    _ => scroll,
                };
                let most = self.run(step).log.len().saturating_sub(1);
                self.overlay = Overlay::Log {
                    step,
                    scroll: scroll.min(most),
                };
                return None;
            }
            Overlay::None => {}
        }
        match self.focus {
            Focus::Steps => self.steps_key(key),
            Focus::Screen => self.screen_key(key),
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
            if row < Step::ALL.len() {
                self.selected = row;
                self.focus = Focus::Steps;
            }
            return None;
        }
        let step = self.selected_step();
        if self.step_state(step) == StepState::Running || self.is_running() {
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

    fn steps_key(&mut self, key: KeyEvent) -> Option<Command> {
        match key.code {
            KeyCode::Char('q') => return Some(Command::Quit),
            KeyCode::Char('?') => self.toggle(Overlay::Help),
            KeyCode::Char('d') => self.toggle(Overlay::Doctor),
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(Step::ALL.len() - 1)
            }
            KeyCode::Enter | KeyCode::Right | KeyCode::Tab | KeyCode::Char('l') => {
                self.focus = Focus::Screen
            }
            KeyCode::Char('n') => {
                self.selected = (self.selected + 1).min(Step::ALL.len() - 1);
                self.focus = Focus::Screen;
            }
            _ => {}
        }
        None
    }

    fn screen_key(&mut self, key: KeyEvent) -> Option<Command> {
        let step = self.selected_step();
        let running_here = self.running.as_ref().is_some_and(|r| r.step == step);
        let held = running_here && self.run(step).held.is_some();
        if held {
            // A failed step's machine, kept for a look: retry, stop, or type into it.
            return match key.code {
                KeyCode::Char('r') => Some(Command::Retry(step)),
                KeyCode::Esc | KeyCode::Char('s') => {
                    self.cancel_running();
                    None
                }
                KeyCode::Char(c) => {
                    if let Some(machine) = self.machine_mut(step) {
                        machine.handle_key(c);
                    }
                    None
                }
                _ => None,
            };
        }
        if key.code == KeyCode::Esc {
            if running_here {
                self.overlay = Overlay::ConfirmStop;
            } else {
                self.focus = Focus::Steps;
            }
            return None;
        }
        if running_here {
            if let (KeyCode::Char(c), Some(machine)) = (key.code, self.machine_mut(step)) {
                machine.handle_key(c);
            }
            return None;
        }
        if self.is_running() {
            return None;
        }
        let run = self.form_mut(step).handle_key(key);
        run.then(|| self.start_command(step))
    }

    fn confirm_key(&mut self, key: KeyEvent) -> Option<Command> {
        let yes = matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y'));
        let no = matches!(
            key.code,
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc
        );
        if !(yes || no) {
            return None;
        }
        let overlay = std::mem::replace(&mut self.overlay, Overlay::None);
        match overlay {
            Overlay::ConfirmOverwrite(_) | Overlay::ConfirmDiff(_) => {
                self.answer(yes);
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
