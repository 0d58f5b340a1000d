//! Whole-screen snapshots on a TestBackend, driven by real key events.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::engine::Step;
use crate::engine::session::StepStatus;
use crate::tui::app::{App, Command, Overlay};

fn app() -> App {
    App::for_tests("default")
}

fn press(app: &mut App, code: KeyCode) -> Option<Command> {
    app.handle_key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn type_text(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn render(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| super::draw(frame, app)).unwrap();
    terminal.backend().clone()
}

#[test]
fn create_screen_as_opened() {
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn help_overlay() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.overlay, Overlay::Help);
    insta::assert_snapshot!(render(&app, 80, 24));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn inline_messages_while_typing() {
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "my image.qcow2");
    press(&mut app, KeyCode::Tab);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "10");
    insta::assert_snapshot!(render(&app, 80, 24));
}

#[test]
fn configure_verify_and_publish_forms() {
    let mut app = app();
    for (downs, name) in [
        (2, "configure_form"),
        (3, "verify_form"),
        (4, "publish_form"),
    ] {
        app.focus = crate::tui::app::Focus::Steps;
        app.selected = 0;
        for _ in 0..downs {
            press(&mut app, KeyCode::Down);
        }
        press(&mut app, KeyCode::Enter);
        insta::assert_snapshot!(name, render(&app, 100, 30));
    }
    // Secrets are masked on screen.
    app.selected = 2;
    app.focus = crate::tui::app::Focus::Screen;
    for _ in 0..2 {
        press(&mut app, KeyCode::Tab);
    }
    type_text(&mut app, "hunter2");
    let screen = render(&app, 100, 30).to_string();
    assert!(
        !screen.contains("hunter2") && screen.contains("•••••••"),
        "{screen}"
    );
}

#[test]
fn quit_keys() {
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Command::Quit));
    press(&mut app, KeyCode::Enter);
    // In a form, q is text; Ctrl-C still quits.
    assert_eq!(press(&mut app, KeyCode::Char('q')), None);
    assert_eq!(
        app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Command::Quit)
    );
}

/// Feed the running step's events to the app until `done` says so (or the step ended).
async fn drive_until(app: &mut App, done: impl Fn(&App) -> bool) {
    while !done(app) {
        let Some(running) = app.running.as_mut() else {
            return;
        };
        match running.task.next_event().await {
            Some(event) => app.apply(event),
            None => app.finish().await,
        }
    }
}

/// Runs the real qemu-img: the form creates an image, then a second Enter asks before
/// replacing it (a question from the step, answered in the dialog).
#[tokio::test]
async fn create_then_confirm_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut app = app();
    press(&mut app, KeyCode::Enter);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(
        &mut app,
        &dir.path().join("debian-12.qcow2").display().to_string(),
    );
    press(&mut app, KeyCode::Tab);
    app.handle_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "2G");
    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Command::Start(Step::Create)),
        "Enter should start create"
    );
    app.start(Step::Create);
    assert!(matches!(
        app.step_state(Step::Create),
        StepStatus::Running { .. }
    ));
    drive_until(&mut app, |app| app.running.is_none()).await;
    assert_eq!(
        app.step_state(Step::Create),
        StepStatus::Done,
        "{:?}",
        app.create.run.error
    );
    let info = crate::engine::steps::image::image_info(&dir.path().join("debian-12.qcow2"))
        .await
        .unwrap();
    assert_eq!(info.compat.as_deref(), Some("1.1"));
    assert_eq!(info.virtual_size, 2 << 30);
    // The session file records it; `n` moves on to Install with the disk carried.
    let session = crate::engine::session::Session::open(&info.path).unwrap();
    assert_eq!(
        session.status(Step::Create),
        crate::engine::session::StepStatus::Done
    );
    let created = render(&app, 100, 30);
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.selected_step(), Step::Install);
    // The disk is carried, so the cursor waits where typing is needed: the ISO.
    assert_eq!(app.install.form.focused_field().key, "iso");
    assert_eq!(
        app.install.form.text("disk"),
        info.path.display().to_string()
    );
    app.selected = 0;
    app.focus = crate::tui::app::Focus::Screen;

    let tmp = dir.path().display().to_string();
    insta::with_settings!({filters => vec![(tmp.as_str(), "[TMP]"), (r"\d+ KiB on disk", "[N] KiB on disk"), (r"on disk +\d+ KiB", "on disk  [N] KiB"), (r"[\d.]+ [KMGT]?i?B free in the target directory *", "[N] free in the target directory ")]}, {
        insta::assert_snapshot!("created", created);
    });

    assert_eq!(
        press(&mut app, KeyCode::Enter),
        Some(Command::Start(Step::Create))
    );
    app.start(Step::Create);
    drive_until(&mut app, |app| {
        matches!(app.overlay, Overlay::ConfirmOverwrite(_))
    })
    .await;
    assert!(matches!(app.overlay, Overlay::ConfirmOverwrite(_)));
    insta::with_settings!({filters => vec![(tmp.as_str(), "[TMP]")]}, {
        insta::assert_snapshot!("confirm_overwrite", render(&app, 80, 24));
    });
    assert_eq!(press(&mut app, KeyCode::Char('n')), None);
    assert_eq!(app.overlay, Overlay::None);
    drive_until(&mut app, |app| app.running.is_none()).await;
    // Declined: refused, nothing replaced, and the session still says done.
    let error = app.create.run.error.clone().unwrap_or_default();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(app.step_state(Step::Create), StepStatus::Done);
    let again = crate::engine::steps::image::image_info(&info.path)
        .await
        .unwrap();
    assert_eq!(again.virtual_size, 2 << 30);
}

#[tokio::test]
async fn configure_asks_before_applying_the_diff() {
    use crate::engine::task::{self, Question, Reporter, TaskOptions};
    use crate::engine::workflow::StepError;
    let mut app = app();
    // A step that asks what configure asks, through the same task machinery.
    let task = task::spawn(
        "configure",
        TaskOptions::default(),
        |r: Reporter| async move {
            let diff = "-PermitRootLogin prohibit-password\n+PermitRootLogin yes\n".to_string();
            let yes = r.ask(Question::ApplySshdConfig { diff }).await;
            Err(StepError::Failed(format!("answered {yes}")))
        },
    );
    app.selected = 2;
    app.running = Some(crate::tui::app::RunningStep {
        step: Step::Configure,
        task,
    });
    drive_until(&mut app, |app| {
        matches!(app.overlay, Overlay::ConfirmDiff { .. })
    })
    .await;
    let screen = render(&app, 100, 30).to_string();
    assert!(
        screen.contains("Apply this sshd_config?") && screen.contains("+PermitRootLogin yes"),
        "{screen}"
    );
    // Any other key leaves the question open; `n` answers no.
    press(&mut app, KeyCode::Char('x'));
    assert!(matches!(app.overlay, Overlay::ConfirmDiff { .. }));
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.overlay, Overlay::None);
    drive_until(&mut app, |app| app.running.is_none()).await;
    assert_eq!(app.configure.run.error.as_deref(), Some("answered false"));
}

#[tokio::test]
async fn a_message_of_several_lines_is_as_many_lines_of_the_log() {
    use crate::engine::task::{self, Level, Reporter, TaskOptions};
    use crate::engine::workflow::StepError;
    let mut app = app();
    let task = task::spawn(
        "configure",
        TaskOptions::default(),
        |r: Reporter| async move {
            r.info("changes:\n-UsePAM yes\n+UsePAM no");
            Err(StepError::Failed("done".into()))
        },
    );
    app.running = Some(crate::tui::app::RunningStep {
        step: Step::Configure,
        task,
    });
    drive_until(&mut app, |app| app.running.is_none()).await;
    let logged: Vec<&str> = app
        .configure
        .run
        .log
        .iter()
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(
        logged[1..],
        ["changes:", "-UsePAM yes", "+UsePAM no"],
        "{logged:?}"
    );
    assert!(
        app.configure
            .run
            .log
            .iter()
            .all(|(level, _)| *level == Level::Info)
    );
}

#[test]
fn a_long_sshd_config_diff_scrolls() {
    let mut app = app();
    app.selected = 2;
    let diff: String = (1..=100).map(|i| format!("-#Option{i} no\n")).collect();
    app.overlay = Overlay::ConfirmDiff { diff, scroll: 0 };
    let screen = render(&app, 100, 30).to_string();
    assert!(
        screen.contains("-#Option1 no") && !screen.contains("-#Option30 no"),
        "{screen}"
    );
    assert!(screen.contains("lines 1–20 of 100"), "{screen}");
    press(&mut app, KeyCode::PageDown);
    press(&mut app, KeyCode::Down);
    let screen = render(&app, 100, 30).to_string();
    assert!(
        screen.contains("-#Option12 no") && !screen.contains("-#Option11 no"),
        "{screen}"
    );
    assert!(screen.contains("lines 12–31 of 100"), "{screen}");
    // The end stops at the last full page; the question is still open.
    for _ in 0..20 {
        press(&mut app, KeyCode::PageDown);
    }
    let screen = render(&app, 100, 30).to_string();
    assert!(screen.contains("lines 81–100 of 100"), "{screen}");
    press(&mut app, KeyCode::Up);
    let screen = render(&app, 100, 30).to_string();
    assert!(screen.contains("lines 80–99 of 100"), "{screen}");
    assert!(matches!(app.overlay, Overlay::ConfirmDiff { .. }));
}

#[test]
fn f2_opens_the_step_log_from_anywhere_and_it_scrolls() {
    let mut app = app();
    for i in 0..100 {
        app.configure
            .run
            .log
            .push((crate::engine::task::Level::Info, format!("line {i}")));
    }
    app.selected = 2;
    press(&mut app, KeyCode::F(2));
    assert_eq!(
        app.overlay,
        Overlay::Log {
            step: Step::Configure,
            scroll: 0
        }
    );
    let screen = render(&app, 80, 24).to_string();
    assert!(
        screen.contains("line 99") && !screen.contains("line 50"),
        "{screen}"
    );
    press(&mut app, KeyCode::PageUp);
    press(&mut app, KeyCode::PageUp);
    let screen = render(&app, 80, 24).to_string();
    assert!(
        screen.contains("line 79") && !screen.contains("line 99"),
        "{screen}"
    );
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn clicks_select_steps_and_press_buttons() {
    use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};
    let click = |column, row| MouseEvent {
        kind: MouseEventKind::Down(MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    let mut app = app();
    render(&app, 100, 30); // the hit areas are where the last draw put things
    assert_eq!(app.handle_mouse(click(5, 5)), None);
    assert_eq!(app.selected_step(), Step::Verify);
    let screen = render(&app, 100, 30).to_string();
    let row = screen
        .lines()
        .position(|l| l.contains("[ Check ]"))
        .expect("the Verify button is drawn") as u16;
    assert_eq!(
        app.handle_mouse(click(42, row)),
        Some(Command::Start(Step::Verify))
    );
}

#[test]
fn the_publish_form_shows_the_chosen_targets_fields_only() {
    let mut app = app();
    app.selected = 4;
    press(&mut app, KeyCode::Enter);
    let djinn = render(&app, 100, 30).to_string();
    assert!(
        djinn.contains("Djinn URL") && djinn.contains("Token"),
        "{djinn}"
    );
    assert!(
        !djinn.contains("Runner cf") && !djinn.contains("srht root"),
        "{djinn}"
    );
    for (target, shown, hidden) in [
        (
            "offline",
            ["Runner cf", "Namespace"],
            ["Djinn URL", "srht root"],
        ),
        ("srht", ["srht root", "Release"], ["Djinn URL", "Namespace"]),
        ("rsync", ["Destination", "Name"], ["Djinn URL", "Namespace"]),
    ] {
        app.publish.form.set_choice("target", target);
        let screen = render(&app, 100, 30).to_string();
        for label in shown {
            assert!(
                screen.contains(label),
                "{target}: {label} missing\n{screen}"
            );
        }
        for label in hidden {
            assert!(!screen.contains(label), "{target}: {label} shown\n{screen}");
        }
        // Tab walks the shown fields only.
        let form = &mut app.publish.form;
        form.focused = 0;
        for _ in 0..form.fields.len() {
            form.next_field();
            assert!(
                form.is_shown(form.focused),
                "{target}: Tab reached a hidden field"
            );
        }
    }
}

#[test]
fn a_missing_qemu_is_named_under_the_button_with_its_install_command() {
    use crate::engine::host::{Accelerator, HostCheck, HostReport, Verdict};
    let mut app = app();
    app.doctor = Some(HostReport {
        checks: vec![
            HostCheck {
                name: "qemu-img".into(),
                verdict: Verdict::Ok,
                detail: "7.2.22".into(),
                fix: None,
            },
            HostCheck {
                name: "qemu-system-x86_64".into(),
                verdict: Verdict::Fail,
                detail: "not found on PATH".into(),
                fix: Some("apt-get install qemu-system-x86".into()),
            },
        ],
        accelerator: Accelerator::Tcg,
    });
    app.focus = crate::tui::app::Focus::Screen;
    app.selected = 1;
    let install = render(&app, 120, 30).to_string();
    assert!(
        install.contains("qemu-system-x86_64 not found on PATH; install it: apt-get install")
            && install.contains("qemu-system-x86"),
        "{install}"
    );
    // Create needs only qemu-img, which is there.
    app.selected = 0;
    let create = render(&app, 120, 30).to_string();
    assert!(!create.contains("not found on PATH"), "{create}");
}
