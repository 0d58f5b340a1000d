//! A step running in the background: the events it reports and the handle a frontend holds.
//!
//! Every step (create, install, …) runs as a tokio task that sends [`Event`]s to whichever
//! frontend is attached. The TUI turns them into a progress bar and a log pane, the CLI into
//! lines on stderr. The typed result is pulled from the handle once `Finished`/`Failed` arrives.
//!
//! This module is the engine's neutral ground: it knows no step, so every step can use it.
//! Questions a step asks ("replace this file?") are events too, answered through the [`Task`];
//! a headless frontend answers them up front with [`Answers`].

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::check::Check;
use super::units::human_bytes;
use crate::engine::guest::machine::MachineView;
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
    /// The step waits for the person's yes or no ([`Task::answer`]).
    Question(Question),
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

/// A yes-or-no question a step asks before it does something that cannot be undone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// The image file exists: replace it with a new, empty one?
    ReplaceFile { path: PathBuf },
    /// Apply this change to the guest's sshd_config (the diff, old to new)?
    ApplySshdConfig { diff: String },
}

/// Answers given before the step starts (from command-line flags); `None` means ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Answers {
    pub replace_file: Option<bool>,
    pub apply_sshd_config: Option<bool>,
}

impl Answers {
    fn preset(&self, question: &Question) -> Option<bool> {
        match question {
            Question::ReplaceFile { .. } => self.replace_file,
            Question::ApplySshdConfig { .. } => self.apply_sshd_config,
        }
    }
}

/// How a frontend wants a step run.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaskOptions {
    /// The frontend can show a failed step's machine (the TUI): keep it up on failure.
    pub hold_failures: bool,
    pub answers: Answers,
}

/// The step was stopped on request; says what was (not) left behind. Every step's error
/// carries this one type, so frontends tell "stopped" from "failed" the same way everywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cancelled; {0}")]
pub struct Cancelled(pub String);

/// Where the answer to the open question goes (one at a time).
type PendingAnswer = Arc<Mutex<Option<oneshot::Sender<bool>>>>;

/// The step's side of the channel: report progress and logs, ask, and notice cancellation.
#[derive(Clone)]
pub struct Reporter {
    events: mpsc::UnboundedSender<Event>,
    cancel: CancellationToken,
    options: TaskOptions,
    pending: PendingAnswer,
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

    /// Hand the frontend a view of a machine the step started, saying its vCPU count and why
    /// when that was decided at power-on.
    pub fn machine(&self, view: MachineView) {
        if view.cpus().reason.is_some() {
            self.info(format!("machine: {}", view.cpus().describe()));
        }
        self.send(Event::Machine(view));
    }

    pub fn progress(&self, done: u64, total: Option<u64>, rate: f64) {
        self.send(Event::Progress(Progress { done, total, rate }));
    }

    /// The step failed while its machine is up. A frontend that asked for it (the TUI) gets
    /// [`Event::Held`] and the machine stays up — console, screen and all — until it cancels
    /// (retry or stop), like Packer's `-on-error=ask`. Otherwise this returns at once.
    pub async fn hold(&self, error: &str) {
        if !self.options.hold_failures || self.cancel.is_cancelled() {
            return;
        }
        self.warn(format!("failed: {error}"));
        self.send(Event::Held {
            error: error.to_string(),
        });
        self.cancel.cancelled().await;
    }

    /// Ask the frontend; a preset answer is used without asking. Cancelling the step, or a
    /// frontend that went away, answers no: nothing changes without a yes.
    pub async fn ask(&self, question: Question) -> bool {
        if let Some(answer) = self.options.answers.preset(&question) {
            return answer;
        }
        let (reply, answer) = oneshot::channel();
        *self.pending.lock().expect("answer slot") = Some(reply);
        self.send(Event::Question(question));
        tokio::select! {
            answer = answer => answer.unwrap_or(false),
            _ = self.cancel.cancelled() => false,
        }
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
    pending: PendingAnswer,
    join: JoinHandle<Result<T, E>>,
}

/// A reporter for a unit test of code that reports: its task was spawned and dropped, so
/// what it reports goes nowhere and it is never cancelled.
#[cfg(test)]
pub fn test_reporter() -> Reporter {
    struct Nothing;
    impl Summary for Nothing {
        fn summary(&self) -> String {
            String::new()
        }
    }
    let mut reporter = None;
    let _ = spawn("test", TaskOptions::default(), |r: Reporter| {
        reporter = Some(r);
        async { Ok::<_, String>(Nothing) }
    });
    reporter.expect("spawn hands the reporter over at once")
}

/// Start `work` as a background step that reports through the [`Reporter`] it is given.
pub fn spawn<T, E, F, Fut>(title: impl Into<String>, options: TaskOptions, work: F) -> Task<T, E>
where
    T: Summary + Send + 'static,
    E: Display + Send + 'static,
    F: FnOnce(Reporter) -> Fut,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
{
    let title = title.into();
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let pending = PendingAnswer::default();
    let reporter = Reporter {
        events: tx.clone(),
        cancel: cancel.clone(),
        options,
        pending: pending.clone(),
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
        pending,
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

    /// Answer the step's open [`Event::Question`].
    pub fn answer(&self, yes: bool) {
        if let Some(reply) = self.pending.lock().expect("answer slot").take() {
            let _ = reply.send(yes);
        }
    }

    /// Whether the frontend asked the step to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
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
        let mut task = spawn("count", TaskOptions::default(), |r: Reporter| async move {
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
        let plain = spawn("plain", TaskOptions::default(), |r: Reporter| async move {
            r.hold("boom").await;
            Err::<Done, _>(TestError::Cancelled)
        });
        // Returns without anyone cancelling it.
        assert!(plain.result().await.is_err());

        let holding = TaskOptions {
            hold_failures: true,
            ..TaskOptions::default()
        };
        let mut held = spawn("held", holding, |r: Reporter| async move {
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
        let mut task = spawn("wait", TaskOptions::default(), |r: Reporter| async move {
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

    #[tokio::test]
    async fn questions_are_events_answered_through_the_task_or_preset() {
        let ask = |options: TaskOptions| {
            spawn("ask", options, |r: Reporter| async move {
                let yes = r
                    .ask(Question::ReplaceFile {
                        path: "/i/d.qcow2".into(),
                    })
                    .await;
                Ok::<_, TestError>(Done(u32::from(yes)))
            })
        };
        let mut asked = ask(TaskOptions::default());
        loop {
            match asked.next_event().await {
                Some(Event::Question(Question::ReplaceFile { path })) => {
                    assert_eq!(path, PathBuf::from("/i/d.qcow2"));
                    asked.answer(true);
                }
                Some(_) => continue,
                None => break,
            }
        }
        assert_eq!(asked.result().await.unwrap().0, 1);

        let preset = TaskOptions {
            answers: Answers {
                replace_file: Some(false),
                ..Answers::default()
            },
            ..TaskOptions::default()
        };
        let mut told = ask(preset);
        while let Some(event) = told.next_event().await {
            assert!(
                !matches!(event, Event::Question(_)),
                "a preset is not asked"
            );
        }
        assert_eq!(told.result().await.unwrap().0, 0);

        // Cancelling while the question is open answers no.
        let mut cancelled = ask(TaskOptions::default());
        while let Some(event) = cancelled.next_event().await {
            if matches!(event, Event::Question(_)) {
                cancelled.cancel();
            }
        }
        assert_eq!(cancelled.result().await.unwrap().0, 0);
    }
}
