//! Reusable pieces of the screens.

pub mod console;
pub mod dialog;
pub mod form;
pub mod path_completion;
pub mod progress;
pub mod screen;
pub mod text_field;
