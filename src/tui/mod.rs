//! The workbench frontend: owns the terminal and runs the event loop that merges key presses,
//! engine events and the host report into the app state.

pub mod app;
pub mod screens;
pub mod theme;
pub mod widgets;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Exit;
use crate::engine::config::{Dirs, Settings};
use crate::engine::host;
use app::{App, Command};
use theme::Theme;

/// Open the workbench; the terminal is restored on every way out (quit, error, panic).
pub async fn run(settings: Settings, dirs: Option<Dirs>) -> Exit {
    let (theme, theme_problem) = Theme::load(
        &settings.theme,
        dirs.as_ref().map(|d| d.theme_dir()).as_deref(),
    );
    let mut app = App::new(settings, theme);
    if let Some(problem) = theme_problem {
        tracing::warn!("{problem}");
        app.notice = Some(format!("{problem} — using the built-in theme"));
    }
    // ratatui::init enters the alternate screen and raw mode and installs a panic hook that
    // restores the terminal before the panic message is printed.
    let mut terminal = ratatui::init();
    let result = event_loop(&mut terminal, &mut app).await;
    app.shut_down().await;
    ratatui::restore();
    match result {
        Ok(()) => Exit::Ok,
        Err(e) => {
            eprintln!("kiln: terminal error: {e}");
            Exit::Environment
        }
    }
}

async fn event_loop(terminal: &mut ratatui::DefaultTerminal, app: &mut App) -> std::io::Result<()> {
    let mut keys = EventStream::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let settings = app.settings.clone();
    let mut doctor = std::pin::pin!(async move { host::examine(&settings).await });
    let mut doctor_done = false;

    while !app.quitting {
        terminal.draw(|frame| screens::draw(frame, app))?;
        let engine_event = async {
            match app.create_task.as_mut() {
                Some(task) => task.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = keys.next() => match event {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                    match app.handle_key(key) {
                        Some(Command::Quit) => app.quitting = true,
                        Some(Command::StartCreate { force }) => app.start_create(force).await,
                        None => {}
                    }
                }
                Some(Ok(_)) => {} // resize and others: the next draw adapts
                Some(Err(e)) => return Err(e),
                None => app.quitting = true,
            },
            event = engine_event => match event {
                Some(event) => app.apply(event),
                None => app.finish_create().await,
            },
            report = &mut doctor, if !doctor_done => {
                doctor_done = true;
                app.doctor = Some(report);
            }
            _ = terminate.recv() => app.quitting = true,
            _ = hangup.recv() => app.quitting = true,
        }
    }
    Ok(())
}
