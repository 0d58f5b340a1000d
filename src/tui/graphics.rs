//! Real pixels for a guest's screen where the terminal can show them (kitty, sixel, iTerm2
//! inline images, through ratatui-image), chosen at start: announced by the terminal
//! (`auto`) or named (`--graphics`, the `graphics` config key). Elsewhere the half-block
//! renderer draws it.

use std::sync::{Arc, Mutex};

use image::{DynamicImage, RgbImage};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{FilterType, FontSize, Resize, StatefulImage};

use crate::engine::guest::screen::Picture;
use crate::engine::host::config::Graphics;

/// A picture encoded for the terminal, kept until the picture or its area changes: a guest
/// screen that stays the same costs nothing on the terminal's line.
pub type Encoded = Arc<Mutex<Option<StatefulProtocol>>>;

/// The terminal graphics to use, or `None` for half blocks: the one named, or (`auto`) the
/// one the terminal announces in its environment — kitty, WezTerm, iTerm2, foot, mlterm,
/// Konsole, Ghostty. kiln does not ask the terminal over stdin: a terminal that leaves a
/// query unanswered (tmux, most of them) would keep the asking thread reading the keyboard.
/// The cell size in pixels comes from the kernel (TIOCGWINSZ), when the terminal gives it.
pub fn choose(graphics: Graphics) -> Option<Picker> {
    let protocol = match graphics {
        Graphics::Blocks => return None,
        Graphics::Auto => announced_protocol(|name| std::env::var(name).ok())?,
        Graphics::Kitty => ProtocolType::Kitty,
        Graphics::Sixel => ProtocolType::Sixel,
        Graphics::Iterm2 => ProtocolType::Iterm2,
    };
    // Deprecated in favour of the stdin query avoided above; the font size is the only thing
    // it needs from us.
    #[allow(deprecated)]
    let mut picker = Picker::from_fontsize(cell_size());
    picker.set_protocol_type(protocol);
    Some(picker)
}

/// The graphics protocol a terminal's environment variables announce, if any. Inside tmux
/// (no passthrough) none: pictures drawn there would be lost.
fn announced_protocol(variable: impl Fn(&str) -> Option<String>) -> Option<ProtocolType> {
    if variable("TMUX").is_some() {
        return None;
    }
    let term = variable("TERM").unwrap_or_default();
    let program = variable("TERM_PROGRAM").unwrap_or_default();
    if variable("KITTY_WINDOW_ID").is_some() || term == "xterm-kitty" || term == "xterm-ghostty" {
        Some(ProtocolType::Kitty)
    } else if ["iTerm.app", "WezTerm"].contains(&program.as_str())
        || variable("KONSOLE_VERSION").is_some()
    {
        Some(ProtocolType::Iterm2)
    } else if term.starts_with("foot") || term.starts_with("mlterm") {
        Some(ProtocolType::Sixel)
    } else {
        None
    }
}

/// A terminal cell's size in pixels, from the window's (the usual 10×20 when unknown).
fn cell_size() -> FontSize {
    let (width, height) = match crossterm::terminal::window_size() {
        Ok(size) if size.width > 0 && size.columns > 0 && size.rows > 0 => (
            (size.width / size.columns).max(1),
            (size.height / size.rows).max(1),
        ),
        _ => (10, 20),
    };
    FontSize { width, height }
}

/// Draw `picture` with real pixels into `area`, its aspect ratio kept, re-encoding only when
/// `encoded` was cleared (a new picture) or the area changed.
pub fn draw(frame: &mut Frame, area: Rect, picture: &Picture, picker: &Picker, encoded: &Encoded) {
    let mut encoded = encoded.lock().unwrap_or_else(|e| e.into_inner());
    let protocol = encoded.get_or_insert_with(|| picker.new_resize_protocol(to_image(picture)));
    // Area-averaging when shrinking keeps thin text strokes readable.
    let widget = StatefulImage::default().resize(Resize::Fit(Some(FilterType::Triangle)));
    frame.render_stateful_widget(widget, area, protocol);
}

fn to_image(picture: &Picture) -> DynamicImage {
    let image = RgbImage::from_raw(
        picture.width as u32,
        picture.height as u32,
        picture.rgb.clone(),
    )
    .unwrap_or_else(|| RgbImage::new(1, 1));
    DynamicImage::ImageRgb8(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use ratatui::Terminal;
    use ratatui::backend::CrosstermBackend;

    use crate::tui::recorder::Recorder;

    /// 40×20 pixels (4×1 cells of the fallback 10×20 font: drawn at its own size), every
    /// pixel a different colour.
    fn picture() -> Picture {
        let rgb = (0..40 * 20)
            .flat_map(|i: u32| [(i % 256) as u8, (i / 4) as u8, 255 - (i % 200) as u8])
            .collect();
        Picture {
            width: 40,
            height: 20,
            rgb,
        }
    }

    fn picker(protocol: ProtocolType) -> Picker {
        #[allow(deprecated)]
        let mut picker = Picker::from_fontsize(FontSize {
            width: 10,
            height: 20,
        });
        picker.set_protocol_type(protocol);
        picker
    }

    /// Draw the picture as `protocol` into a terminal that records every byte sent to it;
    /// the bytes each frame wrote.
    fn frames(protocol: ProtocolType, pictures: &[Picture]) -> Vec<String> {
        let picker = picker(protocol);
        let encoded = Encoded::default();
        let recorder = Recorder::default();
        let mut terminal = Terminal::new(CrosstermBackend::new(recorder.clone())).unwrap();
        terminal.resize(Rect::new(0, 0, 20, 6)).unwrap();
        let mut shown: Option<&Picture> = None;
        let mut written = Vec::new();
        for picture in pictures {
            // What MachinePane::show does: a new picture is encoded again, the same one not.
            if shown != Some(picture) {
                *encoded.lock().unwrap() = None;
                shown = Some(picture);
            }
            let before = recorder.len();
            terminal
                .draw(|frame| draw(frame, frame.area(), picture, &picker, &encoded))
                .unwrap();
            written.push(recorder.since(before));
        }
        written
    }

    /// ratatui-image 10 under ratatui 0.30 left every cell after the picture's first one (in
    /// reading order) unsent for good: the console beside the picture and the footer froze.
    #[test]
    fn text_after_the_picture_is_still_redrawn() {
        for protocol in [
            ProtocolType::Sixel,
            ProtocolType::Kitty,
            ProtocolType::Iterm2,
        ] {
            let picker = picker(protocol);
            let encoded = Encoded::default();
            let recorder = Recorder::default();
            let mut terminal = Terminal::new(CrosstermBackend::new(recorder.clone())).unwrap();
            terminal.resize(Rect::new(0, 0, 30, 6)).unwrap();
            for tick in ["tick-one", "tick-two"] {
                let before = recorder.len();
                terminal
                    .draw(|frame| {
                        draw(frame, Rect::new(0, 0, 20, 6), &picture(), &picker, &encoded);
                        let beside = Rect::new(21, 0, 9, 1);
                        let below = Rect::new(21, 4, 9, 1);
                        frame.render_widget(ratatui::text::Line::raw(tick), beside);
                        frame.render_widget(ratatui::text::Line::raw(tick), below);
                    })
                    .unwrap();
                let written = recorder.since(before);
                assert_eq!(
                    written.matches(&tick[5..]).count(),
                    2,
                    "{protocol:?}: `{tick}` beside and below the picture was not sent"
                );
            }
        }
    }

    #[test]
    fn terminals_are_known_by_their_environment() {
        let with = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            announced_protocol(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(with(&[("TERM", "xterm-kitty")]), Some(ProtocolType::Kitty));
        assert_eq!(
            with(&[("TERM_PROGRAM", "WezTerm")]),
            Some(ProtocolType::Iterm2)
        );
        assert_eq!(with(&[("TERM", "foot")]), Some(ProtocolType::Sixel));
        assert_eq!(with(&[("TERM", "xterm-256color")]), None);
        // tmux passes no pictures through: half blocks, whatever is outside.
        assert_eq!(
            with(&[("TERM", "xterm-kitty"), ("TMUX", "/tmp/t,1,0")]),
            None
        );
    }

    #[test]
    fn the_iterm2_picture_decodes_back_to_the_screendump() {
        let frame = &frames(ProtocolType::Iterm2, &[picture()])[0];
        let start = frame.find("]1337;File=").expect("an iTerm2 inline image");
        let payload = &frame[start..];
        assert!(payload.contains("width=40px;height=20px"), "{payload:.80}");
        let data = &payload[payload.find(':').unwrap() + 1..payload.find('\x07').unwrap()];
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((decoded.width(), decoded.height()), (40, 20));
        assert_eq!(
            decoded.into_raw(),
            picture().rgb,
            "the pixels changed on the way"
        );
    }

    #[test]
    fn a_sixel_picture_is_sent_once_while_the_screen_stays_the_same() {
        let still = picture();
        let mut changed = picture();
        changed.rgb[0] ^= 0xff;
        let written = frames(
            ProtocolType::Sixel,
            &[still.clone(), still.clone(), still, changed],
        );
        let sixel = |frame: &String| frame.contains("\x1bP") && frame.contains('#');
        assert!(sixel(&written[0]), "no sixel image in the first frame");
        assert!(
            !sixel(&written[1]) && !sixel(&written[2]),
            "an unchanged screen was sent again: {} and {} bytes",
            written[1].len(),
            written[2].len()
        );
        assert!(written[1].len() < 64, "{:?}", written[1]);
        assert!(sixel(&written[3]), "a changed screen was not sent");
    }
}
