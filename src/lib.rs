//! kiln: prepare, validate and publish QEMU disk images for CI drivers that boot a qcow2 and
//! log in over SSH as a passwordless root (Djinn CI, builds.sr.ht-style runners).
//!
//! `engine` holds every step and knows nothing of terminals; `tui` and `cli` are the two
//! frontends that drive it.

pub mod cli;
pub mod engine;
#[cfg(test)]
mod module_graph;
pub mod tui;
