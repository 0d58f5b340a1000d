//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::theme::Theme;
use super::widgets::text_field::TextField;
use crate::engine::Step;
use crate::engine::config::Settings;
use crate::engine::host::HostReport;
use crate::engine::image::{
    self, CreateError, CreateRequest, ImageInfo, image_name_problem, parse_size,
};
use crate::engine::task::{self, Event, Level, Progress, Task};

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
}

/// The fields of the Create form, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateField {
    Path,
    Size,
    Overwrite,
    Button,
}

impl CreateField {
    const ORDER: [CreateField; 4] = [
        CreateField::Path,
        CreateField::Size,
        CreateField::Overwrite,
        CreateField::Button,
    ];

    fn step(self, forward: bool) -> CreateField {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// The Create screen: its form, what the last run said, and its result.
#[derive(Debug, Clone)]
pub struct CreateScreen {
    pub path: TextField,
    pub size: TextField,
    pub overwrite: bool,
    pub field: CreateField,
    /// Log lines of the current or last run.
    pub log: Vec<(Level, String)>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    pub result: Option<ImageInfo>,
}

impl CreateScreen {
    fn new(settings: &Settings) -> CreateScreen {
        let path = settings.image_dir.join("my-image.qcow2");
        CreateScreen {
            path: TextField::new(path.display().to_string()),
            size: TextField::new("10G"),
            overwrite: false,
            field: CreateField::Path,
            log: Vec::new(),
            progress: None,
            error: None,
            result: None,
        }
    }

    /// Problems with the size as typed, shown under the field while typing.
    pub fn size_message(&self) -> Option<(Level, String)> {
        match parse_size(&self.size.value) {
            Err(e) => Some((Level::Warn, e)),
            Ok(size) if size.bytes() > image::RECOMMENDED_MAX_SIZE => {
                Some((Level::Warn, format!("{size}: above the recommended 20 GB")))
            }
            Ok(size) => Some((
                Level::Info,
                format!("{size}, allocated as the guest writes"),
            )),
        }
    }

    /// Hints about the path as typed: an existing file, a name Djinn would refuse.
    pub fn path_message(&self) -> Option<(Level, String)> {
        let path = PathBuf::from(&self.path.value);
        if self.path.value.trim().is_empty() {
            return Some((Level::Warn, "type where the image should go".into()));
        }
        if path.is_dir() {
            return Some((Level::Warn, "that is a directory; add a file name".into()));
        }
        if path.exists() {
            let note = if self.overwrite {
                "exists and will be replaced"
            } else {
                "exists; creating will ask before replacing it"
            };
            return Some((Level::Warn, note.into()));
        }
        image_name_problem(&path).map(|p| (Level::Warn, p))
    }
}

/// Something the key handler asks the async loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    StartCreate { force: bool },
    Quit,
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
    pub create_state: StepState,
    pub doctor: Option<HostReport>,
    pub create_task: Option<Task<ImageInfo, CreateError>>,
    pub quitting: bool,
}

impl App {
    pub fn new(settings: Settings, theme: Theme) -> App {
        App {
            create: CreateScreen::new(&settings),
            settings,
            theme,
            notice: None,
            selected: 0,
            focus: Focus::Steps,
            overlay: Overlay::None,
            create_state: StepState::Pending,
            doctor: None,
            create_task: None,
            quitting: false,
        }
    }

    pub fn selected_step(&self) -> Step {
        Step::ALL[self.selected]
    }

    pub fn step_state(&self, step: Step) -> StepState {
        match step {
            Step::Create => self.create_state,
            other if other.is_built() => StepState::Pending,
            _ => StepState::NotBuilt,
        }
    }

    fn is_running(&self) -> bool {
        self.create_task.is_some()
    }

    /// A key was pressed; returns work for the async loop, if any.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Command> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        if key.code == KeyCode::F(1) {
            self.toggle(Overlay::Help);
            return None;
        }
        match self.overlay.clone() {
            Overlay::ConfirmOverwrite(_) => return self.confirm_key(key),
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
        if key.code == KeyCode::Esc {
            if self.is_running() {
                if let Some(task) = &self.create_task {
                    task.cancel();
                }
            } else {
                self.focus = Focus::Steps;
            }
            return None;
        }
        if self.selected_step() != Step::Create {
            if matches!(
                key.code,
                KeyCode::Left | KeyCode::Char('h') | KeyCode::Char('q')
            ) {
                self.focus = Focus::Steps;
            }
            return None;
        }
        if self.is_running() {
            return None;
        }
        let screen = &mut self.create;
        match key.code {
            KeyCode::Tab | KeyCode::Down => screen.field = screen.field.step(true),
            KeyCode::BackTab | KeyCode::Up => screen.field = screen.field.step(false),
            KeyCode::Enter => {
                return Some(Command::StartCreate {
                    force: screen.overwrite,
                });
            }
            _ => match screen.field {
                CreateField::Path => {
                    screen.path.edit(key);
                }
                CreateField::Size => {
                    screen.size.edit(key);
                }
                CreateField::Overwrite if key.code == KeyCode::Char(' ') => {
                    screen.overwrite = !screen.overwrite
                }
                _ => {}
            },
        }
        None
    }

    fn confirm_key(&mut self, key: KeyEvent) -> Option<Command> {
        match key.code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.overlay = Overlay::None;
                Some(Command::StartCreate { force: true })
            }
            KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => {
                self.overlay = Overlay::None;
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
                self.create_state = StepState::Failed;
            }
            Ok(plan) => {
                self.create.result = None;
                self.create_state = StepState::Running;
                let title = format!("creating {} ({})", plan.path.display(), plan.size);
                self.create_task = Some(task::spawn(title, |r| image::create(plan, r)));
            }
        }
    }

    /// Take in one event from the running step.
    pub fn apply(&mut self, event: Event) {
        let screen = &mut self.create;
        match event {
            Event::Started { title } => screen.log.push((Level::Info, title)),
            Event::Log { level, message } => screen.log.push((level, message)),
            Event::Progress(p) => screen.progress = Some(p),
            // The result panel shows what the summary says.
            Event::Finished { .. } => {}
            Event::Failed { error } => screen.error = Some(error),
        }
    }

    /// The running step has sent its last event: collect its result.
    pub async fn finish_create(&mut self) {
        let Some(task) = self.create_task.take() else {
            return;
        };
        match task.result().await {
            Ok(info) => {
                self.create.result = Some(info);
                self.create.overwrite = false;
                self.create_state = StepState::Done;
            }
            Err(e) => {
                self.create.error = Some(e.to_string());
                self.create_state = StepState::Failed;
            }
        }
    }

    /// Stop whatever runs and wait for it to clean up, before the terminal is given back.
    pub async fn shut_down(&mut self) {
        if let Some(task) = &self.create_task {
            task.cancel();
        }
        while let Some(task) = self.create_task.as_mut() {
            match task.next_event().await {
                Some(event) => self.apply(event),
                None => self.finish_create().await,
            }
        }
    }
}
