//! Headless rendering of a step's events: lines on stderr, so stdout stays for results.

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::engine::machine::MachineView;
use crate::engine::task::{Event, Level, Task, TaskPanicked};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Print every event of `task` to stderr as `kiln STEP: …`, then return its result.
/// Ctrl-C cancels the step (it cleans up and reports), a second Ctrl-C is not needed.
/// With `serial_to_stdout`, a machine's serial console is streamed to stdout as it arrives.
pub async fn follow<T, E>(step: &str, mut task: Task<T, E>, serial_to_stdout: bool) -> Result<T, E>
where
    E: Display + From<TaskPanicked>,
{
    let mut last_progress: Option<Instant> = None;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut interrupted = false;
    let mut streams = Vec::new();
    loop {
        let event = tokio::select! {
            event = task.next_event() => event,
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                eprintln!("kiln {step}: interrupted, stopping…");
                task.cancel();
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Started { title } => eprintln!("kiln {step}: {title}"),
            Event::Log {
                level: Level::Info,
                message,
            } => eprintln!("kiln {step}: {message}"),
            Event::Log {
                level: Level::Warn,
                message,
            } => eprintln!("kiln {step}: warning: {message}"),
            Event::Progress(progress) => {
                let due = last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                let complete = progress.total == Some(progress.done);
                if due || complete {
                    last_progress = Some(Instant::now());
                    eprintln!("kiln {step}: {}", progress.describe());
                }
            }
            Event::Machine(view) => {
                if serial_to_stdout {
                    streams.push(tokio::spawn(stream_serial(view)));
                }
            }
            Event::Check(check) => eprintln!("kiln {step}: {}", check.line()),
            // Headless commands answer from their flags before the step starts; a question
            // that still arrives has no one to answer it, and no means no.
            Event::Question(question) => {
                eprintln!("kiln {step}: no one to ask ({question:?}); answering no");
                task.answer(false);
            }
            // Headless steps never hold their machine (nobody could look at it).
            Event::Held { error } => eprintln!("kiln {step}: failed: {error}"),
            Event::Finished { summary } => eprintln!("kiln {step}: done: {summary}"),
            Event::Failed { error } => eprintln!("kiln {step}: failed: {error}"),
        }
    }
    let result = task.result().await;
    // The machine is gone; let the streams print what was left in flight.
    for stream in streams {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream).await;
    }
    result
}

/// Copy a machine's serial output (from its first byte) to stdout until the machine ends.
async fn stream_serial(view: MachineView) {
    use std::io::Write;
    let (history, mut live) = view.subscribe_serial();
    drop(view); // holding it would keep the channel open after the machine ended
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(&history);
    let _ = stdout.flush();
    loop {
        match live.recv().await {
            Ok(bytes) => {
                let _ = stdout.write_all(&bytes);
                let _ = stdout.flush();
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}
