//! Per-step screen state and the keys each step's form understands.

pub mod configure;
pub mod create;
pub mod install;
pub mod machine_pane;
pub mod publish;
pub mod run;
pub mod verify;
