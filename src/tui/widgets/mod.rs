//! Reusable pieces of the screens.

pub mod dialog;
pub mod progress;
pub mod text_field;
