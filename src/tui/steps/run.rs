//! What a step screen shows about its current or last run.

use super::machine_pane::MachinePane;
use crate::engine::check::Check;
use crate::engine::task::{Level, Progress};

#[derive(Clone, Default)]
pub struct StepRun {
    pub log: Vec<(Level, String)>,
    pub progress: Option<Progress>,
    pub error: Option<String>,
    /// Verdicts as they arrive (the Verify checklist).
    pub checks: Vec<Check>,
    pub machine: MachinePane,
    /// The result in a few lines, once the run succeeded.
    pub outcome: Vec<String>,
    /// The step failed and kept its machine up (the error): retry, look, or stop.
    pub held: Option<String>,
}

impl StepRun {
    /// Forget the last run before a new one starts.
    pub fn reset(&mut self) {
        *self = StepRun::default();
    }
}
