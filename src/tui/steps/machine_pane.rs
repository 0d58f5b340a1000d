//! A running machine as a screen shows it: console or VGA pane, and where typed keys go.

use crate::engine::machine::MachineView;
use crate::engine::screen::Picture;
use crate::tui::graphics::Encoded;

/// Which view of the machine is shown when there is room for only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Console,
    Screen,
}

/// Where typed keys go while a machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTarget {
    Kiln,
    Serial,
    Vga,
}

/// Terminal width from which console and screen are shown side by side.
pub const SIDE_BY_SIDE_WIDTH: u16 = 140;

/// The machine of a running step, if it has one.
#[derive(Clone)]
pub struct MachinePane {
    pub view: Option<MachineView>,
    pub pane: Pane,
    pub keys_to: KeyTarget,
    pub picture: Option<Picture>,
    /// The picture encoded for terminal graphics (when the terminal shows real pixels).
    pub encoded: Encoded,
    /// The guest's screen on the whole terminal.
    pub fullscreen: bool,
}

impl Default for MachinePane {
    fn default() -> Self {
        MachinePane {
            view: None,
            pane: Pane::Console,
            keys_to: KeyTarget::Kiln,
            picture: None,
            encoded: Encoded::default(),
            fullscreen: false,
        }
    }
}

impl MachinePane {
    /// Whether the VGA picture is on screen at this terminal width (and so worth refreshing).
    pub fn screen_visible(&self, width: u16) -> bool {
        self.view.is_some()
            && (width >= SIDE_BY_SIDE_WIDTH || self.pane == Pane::Screen || self.fullscreen)
    }

    /// The machine is gone: drop it and give the keyboard back.
    pub fn clear(&mut self) {
        *self = MachinePane::default();
    }

    /// Hand the keyboard to the serial console, shown.
    pub fn type_into_console(&mut self) {
        if self.view.is_some() {
            self.pane = Pane::Console;
            self.keys_to = KeyTarget::Serial;
        }
    }

    /// Hand the keyboard to the VGA screen, shown.
    pub fn type_into_screen(&mut self) {
        if self.view.is_some() {
            self.pane = Pane::Screen;
            self.keys_to = KeyTarget::Vga;
        }
    }

    /// A new screendump: kept (and encoded again for the terminal) only when the guest's
    /// screen changed, so a still screen sends nothing to the terminal.
    pub fn show(&mut self, picture: Picture) {
        if self.picture.as_ref() != Some(&picture) {
            self.picture = Some(picture);
            *self.encoded.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// The guest's screen on the whole terminal, or back to the step's screen.
    pub fn toggle_fullscreen(&mut self) {
        if self.view.is_some() {
            self.fullscreen = !self.fullscreen;
        }
    }

    /// Whether the whole terminal shows the guest's screen now.
    pub fn is_fullscreen(&self) -> bool {
        self.fullscreen && self.view.is_some()
    }

    /// Show the other pane (when there is room for only one).
    pub fn switch_pane(&mut self) {
        if self.view.is_some() {
            self.pane = match self.pane {
                Pane::Console => Pane::Screen,
                Pane::Screen => Pane::Console,
            }
        }
    }
}
