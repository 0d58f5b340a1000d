//! The workbench's state and how keys and engine events change it. Drawing lives in
//! `screens/`; the terminal loop in `tui/mod.rs`.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use tokio::sync::{mpsc, oneshot};

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
use crate::engine::Step;
use crate::engine::config::Settings;
use crate::engine::configure::{self, Approval, ConfigureError, Configured};
use crate::engine::flow::{self, MachineSettings};
use crate::engine::host::{Accelerator, HostReport};
use crate::engine::image::{self, CreateError, ImageInfo};
use crate::engine::install::{self, InstallError, InstallOutcome};
use crate::engine::machine::{self, MachineRecord};
use crate::engine::publish::{self, PublishError, Published};
use crate::engine::session::{Choices, Session, SessionError, StepStatus};
use crate::engine::task::{self, Event, Level, Summary, Task};
use crate::engine::verify::{self, Report, Verdict, VerifyError};

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
    ConfirmOverwrite(PathBuf),
    ConfirmStop,
    /// The sshd_config diff, waiting for the person's yes before configure applies it.
    ConfirmDiff(String),
    /// Machines an earlier kiln left running (it crashed or was killed): stop them?
    ConfirmCleanLeftovers(Vec<(PathBuf, MachineRecord)>),
    /// The whole log of a step, scrolled up by `scroll` lines from the newest.
    Log {
        step: Step,
        scroll: usize,
    },
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
    /// The session of the image being worked on (NAME.kiln.toml), once there is one.
    pub session: Option<Session>,
    /// A failed step whose kept machine is being stopped so the step can run again.
    retry: Option<Step>,
    pub hits: HitAreas,
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
            keymap: Keymap::built_in(),
            notice: None,
            selected: 0,
            focus: Focus::Steps,
            overlay: Overlay::None,
            session: None,
            retry: None,
            hits: HitAreas::default(),
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

    /// What the step list shows: running here, else what the session says.
    pub fn step_state(&self, step: Step) -> StepState {
        if self.running.as_ref().is_some_and(|r| r.step() == step) {
            // A failed step keeping its machine up for a look has failed all the same.
            return if self.run(step).held.is_some() {
                StepState::Failed
            } else {
                StepState::Running
            };
        }
        let Some(session) = &self.session else {
            return StepState::Pending;
        };
        match session.status(step) {
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
        match self.session.as_ref()?.status(step) {
            StepStatus::Stale(reason) => Some(reason),
            _ => None,
        }
    }

    /// Open the workbench on an image: its session's choices pre-filled, the first step not
    /// done selected.
    pub fn open_image(&mut self, image: &Path) {
        let session = Session::open(image).and_then(|mut session| {
            session.adopt_existing_image()?;
            Ok(session)
        });
        match session {
            Ok(session) => {
                let path = image.display().to_string();
                self.create.fill(&path, &session.choices);
                self.carry_disk(&path);
                self.fill_forms(&session.choices);
                self.selected = Self::index(session.resume_at().unwrap_or(Step::Publish));
                // Nothing left to do: the step list has the keys, to look around or quit.
                self.focus = match session.resume_at() {
                    Some(_) => Focus::Screen,
                    None => Focus::Steps,
                };
                self.notice = Some(match session.resume_at() {
                    None => format!("{path}: every step is done"),
                    Some(step) => format!("{path}: resuming at {}", step.name()),
                });
                self.session = Some(session);
            }
            Err(e) => self.notice = Some(e.to_string()),
        }
    }

    fn fill_forms(&mut self, choices: &Choices) {
        self.install.fill(choices);
        self.configure.fill(choices);
        self.verify.fill(choices);
        self.publish.fill(choices);
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

    /// The machine pane of a step's screen (steps that boot one).
    pub fn machine(&self, step: Step) -> Option<&MachinePane> {
        flow::boots_a_machine(step).then(|| &self.run(step).machine)
    }

    fn machine_mut(&mut self, step: Step) -> Option<&mut MachinePane> {
        flow::boots_a_machine(step).then(|| &mut self.run_mut(step).machine)
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

    fn run_mut(&mut self, step: Step) -> &mut StepRun {
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
            | Overlay::ConfirmDiff(_)
            | Overlay::ConfirmCleanLeftovers(_) => return Context::Confirm,
            Overlay::Help | Overlay::Doctor => return Context::Overlay,
            Overlay::Log { .. } => return Context::Log,
            Overlay::None => {}
        }
        if self.focus == Focus::Steps {
            return Context::StepList;
        }
        let running_here = self.running.as_ref().is_some_and(|r| r.step() == step);
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
        let last_step = Step::ALL.len() - 1;
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
            Action::OpenStep => self.focus = Focus::Screen,
            Action::NextStep => {
                self.selected = (self.selected + 1).min(last_step);
                self.focus = Focus::Screen;
            }
            Action::NextField => self.form_mut(step).next_field(),
            Action::PrevField => self.form_mut(step).prev_field(),
            Action::ClearField => self.form_mut(step).clear_field(),
            Action::ChangeChoice => self.form_mut(step).change_choice(),
            Action::PrevChoice => self.form_mut(step).prev_choice(),
            Action::RunStep => return Some(self.start_command(step)),
            Action::Back => self.focus = Focus::Steps,
            Action::Cancel => self.overlay = Overlay::ConfirmStop,
            Action::ConsoleKeys => self.machine_mut(step)?.type_into_console(),
            Action::ScreenKeys => self.machine_mut(step)?.type_into_screen(),
            Action::SwitchPane => self.machine_mut(step)?.switch_pane(),
            Action::ReleaseKeyboard => self.machine_mut(step)?.keys_to = KeyTarget::Kiln,
            Action::Retry => return Some(Command::Retry(step)),
            Action::StopKept => {
                if let Some(running) = &self.running {
                    running.cancel();
                }
            }
            Action::Yes => return self.answer(true),
            Action::No => return self.answer(false),
            Action::Close => self.overlay = Overlay::None,
            Action::ScrollUp => self.scroll_log(|scroll| scroll + 1),
            Action::ScrollDown => self.scroll_log(|scroll| scroll.saturating_sub(1)),
            Action::PageUp => self.scroll_log(|scroll| scroll + 10),
            Action::PageDown => self.scroll_log(|scroll| scroll.saturating_sub(10)),
            Action::ScrollEnd => self.scroll_log(|_| 0),
        }
        None
    }

    /// Scroll the open log, no further up than its first line.
    fn scroll_log(&mut self, change: impl FnOnce(usize) -> usize) {
        if let Overlay::Log { step, scroll } = self.overlay {
            let most = self.run(step).log.len().saturating_sub(1);
            self.overlay = Overlay::Log {
                step,
                scroll: change(scroll).min(most),
            };
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
        match step {
            Step::Create => Command::StartCreate {
                force: self.create.form.checked("overwrite"),
            },
            other => Command::Start(other),
        }
    }

    fn toggle(&mut self, overlay: Overlay) {
        self.overlay = if self.overlay == overlay {
            Overlay::None
        } else {
            overlay
        };
    }

    /// The answer to the open question: closes it and does what it asked about.
    fn answer(&mut self, yes: bool) -> Option<Command> {
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

    /// The image a step's form names.
    fn image_of(&self, step: Step) -> PathBuf {
        let key = if step == Step::Create { "path" } else { "disk" };
        PathBuf::from(self.form(step).text(key))
    }

    /// The choices every form makes now, merged (the session records them when a step starts).
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

    /// Record in the image's session that `step` starts, switching sessions if the form names
    /// another image. An error (unreadable session, another kiln on it) stops the start.
    fn begin_in_session(&mut self, step: Step) -> Result<(), String> {
        let image = self.image_of(step);
        if self.session.as_ref().is_none_or(|s| s.image() != image) {
            self.session = Some(Session::open(&image).map_err(|e| e.to_string())?);
        }
        let choices = self.form_choices();
        let session = self.session.as_mut().expect("opened above");
        session.choices.update(&choices);
        if step != Step::Create
            && let Err(e) = session.adopt_existing_image()
        {
            self.notice = Some(e.to_string());
        }
        if step == Step::Publish {
            session.publish_allowed()?;
        }
        match session.begin(step) {
            // An image in a read-only place can still be worked on, just not resumed.
            Err(e @ SessionError::Write(..)) => {
                self.notice = Some(format!("{e} — this run is not recorded"));
                Ok(())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    /// Validate the form and start `qemu-img create`; an existing file asks first.
    pub async fn start_create(&mut self, force: bool) {
        if self.is_running() {
            return;
        }
        let image = self.image_of(Step::Create);
        let request = flow::create_request(&image, &self.create.choices(), force);
        self.create.run.reset();
        match image::plan_create(&request).await {
            Err(CreateError::Exists(path)) => {
                self.overlay = Overlay::ConfirmOverwrite(path);
            }
            Err(e) => self.create.run.error = Some(e.to_string()),
            Ok(plan) => {
                if let Err(refusal) = self.begin_in_session(Step::Create) {
                    self.create.run.error = Some(refusal);
                    return;
                }
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

    /// How machines are sized: the doctor's accelerator (TCG until it has answered).
    fn machines(&self) -> MachineSettings {
        MachineSettings {
            accelerator: self
                .doctor
                .as_ref()
                .map_or(Accelerator::Tcg, |report| report.accelerator),
            memory_mib: self.settings.memory_mib,
            cpus: self.settings.cpus,
            record_dir: self.record_dir.clone(),
        }
    }

    /// Start a step with what its form says (create goes through [`App::start_create`]).
    pub fn start(&mut self, step: Step) {
        if self.is_running() || step == Step::Create {
            return;
        }
        self.run_mut(step).reset();
        let image = self.image_of(step);
        let choices = self.form_choices();
        let machines = self.machines();
        let static_only = step == Step::Verify && self.verify.static_only();
        // A static-only check is not a verify the flow can publish on: it is not recorded.
        if !static_only && let Err(refusal) = self.begin_in_session(step) {
            self.run_mut(step).error = Some(refusal);
            return;
        }
        let running = match step {
            Step::Create => return,
            Step::Install => match flow::install_request(&image, &choices, &machines, true) {
                Ok(request) => {
                    let title = format!("installing onto {}", image.display());
                    Running::Install(task::spawn(title, |r| install::install(request, r)))
                }
                Err(e) => return self.refused(step, e),
            },
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
                let request = flow::configure_request(
                    &image,
                    &choices,
                    &self.configure.secrets(),
                    &machines,
                    Some(approve),
                );
                let title = format!("configuring {} as {}", image.display(), request.user);
                Running::Configure(task::spawn_holding(title, |r| {
                    configure::configure(request, r)
                }))
            }
            Step::Verify => {
                let request = flow::verify_request(&image, &choices, &machines, static_only);
                let title = format!("checking {}", image.display());
                Running::Verify(task::spawn_holding(title, |r| verify::verify(request, r)))
            }
            Step::Publish => match flow::publish_request(
                &image,
                &choices,
                &self.publish.secrets(),
                self.config_dir.as_deref(),
            ) {
                Ok(request) => {
                    let title = format!(
                        "publishing {} to {}",
                        image.display(),
                        request.target.describe()
                    );
                    Running::Publish(task::spawn(title, |r| publish::publish(request, r)))
                }
                Err(e) => return self.refused(step, e.to_string()),
            },
        };
        self.running = Some(running);
    }

    /// The step could not even start: say why, and record it as failed.
    fn refused(&mut self, step: Step, error: String) {
        if let Some(session) = self.session.as_mut()
            && let Err(e) = session.end(step, Err(error.clone()))
        {
            self.notice = Some(e.to_string());
        }
        self.run_mut(step).error = Some(error);
    }

    /// Take in one event from the running step.
    pub fn apply(&mut self, event: Event) {
        let Some(step) = self.running.as_ref().map(Running::step) else {
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
            Event::Started { title } => run.log.push((Level::Info, title)),
            Event::Log { level, message } => run.log.push((level, message)),
            Event::Progress(p) => run.progress = Some(p),
            Event::Held { error } => {
                run.log.push((
                    Level::Warn,
                    "the machine is kept for a look: r retry, s stop it, c/v type into it".into(),
                ));
                run.held = Some(error);
            }
            Event::Failed { error: message } => run.error = Some(message),
            // The result panel shows what the summary says.
            Event::Finished { .. } => {}
        }
    }

    /// Stop a failed step's kept machine, then run the step again once it has ended.
    pub fn retry(&mut self, step: Step) {
        if let Some(running) = &self.running
            && running.step() == step
        {
            self.retry = Some(step);
            running.cancel();
        }
    }

    /// The running step has sent its last event: collect its result, record it in the session,
    /// and on success move to the next step with the carried choices.
    pub async fn finish(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let step = running.step();
        if let Some(machine) = self.machine_mut(step) {
            machine.clear();
        }
        let outcome: Result<Vec<String>, String> = match running {
            Running::Create(task) => task
                .result()
                .await
                .map(|info| {
                    self.carry_disk(&info.path.display().to_string());
                    self.create.form.set_checked("overwrite", false);
                    CreateScreen::outcome(&info)
                })
                .map_err(|e| e.to_string()),
            Running::Install(task) => task
                .result()
                .await
                .map(|outcome| {
                    self.carry_disk(&outcome.image.display().to_string());
                    InstallScreen::outcome(&outcome)
                })
                .map_err(|e| e.to_string()),
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
        let recorded = !(step == Step::Verify && self.verify.static_only());
        if recorded
            && let Some(session) = self.session.as_mut()
            && let Err(e) = session.end(
                step,
                match &outcome {
                    Ok(lines) => Ok(lines.first().cloned().unwrap_or_default()),
                    Err(error) => Err(error.clone()),
                },
            )
        {
            self.notice = Some(e.to_string());
        }
        let succeeded = outcome.is_ok();
        let run = self.run_mut(step);
        run.held = None;
        match outcome {
            Ok(lines) => run.outcome = lines,
            Err(message) => run.error = Some(message),
        }
        if let Some(again) = self.retry.take() {
            self.start(again);
        } else if succeeded {
            // The result stays on screen; `n` moves on to the next step, its form pre-filled.
            self.focus = Focus::Steps;
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
