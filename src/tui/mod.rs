//! The workbench frontend: owns the terminal and runs the event loop that merges key presses,
//! engine events and the host report into the app state.

pub mod app;
pub mod guest_keys;
pub mod keymap;
pub mod screens;
pub mod steps;
pub mod terminal;
pub mod theme;
pub mod widgets;

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Exit;
use crate::engine::config::{Dirs, Settings};
use crate::engine::host;
use app::{App, Command};

/// How often a running step's console is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// How often the VGA picture is refreshed while it is visible (≥ 2 per second).
const SCREENSHOT_EVERY: Duration = Duration::from_millis(400);
use theme::Theme;

/// Open the workbench; the terminal is restored on every way out (quit, error, panic).
pub async fn run(
    settings: Settings,
    dirs: Option<Dirs>,
    image: Option<std::path::PathBuf>,
) -> Exit {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "kiln: the workbench needs a terminal; in scripts use `kiln run` or a step command"
        );
        return Exit::Environment;
    }
    let (theme, theme_problem) = Theme::load(
        &settings.theme,
        dirs.as_ref().map(|d| d.theme_dir()).as_deref(),
    );
    let (mut app, mut questions) = App::new(settings, theme);
    app.record_dir = dirs.as_ref().map(Dirs::machine_records);
    app.config_dir = dirs.as_ref().map(|d| d.config_dir.clone());
    if let Some(image) = &image {
        app.open_image(image);
    }
    app.offer_leftover_cleanup();
    if let Some(problem) = theme_problem {
        tracing::warn!("{problem}");
        app.notice = Some(format!("{problem} — using the built-in theme"));
    }
    let mut terminal = match terminal::TerminalGuard::enter() {
        Ok(terminal) => terminal,
        Err(e) => {
            eprintln!("kiln: cannot set up the terminal: {e}");
            return Exit::Environment;
        }
    };
    // Quit, a terminal error and SIGTERM/SIGHUP all end the loop and come through here.
    let result = event_loop(&mut terminal, &mut app, &mut questions).await;
    app.shut_down().await;
    drop(terminal);
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("kiln: terminal error: {e}");
            Exit::Environment
        }
    }
}

/// Do what a key or click asked for.
async fn perform(app: &mut App, command: Option<Command>) {
    match command {
        Some(Command::Quit) => app.quitting = true,
        Some(Command::StartCreate { force }) => app.start_create(force).await,
        Some(Command::Start(step)) => app.start(step),
        Some(Command::Retry(step)) => app.retry(step),
        Some(Command::Guest(input)) => app.send_to_guest(input).await,
        Some(Command::CleanLeftovers(found)) => app.clean_leftovers(found).await,
        None => {}
    }
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    questions: &mut tokio::sync::mpsc::UnboundedReceiver<app::ApprovalRequest>,
) -> std::io::Result<()> {
    let mut keys = EventStream::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let settings = app.settings.clone();
    let mut doctor = std::pin::pin!(async move { host::examine(&settings).await });
    let mut doctor_done = false;
    // The console and screen change without key presses: redraw on a tick while a step runs.
    let mut redraw = tokio::time::interval(REDRAW_EVERY);
    let mut screenshot = tokio::time::interval(SCREENSHOT_EVERY);

    while !app.quitting {
        app.width = terminal.size()?.width;
        terminal.draw(|frame| screens::draw(frame, app))?;
        let running = app.running.is_some();
        let wants_screenshot = app.wants_screenshot();
        let engine_event = async {
            match app.running.as_mut() {
                Some(running) => running.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = keys.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    let command = app.handle_key(key);
                    perform(app, command).await;
                }
                Some(Ok(TermEvent::Mouse(mouse))) => {
                    let command = app.handle_mouse(mouse);
                    perform(app, command).await;
                }
                Some(Ok(_)) => {} // resize and others: the next draw adapts
                Some(Err(e)) => return Err(e),
                None => app.quitting = true,
            },
            event = engine_event => match event {
                Some(event) => app.apply(event),
                None => app.finish().await,
            },
            report = &mut doctor, if !doctor_done => {
                doctor_done = true;
                app.doctor = Some(report);
            }
            Some((diff, reply)) = questions.recv() => {
                app.overlay = app::Overlay::ConfirmDiff(diff);
                app.pending_approval = Some(reply);
            }
            _ = redraw.tick(), if running => {}
            _ = screenshot.tick(), if wants_screenshot => app.refresh_screen().await,
            _ = terminate.recv() => app.quitting = true,
            _ = hangup.recv() => app.quitting = true,
        }
    }
    Ok(())
}
