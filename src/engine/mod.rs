//! The engine: every step of an image's life, with no user-interface code. The TUI and the
//! headless CLI both drive it through [`workflow::Workflow`], which hands back one
//! [`task::Task`] per step and the events it reports.
//!
//! Its modules come in four groups and a top:
//! - [`steps`]: what each step does — `image` (create), `install`, `configure`, `provision`,
//!   `verify`, `publish`, `post_build`.
//! - [`guest`]: talking to a running guest — the QEMU `machine`, `qmp`, `ssh`, its `console`,
//!   `screen` and `keys`.
//! - [`host`]: this machine — what it can do (`kiln doctor`), `config`, `vcpus`, `process`,
//!   `temp_file`.
//! - [`files`]: untrusted files kiln reads itself — `qcow2_header`, `iso`.
//! - here: [`workflow`] (the one way a frontend runs a step), [`plan`] and [`build`] (a run's
//!   stages, a recipe's meaning), [`recipe`], [`session`] (`NAME.kiln.toml`), [`driver`] (the
//!   CI drivers' profiles), [`namespace`], and [`task`], [`check`] and [`units`] under all.
//!
//! Modules depend on each other in one direction only (a test in `src/module_graph.rs` walks
//! the `use` lines): `task`, `check` and `units` at the bottom, the steps above them,
//! `workflow` and `plan` on top.

pub mod build;
pub mod check;
pub mod driver;
pub mod files;
pub mod guest;
pub mod host;
pub mod namespace;
pub mod plan;
pub mod recipe;
pub mod session;
pub mod steps;
pub mod task;
#[cfg(test)]
mod test_images;
pub mod units;
pub mod workflow;

/// The steps of the workflow, in the order a person walks them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Create,
    Install,
    Configure,
    Verify,
    Publish,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Create,
        Step::Install,
        Step::Configure,
        Step::Verify,
        Step::Publish,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Step::Create => "Create",
            Step::Install => "Install",
            Step::Configure => "Configure",
            Step::Verify => "Verify",
            Step::Publish => "Publish",
        }
    }

    /// The lowercase name used on the command line, in session files and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Install => "install",
            Step::Configure => "configure",
            Step::Verify => "verify",
            Step::Publish => "publish",
        }
    }

    /// One line on what the step does, for the step list and help.
    pub fn purpose(self) -> &'static str {
        match self {
            Step::Create => "a new, empty qcow2 v3 disk",
            Step::Install => "an installer onto the disk, or a cloud image copied over it",
            Step::Configure => "passwordless root and the reference sshd_config",
            Step::Verify => "boot it exactly as the CI driver does and log in",
            Step::Publish => "upload to Djinn, install for a runner, or copy to a host",
        }
    }
}
