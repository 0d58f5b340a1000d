//! Per-step screen state and the keys each step's form understands.

pub mod create;
pub mod install;
