//! Every keymap entry pressed through `App::handle_key` in an app where keys go to its context:
//! the key handler does what the help and the footer say, or this fails.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{Action, Context, Keymap};
use crate::engine::Step;
use crate::engine::host::config::{CliOverrides, FileConfig, HostResources, resolve};
use crate::engine::task::{self, Event, Question, TaskOptions};
use crate::engine::workflow::StepError;
use crate::tui::app::RunningStep;
use crate::tui::app::{App, Command, Focus, Overlay};
use crate::tui::steps::machine_pane::KeyTarget;
use crate::tui::theme::Theme;
use crate::tui::widgets::form::Field;
use crate::tui::widgets::form::FieldKind;

/// Configure: its form has every kind of field, and it boots a machine.
const CONFIGURE: usize = 2;
const PUBLISH: usize = 4;
/// Where the open log is scrolled to, so scrolling either way shows.
const LOG_SCROLL: usize = 10;
/// Where the open sshd_config diff (40 lines) is scrolled to.
const DIFF_SCROLL: usize = 15;

fn app() -> App {
    let host = HostResources {
        cpus: 2,
        memory_mib: 8192,
        software_emulation: false,
    };
    let settings = resolve(CliOverrides::default(), FileConfig::default(), host);
    let mut app = App::new(settings, Theme::built_in("default"));
    app.selected = CONFIGURE;
    app
}

/// A step that runs until it is stopped, as a real one with its machine kept would.
fn running_until_stopped(step: Step) -> RunningStep {
    let options = TaskOptions {
        hold_failures: true,
        ..TaskOptions::default()
    };
    let task = task::spawn("running", options, |reporter| async move {
        reporter.cancelled().await;
        Err(StepError::Failed("stopped".into()))
    });
    RunningStep { step, task }
}

/// Create with an existing file: it asks before replacing it and ends saying what it heard.
async fn create_asking() -> RunningStep {
    let mut task = task::spawn("creating", TaskOptions::default(), |reporter| async move {
        let path = "debian-12.qcow2".into();
        let yes = reporter.ask(Question::ReplaceFile { path }).await;
        Err(StepError::Failed(format!("answered {yes}")))
    });
    while let Some(event) = task.next_event().await {
        if matches!(event, Event::Question(_)) {
            break;
        }
    }
    RunningStep {
        step: Step::Create,
        task,
    }
}

/// The answer the running step heard, once it has ended.
async fn answered(app: &mut App) -> Option<String> {
    let running = app.running.as_mut()?;
    while let Some(event) = running.task.next_event().await {
        if let Event::Failed { error } = event {
            return Some(error);
        }
    }
    None
}

fn focus_field(app: &mut App, wanted: fn(&Field) -> bool) {
    app.focus = Focus::Screen;
    let form = &mut app.configure.form;
    form.focused = form
        .fields
        .iter()
        .position(wanted)
        .expect("configure has every kind of field");
}

/// An app whose keys go to `context` (keys that work anywhere: the step list).
async fn app_in(context: Context) -> App {
    let mut app = app();
    match context {
        Context::Anywhere | Context::StepList => {}
        Context::Form => focus_field(&mut app, |f| matches!(f.kind, FieldKind::Button)),
        Context::TextField => {
            focus_field(&mut app, |f| {
                matches!(f.kind, FieldKind::Text(_)) && !f.is_path && f.key == "user"
            });
            app.configure.form.set_text("user", "builder");
        }
        Context::ChoiceField => focus_field(&mut app, |f| matches!(f.kind, FieldKind::Choice(..))),
        Context::Checkbox => focus_field(&mut app, |f| matches!(f.kind, FieldKind::Check(_))),
        Context::Waiting => {
            app.focus = Focus::Screen;
            app.running = Some(running_until_stopped(Step::Publish));
        }
        Context::Running => {
            app.selected = PUBLISH;
            app.focus = Focus::Screen;
            app.running = Some(running_until_stopped(Step::Publish));
        }
        Context::Machine => {
            app.focus = Focus::Screen;
            app.running = Some(running_until_stopped(Step::Configure));
        }
        Context::Held => {
            app.focus = Focus::Screen;
            app.running = Some(running_until_stopped(Step::Configure));
            app.configure.run.held = Some("sshd -t failed".into());
        }
        Context::Guest => app.configure.run.machine.keys_to = KeyTarget::Serial,
        Context::Confirm => {
            app.running = Some(create_asking().await);
            app.overlay = Overlay::ConfirmOverwrite("debian-12.qcow2".into());
        }
        Context::Diff => {
            app.running = Some(create_asking().await);
            let diff: String = (0..40).map(|i| format!("+line {i}\n")).collect();
            app.overlay = Overlay::ConfirmDiff {
                diff,
                scroll: DIFF_SCROLL,
            };
        }
        Context::Overlay => app.overlay = Overlay::Doctor,
        Context::Log => {
            for i in 0..30 {
                app.configure
                    .run
                    .log
                    .push((crate::engine::task::Level::Info, format!("line {i}")));
            }
            app.overlay = Overlay::Log {
                step: Step::Configure,
                scroll: LOG_SCROLL,
            };
        }
    }
    app
}

fn diff_scroll(app: &App) -> Option<usize> {
    match app.overlay {
        Overlay::ConfirmDiff { scroll, .. } => Some(scroll),
        _ => None,
    }
}

fn log_scroll(app: &App) -> Option<usize> {
    match app.overlay {
        Overlay::Log { scroll, .. } => Some(scroll),
        _ => None,
    }
}

/// Whether the running step stops soon (it was asked to).
async fn stops(app: &mut App) -> bool {
    let running = app.running.as_mut().expect("a step runs");
    let ended = async {
        while let Some(event) = running.task.next_event().await {
            if matches!(event, Event::Failed { .. }) {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(5), ended)
        .await
        .unwrap_or(false)
}

/// Whether `app` shows what `action` does, after the key returned `command`.
async fn did(action: Action, app: &mut App, command: Option<Command>) -> bool {
    let form = &app.configure.form;
    let last_field = form.fields.len() - 1;
    match action {
        Action::Quit => command == Some(Command::Quit),
        Action::Help => app.overlay == Overlay::Help,
        Action::ShowLog => matches!(app.overlay, Overlay::Log { .. }),
        Action::Doctor => app.overlay == Overlay::Doctor,
        Action::StepUp => app.selected == CONFIGURE - 1,
        Action::StepDown => app.selected == CONFIGURE + 1 && app.focus == Focus::Steps,
        Action::OpenStep => app.selected == CONFIGURE && app.focus == Focus::Screen,
        Action::NextStep => app.selected == CONFIGURE + 1 && app.focus == Focus::Screen,
        // From the button, the last field.
        Action::NextField => form.focused == 0,
        Action::PrevField => form.focused == last_field - 1,
        Action::ClearField => form.text("user").is_empty(),
        Action::CompleteOrNextField => form.focused == 0,
        Action::ChangeChoice => form.choice("variant") == "pam" || form.checked("zero"),
        Action::PrevChoice => form.choice("variant") == "pam",
        Action::RunStep => command == Some(Command::Start(Step::Configure)),
        Action::Back => app.focus == Focus::Steps,
        Action::Cancel => app.overlay == Overlay::ConfirmStop,
        // They need a machine's view, which only a real QEMU gives (tests/flow_tui.rs
        // presses them); without one they must at least leave the keyboard with kiln.
        Action::ConsoleKeys | Action::ScreenKeys | Action::SwitchPane | Action::FullScreen => {
            command.is_none() && app.configure.run.machine.keys_to == KeyTarget::Kiln
        }
        Action::ReleaseKeyboard => app.configure.run.machine.keys_to == KeyTarget::Kiln,
        // No picture without a real guest: it says so rather than writing an empty file.
        Action::SavePicture => app
            .notice
            .as_deref()
            .is_some_and(|n| n.contains("no guest screen")),
        Action::Retry => command == Some(Command::Retry(Step::Configure)),
        Action::Build => command == Some(Command::Build),
        Action::StopKept => stops(app).await,
        Action::Yes => {
            app.overlay == Overlay::None
                && command.is_none()
                && answered(app).await.as_deref() == Some("answered true")
        }
        Action::No => {
            app.overlay == Overlay::None
                && command.is_none()
                && answered(app).await.as_deref() == Some("answered false")
        }
        Action::Close => app.overlay == Overlay::None,
        // The log counts up from its newest line; the diff down from its first.
        Action::ScrollUp => {
            log_scroll(app) == Some(LOG_SCROLL + 1) || diff_scroll(app) == Some(DIFF_SCROLL - 1)
        }
        Action::ScrollDown => {
            log_scroll(app) == Some(LOG_SCROLL - 1) || diff_scroll(app) == Some(DIFF_SCROLL + 1)
        }
        Action::PageUp => {
            log_scroll(app) == Some(LOG_SCROLL + 10) || diff_scroll(app) == Some(DIFF_SCROLL - 10)
        }
        Action::PageDown => {
            log_scroll(app) == Some(0) || diff_scroll(app) == Some(DIFF_SCROLL + 10)
        }
        Action::ScrollEnd => log_scroll(app) == Some(0),
    }
}

#[tokio::test]
async fn every_key_does_what_the_keymap_says() {
    for context in Context::ALL {
        let expected = match context {
            Context::Anywhere => Context::StepList,
            other => other,
        };
        assert_eq!(app_in(context).await.key_context(), expected);
    }
    for entry in Keymap::built_in().entries() {
        for key in &entry.keys {
            let mut app = app_in(entry.context).await;
            let command = app.handle_key(key.event());
            assert!(
                did(entry.action, &mut app, command.clone()).await,
                "{} in {:?} should {:?}; got {command:?}",
                key.label(),
                entry.context,
                entry.action
            );
        }
    }
}

#[tokio::test]
async fn other_keys_are_typed_not_dispatched() {
    let mut app = app_in(Context::TextField).await;
    app.handle_key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE));
    assert_eq!(app.configure.form.text("user"), "builderq");
    // The machine went away while the guest had the keyboard: any key gives it back.
    let mut app = app_in(Context::Guest).await;
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE)),
        None
    );
    assert_eq!(app.configure.run.machine.keys_to, KeyTarget::Kiln);
}

#[tokio::test]
async fn tab_in_a_path_field_completes_before_it_moves_on() {
    let mut app = app();
    // Disk, holding the start of a file's name in the working directory (the crate's root).
    focus_field(&mut app, |f| f.key == "disk");
    app.configure.form.set_text("disk", "Cargo.to");
    let tab = KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE);
    app.handle_key(tab);
    assert_eq!(app.configure.form.text("disk"), "Cargo.toml");
    assert_eq!(app.configure.form.focused_field().key, "disk");
    app.handle_key(tab);
    assert_eq!(app.configure.form.focused_field().key, "user");
}
