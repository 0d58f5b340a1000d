//! Headless rendering of a step's events: lines on stderr, so stdout stays for results.

use std::fmt::Display;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::engine::check::printable;
use crate::engine::guest::machine::MachineView;
use crate::engine::plan::{Next, PlanRun};
use crate::engine::task::{Event, Level, Task, TaskPanicked};

const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Why kiln was asked to stop, once it was. Ctrl-C, SIGTERM (a cancelled CI job) and SIGHUP
/// (a closed terminal) are handled alike by every headless command; the listener starts with
/// the first step and stays, so a signal between two steps of `kiln run` is not lost.
fn stop_requests() -> watch::Receiver<Option<&'static str>> {
    static STOP: OnceLock<watch::Receiver<Option<&'static str>>> = OnceLock::new();
    STOP.get_or_init(|| {
        let (tell, requests) = watch::channel(None);
        let listeners = [
            (SignalKind::interrupt(), "interrupted (Ctrl-C)"),
            (SignalKind::terminate(), "terminated (SIGTERM)"),
            (SignalKind::hangup(), "hung up (SIGHUP)"),
        ];
        for (kind, why) in listeners {
            let Ok(mut arrivals) = signal(kind) else {
                tracing::warn!("cannot listen for {why}");
                continue;
            };
            let tell = tell.clone();
            tokio::spawn(async move {
                while arrivals.recv().await.is_some() {
                    tell.send_if_modified(|said| said.replace(why).is_none());
                }
            });
        }
        requests
    })
    .clone()
}

/// Whether a stop was asked for (`kiln run` does not start another step after one).
pub fn stop_requested() -> Option<&'static str> {
    *stop_requests().borrow()
}

/// The plan's next stage, unless a stop was asked for (Ctrl-C, SIGTERM) since the last one
/// ended: then nothing more starts, and the stage that would have is named.
pub fn next_stage(run: &mut PlanRun, command: &str) -> Next {
    if let Some(why) = stop_requested() {
        if let Some(name) = run.stop() {
            eprintln!("kiln {command}: {why}: not starting {name}");
        }
        return Next::Finished;
    }
    run.next_stage()
}

/// Resolves with the reason once a stop is asked for.
async fn stop_request() -> &'static str {
    let mut requests = stop_requests();
    loop {
        if let Some(why) = *requests.borrow_and_update() {
            return why;
        }
        if requests.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Print every event of `task` to stderr as `kiln STEP: …`, then return its result.
/// Ctrl-C, SIGTERM or SIGHUP cancels the step (it cleans up and reports).
/// With `serial_to_stdout`, a machine's serial console is streamed to stdout as it arrives.
pub async fn follow<T, E>(step: &str, task: Task<T, E>, serial_to_stdout: bool) -> Result<T, E>
where
    E: Display + From<TaskPanicked>,
{
    follow_logged(step, task, serial_to_stdout, &mut std::io::sink()).await
}

/// A line on stderr, also written to `log` (a build log).
pub fn say(log: &mut dyn std::io::Write, line: String) {
    eprintln!("{line}");
    let _ = writeln!(log, "{line}");
}

/// [`follow`], with every line it prints on stderr also written to `log` (a build log).
pub async fn follow_logged<T, E>(
    step: &str,
    mut task: Task<T, E>,
    serial_to_stdout: bool,
    log: &mut dyn std::io::Write,
) -> Result<T, E>
where
    E: Display + From<TaskPanicked>,
{
    let mut say = |line: String| say(log, line);
    let mut last_progress: Option<Instant> = None;
    let mut interrupt = std::pin::pin!(stop_request());
    let mut interrupted = false;
    let mut streams = Vec::new();
    loop {
        let event = tokio::select! {
            event = task.next_event() => event,
            why = &mut interrupt, if !interrupted => {
                interrupted = true;
                say(format!("kiln {step}: {why}, stopping…"));
                task.cancel();
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Event::Started { title } => say(format!("kiln {step}: {}", printable(&title))),
            // Messages can quote the guest (serial lines, script output): never raw escapes.
            Event::Log {
                level: Level::Info,
                message,
            } => say(format!("kiln {step}: {}", printable(&message))),
            Event::Log {
                level: Level::Warn,
                message,
            } => say(format!("kiln {step}: warning: {}", printable(&message))),
            Event::Progress(progress) => {
                let due = last_progress.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
                let complete = progress.total == Some(progress.done);
                if due || complete {
                    last_progress = Some(Instant::now());
                    say(format!("kiln {step}: {}", progress.describe()));
                }
            }
            Event::Machine(view) => {
                if serial_to_stdout {
                    streams.push(tokio::spawn(stream_serial(view)));
                }
            }
            Event::Check(check) => say(format!("kiln {step}: {}", check.line())),
            // Headless commands answer from their flags before the step starts; a question
            // that still arrives has no one to answer it, and no means no.
            Event::Question(question) => {
                say(format!(
                    "kiln {step}: no one to ask ({question:?}); answering no"
                ));
                task.answer(false);
            }
            // Headless steps never hold their machine (nobody could look at it).
            Event::Held { error } | Event::Failed { error } => {
                say(format!("kiln {step}: failed: {}", printable(&error)))
            }
            Event::Finished { summary } => {
                say(format!("kiln {step}: done: {}", printable(&summary)))
            }
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
