//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::guest_keys;
use super::steps::create::CreateScreen;
use super::steps::install::{InstallScreen, KeyTarget, Pane};
use super::theme::Theme;
use crate::engine::Step;
use crate::engine::config::Settings;
use crate::engine::host::{Accelerator, HostReport};
use crate::engine::image::{self, CreateError, CreateRequest, ImageInfo};
use crate::engine::install::{self, InstallError, InstallOutcome, InstallRequest};
use crate::engine::iso::Expected;
use crate::engine::task::{self, Event, Level, Task};

/// Where a step stands, as the step list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
    NotBuilt,
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
    ConfirmOverwrite(PathBuf),
    ConfirmStop,
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
    StartCreate { force: bool },
    StartInstall,
    Guest(GuestInput),
    Quit,
}

/// The one step running in the background, if any.
pub enum Running {
    Create(Task<ImageInfo, CreateError>),
    Install(Task<InstallOutcome, InstallError>),
}

impl Running {
    pub async fn next_event(&mut self) -> Option<Event> {
        match self {
            Running::Create(task) => task.next_event().await,
            Running::Install(task) => task.next_event().await,
        }
    }

    fn cancel(&self) {
        match self {
            Running::Create(task) => task.cancel(),
            Running::Install(task) => task.cancel(),
        }
    }

    fn step(&self) -> Step {
        match self {
            Running::Create(_) => Step::Create,
            Running::Install(_) => Step::Install,
        }
    }
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
    states: [StepState; 5],
    pub doctor: Option<HostReport>,
    pub running: Option<Running>,
    /// Where machine records live (crash recovery), when kiln has a data directory.
    pub record_dir: Option<PathBuf>,
    /// The terminal's width at the last draw, to know whether the screen pane is visible.
    pub width: u16,
    pub quitting: bool,
}

impl App {
    pub fn new(settings: Settings, theme: Theme) -> App {
        let states = Step::ALL.map(|s| {
            if s.is_built() {
                StepState::Pending
            } else {
                StepState::NotBuilt
            }
        });
        App {
            create: CreateScreen::new(&settings),
            install: InstallScreen::new(),
            settings,
            theme,
            notice: None,
            selected: 0,
            focus: Focus::Steps,
            overlay: Overlay::None,
            states,
            doctor: None,
            running: None,
            record_dir: None,
            width: 80,
            quitting: false,
        }
    }

    pub fn selected_step(&self) -> Step {
        Step::ALL[self.selected]
    }

    pub fn step_state(&self, step: Step) -> StepState {
        self.states[Self::index(step)]
    }

    fn set_state(&mut self, step: Step, state: StepState) {
        self.states[Self::index(step)] = state;
    }

    fn index(step: Step) -> usize {
        Step::ALL
            .iter()
            .position(|s| *s == step)
            .expect("every step is listed")
    }

    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether a fresh screenshot should be taken (install running, screen pane visible).
    pub fn wants_screenshot(&self) -> bool {
        self.selected_step() == Step::Install && self.install.screen_visible(self.width)
    }

    /// A key was pressed; returns work for the async loop, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        // While the guest has the keyboard, everything but the release chord goes to it.
        if self.install.keys_to != KeyTarget::Kiln {
            if guest_keys::is_release_chord(&key) || self.install.machine.is_none() {
                self.install.keys_to = KeyTarget::Kiln;
                return None;
            }
            return match self.install.keys_to {
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
        match self.overlay.clone() {
            Overlay::ConfirmOverwrite(_) | Overlay::ConfirmStop => return self.confirm_key(key),
            Overlay::Help | Overlay::Doctor => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Char('?') | KeyCode::Char('q') | KeyCode::Char('d')
                ) {
                    self.overlay = Overlay::None;
                }
                return None;
            }
            Overlay::None => {}
        }
        match self.focus {
            Focus::Steps => self.steps_key(key),
            Focus::Screen => self.screen_key(key),
        }
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
            _ => {}
        }
        None
    }

    fn screen_key(&mut self, key: KeyEvent) -> Option<Command> {
        let step = self.selected_step();
        let running_here = self.running.as_ref().is_some_and(|r| r.step() == step);
        if key.code == KeyCode::Esc {
            if running_here {
                self.overlay = Overlay::ConfirmStop;
            } else {
                self.focus = Focus::Steps;
            }
            return None;
        }
        match step {
            Step::Create if !running_here => {
                self.create.handle_key(key).then_some(Command::StartCreate {
                    force: self.create.overwrite,
                })
            }
            Step::Install if running_here => {
                self.machine_key(key);
                None
            }
            Step::Install if !self.is_running() => self
                .install
                .handle_form_key(key)
                .then_some(Command::StartInstall),
            _ if !step.is_built() => {
                if matches!(
                    key.code,
                    KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('q')
                ) {
                    self.focus = Focus::Steps;
                }
                None
            }
            _ => None,
        }
    }

    /// kiln's own keys on the Install screen while the machine runs.
    fn machine_key(&mut self, key: KeyEvent) {
        let screen = &mut self.install;
        if screen.machine.is_none() {
            return;
        }
        match key.code {
            KeyCode::Char('c') => {
                screen.pane = Pane::Console;
                screen.keys_to = KeyTarget::Serial;
            }
            KeyCode::Char('v') => {
                screen.pane = Pane::Screen;
                screen.keys_to = KeyTarget::Vga;
            }
            KeyCode::Char('t') => {
                screen.pane = match screen.pane {
                    Pane::Console => Pane::Screen,
                    Pane::Screen => Pane::Console,
                }
            }
            _ => {}
        }
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
            Overlay::ConfirmOverwrite(_) if yes => Some(Command::StartCreate { force: true }),
            Overlay::ConfirmStop if yes => {
                if let Some(running) = &self.running {
                    running.cancel();
                }
                None
            }
            _ => None,
        }
    }

    /// Validate the form and start `qemu-img create`; an existing file asks first.
    pub async fn start_create(&mut self, force: bool) {
        if self.is_running() {
            return;
        }
        let request = CreateRequest {
            path: PathBuf::from(self.create.path.value.trim()),
            size: self.create.size.value.clone(),
            force,
        };
        self.create.error = None;
        self.create.log.clear();
        self.create.progress = None;
        match image::plan_create(&request).await {
            Err(CreateError::Exists(path)) => {
                self.overlay = Overlay::ConfirmOverwrite(path);
            }
            Err(e) => {
                self.create.error = Some(e.to_string());
                self.set_state(Step::Create, StepState::Failed);
            }
            Ok(plan) => {
                self.create.result = None;
                self.set_state(Step::Create, StepState::Running);
                let title = format!("creating {} ({})", plan.path.display(), plan.size);
                self.running = Some(Running::Create(task::spawn(title, |r| {
                    image::create(plan, r)
                })));
            }
        }
    }

    /// Start the installer machine with the form's inputs.
    pub fn start_install(&mut self) {
        if self.is_running() {
            return;
        }
        let screen = &mut self.install;
        screen.error = None;
        screen.log.clear();
        screen.progress = None;
        screen.outcome = None;
        screen.picture = None;
        let sha = screen.sha256.value.trim();
        let checksum = if sha.is_empty() {
            None
        } else if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
            Some(Expected::Hex(sha.to_string()))
        } else {
            Some(Expected::SumsFile(PathBuf::from(sha)))
        };
        let accelerator = self
            .doctor
            .as_ref()
            .map_or(Accelerator::Tcg, |report| report.accelerator);
        let request = InstallRequest {
            image: PathBuf::from(screen.image.value.trim()),
            iso: PathBuf::from(screen.iso.value.trim()),
            checksum,
            accelerator,
            memory_mib: self.settings.memory_mib,
            cpus: self.settings.cpus,
            timeout: None,
            vnc: true,
            record_dir: self.record_dir.clone(),
        };
        let title = format!("installing onto {}", request.image.display());
        self.set_state(Step::Install, StepState::Running);
        self.running = Some(Running::Install(task::spawn(title, |r| {
            install::install(request, r)
        })));
    }

    /// Take in one event from the running step.
    pub fn apply(&mut self, event: Event) {
        let Some(step) = self.running.as_ref().map(Running::step) else {
            return;
        };
        let (log, progress, error) = match step {
            Step::Install => (
                &mut self.install.log,
                &mut self.install.progress,
                &mut self.install.error,
            ),
            _ => (
                &mut self.create.log,
                &mut self.create.progress,
                &mut self.create.error,
            ),
        };
        match event {
            Event::Started { title } => log.push((Level::Info, title)),
            Event::Log { level, message } => log.push((level, message)),
            Event::Progress(p) => *progress = Some(p),
            Event::Machine(view) => self.install.machine = Some(view),
            Event::Check(_) => {}
            // The result panel shows what the summary says.
            Event::Finished { .. } => {}
            Event::Failed { error: message } => *error = Some(message),
        }
    }

    /// The running step has sent its last event: collect its result.
    pub async fn finish(&mut self) {
        match self.running.take() {
            None => {}
            Some(Running::Create(task)) => match task.result().await {
                Ok(info) => {
                    self.install.image =
                        super::widgets::text_field::TextField::new(info.path.display().to_string());
                    self.create.result = Some(info);
                    self.create.overwrite = false;
                    self.set_state(Step::Create, StepState::Done);
                }
                Err(e) => {
                    self.create.error = Some(e.to_string());
                    self.set_state(Step::Create, StepState::Failed);
                }
            },
            Some(Running::Install(task)) => {
                let result = task.result().await;
                self.install.machine = None;
                self.install.keys_to = KeyTarget::Kiln;
                match result {
                    Ok(outcome) => {
                        self.install.outcome = Some(outcome);
                        self.set_state(Step::Install, StepState::Done);
                    }
                    Err(e) => {
                        self.install.error = Some(e.to_string());
                        self.set_state(Step::Install, StepState::Failed);
                    }
                }
            }
        }
    }

    /// Deliver typed input to the running machine.
    pub async fn send_to_guest(&mut self, input: GuestInput) {
        let Some(view) = self.install.machine.clone() else {
            return;
        };
        match input {
            GuestInput::Serial(bytes) => view.send_serial(bytes),
            GuestInput::Vga(keys) => {
                if let Err(e) = view.send_key(&keys).await {
                    self.install
                        .log
                        .push((Level::Warn, format!("key not sent: {e}")));
                }
            }
        }
    }

    /// Refresh the VGA picture if it is visible.
    pub async fn refresh_screen(&mut self) {
        if !self.wants_screenshot() {
            return;
        }
        let Some(view) = self.install.machine.clone() else {
            return;
        };
        match view.screenshot().await {
            Ok(picture) => self.install.picture = Some(picture),
            Err(e) => tracing::debug!("screenshot: {e}"),
        }
    }

    /// Stop whatever runs and wait for it to clean up, before the terminal is given back.
    pub async fn shut_down(&mut self) {
        if let Some(running) = &self.running {
            running.cancel();
        }
        while let Some(running) = self.running.as_mut() {
            match running.next_event().await {
                Some(event) => self.apply(event),
                None => self.finish().await,
            }
        }
    }
}
