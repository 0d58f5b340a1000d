//! Every screen in every built-in theme at 80×24 and 160×48 (written by the theme-matrix task).
