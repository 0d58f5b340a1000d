//! The workbench frontend: owns the terminal and runs the event loop that merges key presses,
//! engine events and the results of background jobs into the app state.
//!
//! The loop never waits on I/O itself: screendumps, keys typed into the guest's VGA,
//! cleanup of leftover machines and the host examination run as background jobs that post
//! their results into the loop's channel. A slow QEMU cannot stall a key press.

pub mod app;
pub mod graphics;
pub mod guest_keys;
pub mod keymap;
mod quiet_backend;
mod recipe;
#[cfg(test)]
mod recorder;
mod runner;
pub mod screens;
pub mod steps;
pub mod terminal;
pub mod theme;
mod typed_ahead;
pub mod widgets;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::{Stream, StreamExt};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::engine::Step;
use crate::engine::guest::machine::{self, MachineView};
use crate::engine::guest::screen::Picture;
use crate::engine::host::config::{Dirs, Settings};
use crate::engine::host::{self, HostReport};
use app::{App, Command, GuestInput};
use theme::Theme;

/// How often a running step's console is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// How often the VGA picture is refreshed while it is visible: a change reaches the terminal
/// within this and the screendump's own time (the goal is ≤ 250 ms on average; benches/graphics.py).
const SCREENSHOT_EVERY: Duration = Duration::from_millis(250);
/// After a key goes to the VGA screen, the next screendump comes this soon (the guest's echo
/// takes a few milliseconds), so typing is seen at once rather than at the next tick.
const KEY_ECHO: Duration = Duration::from_millis(50);

/// How the workbench ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The person quit (or a signal asked kiln to).
    Quit,
    /// There was no terminal to draw on.
    NoTerminal,
    /// The terminal failed.
    TerminalError,
}

/// What a background job reports back to the loop.
pub enum Posted {
    Doctor(HostReport),
    /// A fresh screendump of `step`'s machine.
    Picture {
        step: Step,
        picture: Picture,
    },
    /// The screendump in flight ended (with or without a picture).
    ScreendumpDone,
    /// A line for the status bar.
    Notice(String),
}

/// Open the workbench; the terminal is restored on every way out (quit, error, panic).
/// What the workbench opens on: nothing, an image, or a recipe's image.
pub enum Opening {
    Nothing,
    Image(PathBuf),
    Recipe(Box<crate::engine::recipe::Recipe>),
}

pub async fn run(settings: Settings, dirs: Option<Dirs>, opening: Opening) -> Ending {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "kiln: the workbench needs a terminal; in scripts use `kiln run` or a step command"
        );
        return Ending::NoTerminal;
    }
    let (theme, theme_problem) = Theme::load(
        &Theme::resolve_auto(&settings.theme),
        dirs.as_ref().map(|d| d.theme_dir()).as_deref(),
    );
    let mut app = App::new(settings, theme);
    app.record_dir = dirs.as_ref().map(Dirs::machine_records);
    app.config_dir = dirs.as_ref().map(|d| d.config_dir.clone());
    match &opening {
        Opening::Nothing => {}
        Opening::Image(image) => app.open_image(image),
        Opening::Recipe(recipe) => app.open_recipe(recipe),
    }
    app.offer_leftover_cleanup();
    if let Some(problem) = theme_problem {
        tracing::warn!("{problem}");
        app.notice = Some(format!("{problem} — using the built-in theme"));
    }
    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("kiln: cannot watch for SIGTERM/SIGHUP");
        return Ending::TerminalError;
    };
    let signalled = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    };
    // Real pixels for guest screens, when the terminal shows them.
    let found = graphics::find(app.settings.graphics).await;
    tracing::info!("guest screens: {}", found.summary());
    app.picker = found.picker();
    app.graphics = found.summary();
    if let Some(hint) = found.hint.clone() {
        app.notice.get_or_insert(hint);
    }
    let mut terminal = match terminal::TerminalGuard::enter() {
        Ok(terminal) => terminal,
        Err(e) => {
            eprintln!("kiln: cannot set up the terminal: {e}");
            return Ending::TerminalError;
        }
    };
    // Quit, a terminal error and SIGTERM/SIGHUP all end the loop and come through here.
    // Keys typed while the terminal was asked come first.
    let typed = futures::stream::iter(typed_ahead::key_events(&found.typed).into_iter().map(Ok));
    let inputs = typed.chain(EventStream::new());
    let result = event_loop(&mut terminal, &mut app, inputs, signalled).await;
    app.shut_down().await;
    drop(terminal);
    match result {
        Ok(()) => Ending::Quit,
        Err(e) => {
            eprintln!("kiln: terminal error: {e}");
            Ending::TerminalError
        }
    }
}

/// The workbench loop, over any ratatui backend (the real terminal, or `TestBackend` in
/// tests): draw, then wait for whichever comes first — a key or click, an engine event, a
/// background job's result, a tick, or `stop` (a signal).
pub async fn event_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut inputs: impl Stream<Item = std::io::Result<TermEvent>> + Unpin,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let (posts, mut posted) = mpsc::unbounded_channel();
    let settings = app.settings.clone();
    let doctor = posts.clone();
    tokio::spawn(async move {
        let _ = doctor.send(Posted::Doctor(host::examine(&settings).await));
    });
    // The console and screen change without key presses: redraw on a tick while a step runs.
    let mut redraw = tokio::time::interval(REDRAW_EVERY);
    let mut screenshot = tokio::time::interval(SCREENSHOT_EVERY);
    // One screendump at a time: a slow one is not piled on.
    let mut screendump_in_flight = false;
    let mut stop = std::pin::pin!(stop);
    let terminal_error = |e: B::Error| std::io::Error::other(e.to_string());

    while !app.quitting {
        app.width = terminal.size().map_err(terminal_error)?.width;
        terminal
            .draw(|frame| screens::draw(frame, app))
            .map_err(terminal_error)?;
        let running = app.running.is_some();
        let wants_screenshot = app.wants_screenshot() && !screendump_in_flight;
        let engine_event = async {
            match app.running.as_mut() {
                Some(running) => running.task.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = inputs.next() => {
                let command = match event {
                    Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                        app.handle_key(key)
                    }
                    Some(Ok(TermEvent::Mouse(mouse))) => app.handle_mouse(mouse),
                    Some(Ok(_)) => None, // resize and others: the next draw adapts
                    Some(Err(e)) => return Err(e),
                    None => Some(Command::Quit),
                };
                if matches!(command, Some(Command::Guest(GuestInput::Vga(_)))) {
                    screenshot.reset_after(KEY_ECHO);
                    if let Some(machine) = app.machine_mut(app.selected_step()) {
                        machine.typed(std::time::Instant::now());
                    }
                }
                perform(app, command, &posts);
            }
            event = engine_event => match event {
                Some(event) => app.apply(event),
                None => app.finish().await,
            },
            Some(post) = posted.recv() => match post {
                Posted::Doctor(report) => app.doctor = Some(report),
                Posted::Picture { step, picture } => {
                    if let Some(machine) = app.machine_mut(step) {
                        machine.show(picture, std::time::Instant::now());
                    }
                }
                Posted::ScreendumpDone => screendump_in_flight = false,
                Posted::Notice(notice) => app.notice = Some(notice),
            },
            _ = redraw.tick(), if running => {}
            _ = screenshot.tick(), if wants_screenshot => {
                let step = app.selected_step();
                if let Some(view) = app.machine(step).and_then(|m| m.view.clone()) {
                    screendump_in_flight = true;
                    tokio::spawn(screendump(step, view, posts.clone()));
                }
            }
            () = &mut stop => app.quitting = true,
        }
    }
    Ok(())
}

/// Do what a key or click asked for; anything that waits goes to a background job.
fn perform(app: &mut App, command: Option<Command>, posts: &mpsc::UnboundedSender<Posted>) {
    match command {
        Some(Command::Quit) => app.quitting = true,
        Some(Command::Start(step)) => app.start(step),
        Some(Command::Retry(step)) => app.retry(step),
        Some(Command::Build) => app.build_recipe(),
        Some(Command::Guest(input)) => {
            let Some(view) = app
                .machine(app.selected_step())
                .and_then(|m| m.view.clone())
            else {
                return;
            };
            match input {
                GuestInput::Serial(bytes) => view.send_serial(bytes),
                GuestInput::Vga(keys) => {
                    tokio::spawn(async move {
                        if let Err(e) = view.send_key(&keys).await {
                            tracing::warn!("key not sent to the guest: {e}");
                        }
                    });
                }
            }
        }
        Some(Command::CleanLeftovers(found)) => {
            let posts = posts.clone();
            tokio::spawn(async move {
                for (record_file, record) in &found {
                    machine::clean_leftover(record_file, record).await;
                }
                let _ = posts.send(Posted::Notice(format!(
                    "stopped {} machine(s) left by an earlier kiln",
                    found.len()
                )));
            });
        }
        None => {}
    }
}

#[cfg(test)]
mod loop_tests;

/// Take a screendump of `view` and post it.
async fn screendump(step: Step, view: MachineView, posts: mpsc::UnboundedSender<Posted>) {
    match view.screenshot().await {
        Ok(picture) => {
            let _ = posts.send(Posted::Picture { step, picture });
        }
        Err(e) => tracing::debug!("screenshot: {e}"),
    }
    let _ = posts.send(Posted::ScreendumpDone);
}
