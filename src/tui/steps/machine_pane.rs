//! A running machine as a screen shows it: console or VGA pane, and where typed keys go.

use std::time::{Duration, Instant};

use crate::engine::guest::machine::MachineView;
use crate::engine::guest::screen::Picture;
use crate::tui::graphics::Encoded;

/// A blinking text cursor flips the guest's screen between two pictures a few times a second,
/// and each flip would be a whole new picture on the terminal (about 1.2 MB for kitty). A flip
/// back to the picture shown before, changing at most this share of the pixels, is shown at
/// most every [`BLINK_EVERY`]…
const BLINK_SHARE: f64 = 0.01;
const BLINK_EVERY: Duration = Duration::from_secs(2);
/// …unless a key went to the screen this recently: then it is the echo someone waits for.
const TYPED_ECHO: Duration = Duration::from_secs(1);

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
    /// The picture shown before `picture`, and when `picture` was shown: a blink flips back.
    previous: Option<Picture>,
    shown_at: Option<Instant>,
    /// When a key last went to the VGA screen.
    typed_at: Option<Instant>,
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
            previous: None,
            shown_at: None,
            typed_at: None,
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
    /// screen changed, so a still screen sends nothing to the terminal — and a blinking
    /// cursor little (see [`BLINK_SHARE`]).
    pub fn show(&mut self, picture: Picture, now: Instant) {
        let Some(shown) = &self.picture else {
            return self.replace(picture, now);
        };
        if *shown == picture {
            return;
        }
        let since = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at));
        let blink = self.previous.as_ref() == Some(&picture)
            && changed_share(shown, &picture) <= BLINK_SHARE
            && since(self.typed_at).is_none_or(|typed| typed >= TYPED_ECHO)
            && since(self.shown_at).is_some_and(|shown| shown < BLINK_EVERY);
        if !blink {
            self.replace(picture, now);
        }
    }

    fn replace(&mut self, picture: Picture, now: Instant) {
        self.previous = self.picture.replace(picture);
        self.shown_at = Some(now);
        *self.encoded.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A key went to the VGA screen: its echo is shown at once, even a small one.
    pub fn typed(&mut self, now: Instant) {
        self.typed_at = Some(now);
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

/// The share of pixels that differ between two pictures (1 when their sizes differ).
fn changed_share(a: &Picture, b: &Picture) -> f64 {
    if (a.width, a.height) != (b.width, b.height) || a.width * a.height == 0 {
        return 1.0;
    }
    let changed = a
        .rgb
        .chunks_exact(3)
        .zip(b.rgb.chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count();
    changed as f64 / (a.width * a.height) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100×100 grey picture with `dots` white pixels in its first row.
    fn picture(dots: usize) -> Picture {
        let mut rgb = vec![40u8; 100 * 100 * 3];
        rgb[..dots * 3].fill(255);
        Picture {
            width: 100,
            height: 100,
            rgb,
        }
    }

    fn shown(pane: &MachinePane) -> usize {
        let rgb = &pane.picture.as_ref().unwrap().rgb;
        rgb.chunks_exact(3).filter(|p| p[0] == 255).count()
    }

    #[test]
    fn a_blinking_cursor_is_shown_every_two_seconds_not_every_screendump() {
        let mut pane = MachinePane::default();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let (on, off) = (|| picture(10), || picture(0));
        pane.show(on(), at(0));
        pane.show(off(), at(250)); // a state not seen before: shown at once
        assert_eq!(shown(&pane), 0);
        pane.show(on(), at(500)); // back to the one before: a blink
        pane.show(off(), at(750));
        pane.show(on(), at(1000));
        assert_eq!(shown(&pane), 0, "a blink within 2 s is not sent again");
        pane.show(on(), at(2300));
        assert_eq!(
            shown(&pane),
            10,
            "after 2 s the cursor's other state is shown"
        );
        pane.show(off(), at(2550));
        assert_eq!(shown(&pane), 10);
    }

    #[test]
    fn typed_keys_large_changes_and_new_pictures_are_shown_at_once() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // The echo of a key typed into the screen.
        let mut pane = MachinePane::default();
        pane.show(picture(10), at(0));
        pane.show(picture(0), at(250));
        pane.typed(at(400));
        pane.show(picture(10), at(500));
        assert_eq!(shown(&pane), 10);
        // More than 1 % of the pixels: not a cursor.
        let mut pane = MachinePane::default();
        pane.show(picture(200), at(0));
        pane.show(picture(0), at(250));
        pane.show(picture(200), at(500));
        assert_eq!(shown(&pane), 200);
        // A small change to a picture not shown just before (the guest printed a character).
        let mut pane = MachinePane::default();
        pane.show(picture(10), at(0));
        pane.show(picture(0), at(250));
        pane.show(picture(11), at(500));
        assert_eq!(shown(&pane), 11);
    }
}
