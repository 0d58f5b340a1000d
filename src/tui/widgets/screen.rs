//! The guest's VGA screen drawn with half-block cells: each terminal cell shows two pixels,
//! the upper as the foreground of `▀`, the lower as its background.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::widgets::Widget;

use crate::engine::guest::screen::Picture;

/// Colours of each cell (upper, lower) for a picture scaled to `cols`×`rows` cells.
pub fn half_blocks(picture: &Picture, cols: usize, rows: usize) -> Vec<Vec<[(u8, u8, u8); 2]>> {
    let pixel_rows = rows * 2;
    let (w, h) = (picture.width, picture.height);
    (0..rows)
        .map(|row| {
            (0..cols)
                .map(|col| {
                    let x0 = col * w / cols;
                    let x1 = (col + 1) * w / cols;
                    let half = |r: usize| {
                        let y0 = r * h / pixel_rows;
                        let y1 = (r + 1) * h / pixel_rows;
                        picture.sample(x0, y0, x1, y1)
                    };
                    [half(row * 2), half(row * 2 + 1)]
                })
                .collect()
        })
        .collect()
}

/// A ratatui widget that draws a picture into whatever area it is given.
pub struct ScreenView<'a>(pub &'a Picture);

impl Widget for ScreenView<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.is_empty() || self.0.width == 0 || self.0.height == 0 {
            return;
        }
        let cells = half_blocks(self.0, area.width as usize, area.height as usize);
        for (dy, row) in cells.iter().enumerate() {
            for (dx, [upper, lower]) in row.iter().enumerate() {
                let cell = &mut buf[(area.x + dx as u16, area.y + dy as u16)];
                cell.set_symbol("▀");
                cell.set_style(
                    Style::default()
                        .fg(Color::Rgb(upper.0, upper.1, upper.2))
                        .bg(Color::Rgb(lower.0, lower.1, lower.2)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::guest::screen::parse_ppm;

    /// A 8×8 test card: white text-like bar on black in the top-left quarter, red bottom half.
    fn card() -> Picture {
        let mut bytes = b"P6\n8 8 255\n".to_vec();
        for y in 0..8 {
            for x in 0..8 {
                let pixel = if y >= 4 {
                    [255, 0, 0]
                } else if x < 4 && y < 2 {
                    [255, 255, 255]
                } else {
                    [0, 0, 0]
                };
                bytes.extend(pixel);
            }
        }
        parse_ppm(&bytes).unwrap()
    }

    #[test]
    fn cells_carry_upper_and_lower_pixels() {
        let cells = half_blocks(&card(), 2, 2);
        assert_eq!(cells[0][0], [(255, 255, 255), (0, 0, 0)]);
        assert_eq!(cells[0][1], [(0, 0, 0), (0, 0, 0)]);
        assert_eq!(cells[1][0], [(255, 0, 0), (255, 0, 0)]);
    }

    #[test]
    fn rendered_screen_snapshot() {
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 2));
        ScreenView(&card()).render(buf.area, &mut buf);
        let described: Vec<String> = (0..2)
            .map(|y| {
                (0..4)
                    .map(|x| {
                        let cell = &buf[(x, y)];
                        format!("{}{:?}/{:?}", cell.symbol(), cell.fg, cell.bg)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        insta::assert_snapshot!(described.join("\n"));
    }
}
