//! A backend that writes nothing for a frame that changed nothing. ratatui's crossterm backend
//! ends every draw with a colour reset and hides the cursor again — about 25 bytes a frame, and
//! the workbench draws ten and more frames a second while a step runs. A still workbench (a
//! guest screen that does not change, a console that prints nothing) should cost its terminal
//! line nothing, over ssh most of all.

use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Size};

/// Forwards to `inner`, except empty draws and hiding a cursor that is hidden already.
pub struct QuietBackend<B> {
    inner: B,
    cursor_hidden: bool,
}

impl<B> QuietBackend<B> {
    pub fn new(inner: B) -> QuietBackend<B> {
        QuietBackend {
            inner,
            cursor_hidden: false,
        }
    }
}

impl<B: Backend> Backend for QuietBackend<B> {
    type Error = B::Error;

    fn draw<'a, I>(&mut self, content: I) -> Result<(), Self::Error>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut content = content.peekable();
        match content.peek() {
            None => Ok(()),
            Some(_) => self.inner.draw(content),
        }
    }

    fn append_lines(&mut self, n: u16) -> Result<(), Self::Error> {
        self.inner.append_lines(n)
    }

    fn hide_cursor(&mut self) -> Result<(), Self::Error> {
        if !self.cursor_hidden {
            self.inner.hide_cursor()?;
            self.cursor_hidden = true;
        }
        Ok(())
    }

    fn show_cursor(&mut self) -> Result<(), Self::Error> {
        self.cursor_hidden = false;
        self.inner.show_cursor()
    }

    fn get_cursor_position(&mut self) -> Result<Position, Self::Error> {
        self.inner.get_cursor_position()
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> Result<(), Self::Error> {
        self.inner.set_cursor_position(position)
    }

    fn clear(&mut self) -> Result<(), Self::Error> {
        self.inner.clear()
    }

    fn clear_region(&mut self, clear_type: ClearType) -> Result<(), Self::Error> {
        self.inner.clear_region(clear_type)
    }

    fn size(&self) -> Result<Size, Self::Error> {
        self.inner.size()
    }

    fn window_size(&mut self) -> Result<WindowSize, Self::Error> {
        self.inner.window_size()
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::CrosstermBackend;
    use ratatui::text::Line;

    use super::*;
    use crate::tui::recorder::Recorder;

    #[test]
    fn a_frame_that_changed_nothing_writes_nothing() {
        let recorder = Recorder::default();
        let backend = QuietBackend::new(CrosstermBackend::new(recorder.clone()));
        let mut terminal = Terminal::new(backend).unwrap();
        terminal
            .resize(ratatui::layout::Rect::new(0, 0, 20, 2))
            .unwrap();
        let mut draw = |text: &str| {
            let before = recorder.len();
            terminal
                .draw(|frame| frame.render_widget(Line::raw(text), frame.area()))
                .unwrap();
            recorder.len() - before
        };
        assert!(draw("installing") > 0);
        assert_eq!(draw("installing"), 0, "a still frame was sent");
        assert_eq!(draw("installing"), 0, "a still frame was sent");
        assert!(draw("installed!") > 0, "a change was not sent");
    }
}
