//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::path::PathBuf;
use std::sync::Arc;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tokio::sync::{mpsc, oneshot};

use super::guest_keys;
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
use crate::engine::configure::{self, Approval, ConfigureError, Configured};
use crate::engine::host::{Accelerator, HostReport};
use crate::engine::image::{self, CreateError, CreateRequest, ImageInfo};
use crate::engine::install::{self, InstallError, InstallOutcome, InstallRequest};
use crate::engine::iso::Expected;
use crate::engine::machine::{self, MachineRecord};
use crate::engine::publish::{self, PublishError, Published};
use crate::engine::task::{self, Event, Level, Summary, Task};
use crate::engine::verify::{self, Report, VerifyError};

/// Where a step stands, as the step list shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
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
    /// The sshd_config diff, waiting for the person's yes before configure applies it.
    ConfirmDiff(String),
    /// Machines an earlier kiln left running (it crashed or was killed): stop them?
    ConfirmCleanLeftovers(Vec<(PathBuf, MachineRecord)>),
}

/// A question from a running step: the diff to show and where the answer goes.
pub type ApprovalRequest = (String, oneshot::Sender<bool>);

/// Input for the guest, delivered by the async loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestInput {
    Serial(Vec<u8>),
    Vga(Vec<&'static str>),
}

/// Something the key handler asks the async loop to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    StartCreate {
        force: bool,
    },
    /// Start the selected form-based step (install, configure, verify, publish).
    Start(Step),
    Guest(GuestInput),
    /// Stop machines an earlier kiln left behind.
    CleanLeftovers(Vec<(PathBuf, MachineRecord)>),
    Quit,
}

/// The one step running in the background, if any.
pub enum Running {
    Create(Task<ImageInfo, CreateError>),
    Install(Task<InstallOutcome, InstallError>),
    Configure(Task<Configured, ConfigureError>),
    Verify(Task<Report, VerifyError>),
    Publish(Task<Published, PublishError>),
}

impl Running {
    pub async fn next_event(&mut self) -> Option<Event> {
        match self {
            Running::Create(task) => task.next_event().await,
            Running::Install(task) => task.next_event().await,
            Running::Configure(task) => task.next_event().await,
            Running::Verify(task) => task.next_event().await,
            Running::Publish(task) => task.next_event().await,
        }
    }

    fn cancel(&self) {
        match self {
            Running::Create(task) => task.cancel(),
            Running::Install(task) => task.cancel(),
            Running::Configure(task) => task.cancel(),
            Running::Verify(task) => task.cancel(),
            Running::Publish(task) => task.cancel(),
        }
    }

    fn step(&self) -> Step {
        match self {
            Running::Create(_) => Step::Create,
            Running::Install(_) => Step::Install,
            Running::Configure(_) => Step::Configure,
            Running::Verify(_) => Step::Verify,
            Running::Publish(_) => Step::Publish,
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
    pub configure: ConfigureScreen,
    pub verify: VerifyScreen,
    pub publish: PublishScreen,
    states: [StepState; 5],
    pub doctor: Option<HostReport>,
    pub running: Option<Running>,
    /// Where machine records live (crash recovery), when kiln has a data directory.
    pub record_dir: Option<PathBuf>,
    /// kiln's config directory (the Djinn token file lives there).
    pub config_dir: Option<PathBuf>,
    /// Steps ask their questions here; the event loop turns them into dialogs.
    pub approvals: mpsc::UnboundedSender<ApprovalRequest>,
    /// The answer the open ConfirmDiff dialog owes.
    pub pending_approval: Option<oneshot::Sender<bool>>,
    /// The terminal's width at the last draw, to know whether the screen pane is visible.
    pub width: u16,
    pub quitting: bool,
}

impl App {
    /// The app and the receiving end of its steps' questions (for the event loop).
    pub fn new(
        settings: Settings,
        theme: Theme,
    ) -> (App, mpsc::UnboundedReceiver<ApprovalRequest>) {
        let (approvals, questions) = mpsc::unbounded_channel();
        (App::with_approvals(settings, theme, approvals), questions)
    }

    fn with_approvals(
        settings: Settings,
        theme: Theme,
        approvals: mpsc::UnboundedSender<ApprovalRequest>,
    ) -> App {
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
            states: [StepState::Pending; 5],
            doctor: None,
            running: None,
            record_dir: None,
            config_dir: None,
            approvals,
            pending_approval: None,
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

    /// The machine pane of a step's screen.
    pub fn machine(&self, step: Step) -> Option<&MachinePane> {
        match step {
            Step::Install => Some(&self.install.machine),
            Step::Configure => Some(&self.configure.run.machine),
            Step::Verify => Some(&self.verify.run.machine),
            Step::Create | Step::Publish => None,
        }
    }

    fn machine_mut(&mut self, step: Step) -> Option<&mut MachinePane> {
        match step {
            Step::Install => Some(&mut self.install.machine),
            Step::Configure => Some(&mut self.configure.run.machine),
            Step::Verify => Some(&mut self.verify.run.machine),
            Step::Create | Step::Publish => None,
        }
    }

    /// The run state of a form-based step.
    pub fn run(&self, step: Step) -> Option<&StepRun> {
        match step {
            Step::Configure => Some(&self.configure.run),
            Step::Verify => Some(&self.verify.run),
            Step::Publish => Some(&self.publish.run),
            Step::Create | Step::Install => None,
        }
    }

    fn run_mut(&mut self, step: Step) -> Option<&mut StepRun> {
        match step {
            Step::Configure => Some(&mut self.configure.run),
            Step::Verify => Some(&mut self.verify.run),
            Step::Publish => Some(&mut self.publish.run),
            Step::Create | Step::Install => None,
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
                self.create
                    .form
                    .handle_key(key)
                    .then_some(Command::StartCreate {
                        force: self.create.form.checked("overwrite"),
                    })
            }
            _ if running_here => {
                if let (KeyCode::Char(c), Some(machine)) = (key.code, self.machine_mut(step)) {
                    machine.handle_key(c);
                }
                None
            }
            _ if self.is_running() => None,
            Step::Create => None,
            Step::Install => self
                .install
                .form
                .handle_key(key)
                .then_some(Command::Start(step)),
            Step::Configure => self
                .configure
                .form
                .handle_key(key)
                .then_some(Command::Start(step)),
            Step::Verify => self
                .verify
                .form
                .handle_key(key)
                .then_some(Command::Start(step)),
            Step::Publish => self
                .publish
                .form
                .handle_key(key)
                .then_some(Command::Start(step)),
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
            Overlay::ConfirmCleanLeftovers(found) if yes => Some(Command::CleanLeftovers(found)),
            Overlay::ConfirmDiff(_) => {
                if let Some(reply) = self.pending_approval.take() {
                    let _ = reply.send(yes);
                }
                None
            }
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
            path: PathBuf::from(self.create.form.text("path")),
            size: self.create.form.raw("size"),
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

    /// Stop the leftover machines the person agreed to stop.
    pub async fn clean_leftovers(&mut self, found: Vec<(PathBuf, MachineRecord)>) {
        for (record_file, record) in &found {
            machine::clean_leftover(record_file, record).await;
        }
        self.notice = Some(format!(
            "stopped {} machine(s) left by an earlier kiln",
            found.len()
        ));
    }

    /// The accelerator machines get: what the doctor found, TCG until it has answered.
    fn accelerator(&self) -> Accelerator {
        self.doctor
            .as_ref()
            .map_or(Accelerator::Tcg, |report| report.accelerator)
    }

    /// Start a form-based step with what its form says.
    pub fn start(&mut self, step: Step) {
        if self.is_running() {
            return;
        }
        let accelerator = self.accelerator();
        let record_dir = self.record_dir.clone();
        let running = match step {
            Step::Install => return self.start_install(),
            Step::Create => return,
            Step::Configure => {
                let approvals = self.approvals.clone();
                let approve = Approval(Arc::new(move |diff: String| {
                    let approvals = approvals.clone();
                    Box::pin(async move {
                        let (reply, answer) = oneshot::channel();
                        // No frontend to ask (it went away): do not change anything.
                        approvals.send((diff, reply)).is_ok() && answer.await.unwrap_or(false)
                    })
                }));
                let request = self.configure.request(
                    accelerator,
                    self.settings.memory_mib,
                    self.settings.cpus,
                    record_dir,
                    approve,
                );
                let title = format!(
                    "configuring {} as {}",
                    request.image.display(),
                    request.user
                );
                Running::Configure(task::spawn(title, |r| configure::configure(request, r)))
            }
            Step::Verify => {
                let request = self.verify.request(accelerator, record_dir);
                let title = format!("checking {}", request.image.display());
                Running::Verify(task::spawn(title, |r| verify::verify(request, r)))
            }
            Step::Publish => match self.publish.request(self.config_dir.clone()) {
                Ok(request) => {
                    let title = format!(
                        "publishing {} to {}",
                        request.image.display(),
                        request.target.describe()
                    );
                    Running::Publish(task::spawn(title, |r| publish::publish(request, r)))
                }
                Err(e) => {
                    self.publish.run.reset();
                    self.publish.run.error = Some(e.to_string());
                    self.set_state(Step::Publish, StepState::Failed);
                    return;
                }
            },
        };
        if let Some(run) = self.run_mut(step) {
            run.reset();
        }
        self.set_state(step, StepState::Running);
        self.running = Some(running);
    }

    /// Start the installer machine with the form's inputs.
    pub fn start_install(&mut self) {
        if self.is_running() {
            return;
        }
        let accelerator = self.accelerator();
        let screen = &mut self.install;
        screen.error = None;
        screen.log.clear();
        screen.progress = None;
        screen.outcome = None;
        screen.machine.clear();
        let sha = screen.form.text("sha256");
        let sha = sha.as_str();
        let checksum = if sha.is_empty() {
            None
        } else if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
            Some(Expected::Hex(sha.to_string()))
        } else {
            Some(Expected::SumsFile(PathBuf::from(sha)))
        };
        let request = InstallRequest {
            image: PathBuf::from(screen.form.text("disk")),
            iso: PathBuf::from(screen.form.text("iso")),
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
        if let Event::Machine(view) = event {
            if let Some(machine) = self.machine_mut(step) {
                machine.view = Some(view);
            }
            return;
        }
        let (log, progress, error) = match step {
            Step::Create => (
                &mut self.create.log,
                &mut self.create.progress,
                &mut self.create.error,
            ),
            Step::Install => (
                &mut self.install.log,
                &mut self.install.progress,
                &mut self.install.error,
            ),
            other => {
                let run = self.run_mut(other).expect("form steps have a run");
                if let Event::Check(check) = event {
                    run.checks.push(check);
                    return;
                }
                (&mut run.log, &mut run.progress, &mut run.error)
            }
        };
        match event {
            Event::Started { title } => log.push((Level::Info, title)),
            Event::Log { level, message } => log.push((level, message)),
            Event::Progress(p) => *progress = Some(p),
            Event::Failed { error: message } => *error = Some(message),
            // The result panel shows what the summary says; machines and checks went above.
            Event::Finished { .. } | Event::Machine(_) | Event::Check(_) => {}
        }
    }

    /// The running step has sent its last event: collect its result.
    pub async fn finish(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let step = running.step();
        if let Some(machine) = self.machine_mut(step) {
            machine.clear();
        }
        let outcome: Result<Vec<String>, String> = match running {
            Running::Create(task) => match task.result().await {
                Ok(info) => {
                    let path = info.path.display().to_string();
                    self.carry_disk(&path);
                    self.create.result = Some(info);
                    self.create.form.set_checked("overwrite", false);
                    Ok(Vec::new())
                }
                Err(e) => {
                    self.create.error = Some(e.to_string());
                    Err(e.to_string())
                }
            },
            Running::Install(task) => match task.result().await {
                Ok(outcome) => {
                    self.carry_disk(&outcome.image.display().to_string());
                    self.install.outcome = Some(outcome);
                    Ok(Vec::new())
                }
                Err(e) => {
                    self.install.error = Some(e.to_string());
                    Err(e.to_string())
                }
            },
            Running::Configure(task) => task
                .result()
                .await
                .map(|c| {
                    let mut lines = vec![c.summary()];
                    lines.extend(c.diff.lines().map(str::to_string));
                    lines
                })
                .map_err(|e| e.to_string()),
            Running::Verify(task) => match task.result().await {
                Ok(report) if report.passed() => Ok(vec![
                    report.summary(),
                    "the CI driver should accept this image".into(),
                ]),
                Ok(report) => Err(format!("{} — see the fixes above", report.summary())),
                Err(e) => Err(e.to_string()),
            },
            Running::Publish(task) => task
                .result()
                .await
                .map(|p| {
                    let mut lines = vec![p.summary()];
                    lines.extend(
                        p.destination
                            .manifest()
                            .into_iter()
                            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>()),
                    );
                    if let Some(sum) = &p.checksum {
                        lines.push(format!("sha256 {} ({})", sum.sha256, sum.file.display()));
                    }
                    lines
                })
                .map_err(|e| e.to_string()),
        };
        let failed = outcome.is_err();
        if let Some(run) = self.run_mut(step) {
            match outcome {
                Ok(lines) => run.outcome = lines,
                Err(message) => run.error = Some(message),
            }
        }
        self.set_state(
            step,
            if failed {
                StepState::Failed
            } else {
                StepState::Done
            },
        );
    }

    /// A finished step's disk becomes the next steps' default.
    fn carry_disk(&mut self, path: &str) {
        for form in [
            &mut self.configure.form,
            &mut self.verify.form,
            &mut self.publish.form,
        ] {
            form.set_text("disk", path);
        }
    }

    /// Deliver typed input to the machine on screen.
    pub async fn send_to_guest(&mut self, input: GuestInput) {
        let Some(view) = self
            .machine(self.selected_step())
            .and_then(|m| m.view.clone())
        else {
            return;
        };
        match input {
            GuestInput::Serial(bytes) => view.send_serial(bytes),
            GuestInput::Vga(keys) => {
                if let Err(e) = view.send_key(&keys).await {
                    tracing::warn!("key not sent to the guest: {e}");
                }
            }
        }
    }

    /// Refresh the VGA picture if it is visible.
    pub async fn refresh_screen(&mut self) {
        if !self.wants_screenshot() {
            return;
        }
        let step = self.selected_step();
        let Some(view) = self.machine(step).and_then(|m| m.view.clone()) else {
            return;
        };
        match view.screenshot().await {
            Ok(picture) => {
                if let Some(machine) = self.machine_mut(step) {
                    machine.picture = Some(picture);
                }
            }
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
