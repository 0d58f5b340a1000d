//! A step running in the background: the events it reports and the handle a frontend holds.
//!
//! Every step (create, install, …) runs as a tokio task that sends [`Event`]s to whichever
//! frontend is attached. The TUI turns them into a progress bar and a log pane, the CLI into
//! lines on stderr. The typed result is pulled from the handle once `Finished`/`Failed` arrives.

use std::fmt::Display;
use std::future::Future;

use tokio::sync::mpsc;

use super::check::Check;
use super::machine::MachineView;
use super::units::human_bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How loud a log line is, so frontends can colour warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// How far a long job has come; `total` is `None` when the end is unknown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    /// Units per second over the recent past (bytes/s for copies and uploads).
    pub rate: f64,
}

impl Progress {
    /// `42% 1.2 GiB of 2.8 GiB at 230 MiB/s, 7 s left`, for progress lines and bars.
    pub fn describe(&self) -> String {
        let progress = self;
        let rate = format!("{}/s", human_bytes(progress.rate as u64));
        match progress.total {
            Some(total) if total > 0 => {
                let percent = progress.done as f64 * 100.0 / total as f64;
                let left = total.saturating_sub(progress.done);
                let eta = if progress.rate > 0.0 {
                    format!(", {} s left", (left as f64 / progress.rate).ceil() as u64)
                } else {
                    String::new()
                };
                format!(
                    "{percent:.0}% {} of {} at {rate}{eta}",
                    human_bytes(progress.done),
                    human_bytes(total)
                )
            }
            _ => format!("{} at {rate}", human_bytes(progress.done)),
        }
    }
}

/// What a running step tells its frontend.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started {
        title: String,
    },
    Progress(Progress),
    Log {
        level: Level,
        message: String,
    },
    /// A machine started: frontends can now show its console and screen and type into it.
    Machine(MachineView),
    /// A check of the Verify step has its verdict.
    Check(Check),
    /// The step failed and keeps its machine up for a look until the frontend cancels it.
    Held {
        error: String,
    },
    Finished {
        summary: String,
    },
    Failed {
        error: String,
    },
}

/// The step's side of the channel: report progress and logs, and notice cancellation.
#[derive(Clone)]
pub struct Reporter {
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
    /// The frontend can show a failed step's machine (the TUI), so keep it up on failure.
    hold_failures: bool,
}

impl Reporter {
    pub fn info(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{message}");
        self.send(Event::Log {
            level: Level::Info,
            message,
        });
    }

    pub fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{message}");
        self.send(Event::Log {
            level: Level::Warn,
            message,
        });
    }

    /// Report a check's verdict as soon as it is known.
    pub fn check(&self, check: Check) {
        self.send(Event::Check(check));
    }

    /// Hand the frontend a view of a machine the step started.
    pub fn machine(&self, view: MachineView) {
        self.send(Event::Machine(view));
    }

    pub fn progress(&self, done: u64, total: Option<u64>, rate: f64) {
        self.send(Event::Progress(Progress { done, total, rate }));
    }

    /// The step failed while its machine is up. A frontend that asked for it (the TUI) gets
    /// [`Event::Held`] and the machine stays up — console, screen and all — until it cancels
    /// (retry or stop), like Packer's `-on-error=ask`. Otherwise this returns at once.
    pub async fn hold(&self, error: &str) {
        if !self.hold_failures || self.cancel.is_cancelled() {
            return;
        }
        self.warn(format!("failed: {error}"));
        self.send(Event::Held {
            error: error.to_string(),
        });
        self.cancel.cancelled().await;
    }

    /// Resolves when the frontend asked the step to stop.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn send(&self, event: Event) {
        // A frontend that went away no longer wants events; the step still finishes cleanly.
        let _ = self.events.send(event);
    }
}

/// A one-line description of a step's result, shown when it finishes.
pub trait Summary {
    fn summary(&self) -> String;
}

/// The frontend's handle on a running step.
pub struct Task<T, E> {
    events: mpsc::UnboundedReceiver<Event>,
    cancel: CancellationToken,
    join: JoinHandle<Result<T, E>>,
}

/// Start `work` as a background step that reports through the [`Reporter`] it is given.
pub fn spawn<T, E, F, Fut>(title: impl Into<String>, work: F) -> Task<T, E>
where
    T: Summary + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(Reporter) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    start(title.into(), false, work)
}

/// Like [`spawn`], for a frontend that shows a failed step's machine: the step keeps it up
/// (see [`Reporter::hold`]) until the task is cancelled.
pub fn spawn_holding<T, E, F, Fut>(title: impl Into<String>, work: F) -> Task<T, E>
where
    T: Summary + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(Reporter) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    start(title.into(), true, work)
}

fn start<T, E, F, Fut>(title: String, hold_failures: bool, work: F) -> Task<T, E>
where
    T: Summary + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(Reporter) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let reporter = Reporter {
        events: tx.clone(),
        cancel: cancel.clone(),
        hold_failures,
    };
    tracing::info!("step started: {title}");
    let _ = tx.send(Event::Started { title });
    let work = work(reporter);
    let join = tokio::spawn(async move {
        let result = work.await;
        let last = match &result {
            Ok(value) => Event::Finished {
                summary: value.summary(),
            },
            Err(error) => {
                tracing::warn!("step failed: {error}");
                Event::Failed {
                    error: error.to_string(),
                }
            }
        };
        let _ = tx.send(last);
        result
    });
    Task {
        events: rx,
        cancel,
        join,
    }
}

impl<T, E> Task<T, E> {
    /// The next event; `None` once the step has ended and every event was read.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Ask the step to stop; it reports `Failed` with a "cancelled" error when it has.
    pub fn cancel(&self) {
        self.cancel.cancel()
    }

    /// Wait for the step's typed result.
    pub async fn result(self) -> Result<T, E>
    where
        E: From<TaskPanicked>,
    {
        match self.join.await {
            Ok(result) => result,
            Err(join_error) => Err(TaskPanicked(join_error.to_string()).into()),
        }
    }
}

/// A step's task died without a result (a bug in kiln, reported rather than hidden).
#[derive(Debug, thiserror::Error)]
#[error("internal error: the step stopped unexpectedly ({0})")]
pub struct TaskPanicked(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    struct Done(u32);
    impl Summary for Done {
        fn summary(&self) -> String {
            format!("done {}", self.0)
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("cancelled")]
        Cancelled,
        #[error(transparent)]
        Panicked(#[from] TaskPanicked),
    }

    #[test]
    fn progress_lines() {
        let line = Progress {
            done: 1 << 30,
            total: Some(2 << 30),
            rate: (512 << 20) as f64,
        }
        .describe();
        assert_eq!(line, "50% 1 GiB of 2 GiB at 512 MiB/s, 2 s left");
        let open = Progress {
            done: 1024,
            total: None,
            rate: 0.0,
        }
        .describe();
        assert_eq!(open, "1 KiB at 0 B/s");
    }

    #[tokio::test]
    async fn events_arrive_in_order_and_end_with_finished() {
        let mut task = spawn("count", |r: Reporter| async move {
            r.progress(1, Some(2), 0.0);
            r.info("half way");
            Ok::<_, TestError>(Done(2))
        });
        let mut events = Vec::new();
        while let Some(event) = task.next_event().await {
            events.push(event);
        }
        assert_eq!(
            events[0],
            Event::Started {
                title: "count".into()
            }
        );
        assert!(matches!(
            events[1],
            Event::Progress(Progress { done: 1, .. })
        ));
        assert!(matches!(&events[2], Event::Log { message, .. } if message == "half way"));
        assert_eq!(
            events[3],
            Event::Finished {
                summary: "done 2".into()
            }
        );
        assert_eq!(task.result().await.unwrap().0, 2);
    }

    #[tokio::test]
    async fn a_holding_step_keeps_going_until_cancelled_and_a_plain_one_does_not_wait() {
        let plain = spawn("plain", |r: Reporter| async move {
            r.hold("boom").await;
            Err::<Done, _>(TestError::Cancelled)
        });
        // Returns without anyone cancelling it.
        assert!(plain.result().await.is_err());

        let mut held = spawn_holding("held", |r: Reporter| async move {
            r.hold("boom").await;
            Err::<Done, _>(TestError::Cancelled)
        });
        loop {
            match held.next_event().await {
                Some(Event::Held { error }) => {
                    assert_eq!(error, "boom");
                    break;
                }
                Some(_) => continue,
                None => panic!("ended without holding"),
            }
        }
        held.cancel();
        assert!(held.result().await.is_err());
    }

    #[tokio::test]
    async fn cancel_reaches_the_step() {
        let mut task = spawn("wait", |r: Reporter| async move {
            r.cancelled().await;
            Err::<Done, _>(TestError::Cancelled)
        });
        task.cancel();
        let mut last = None;
        while let Some(event) = task.next_event().await {
            last = Some(event);
        }
        assert_eq!(
            last,
            Some(Event::Failed {
                error: "cancelled".into()
            })
        );
    }
}
