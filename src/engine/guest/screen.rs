//! The guest's VGA screen as QMP `screendump` writes it (binary PPM), ready to be drawn.

/// An RGB picture, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    /// The colour at (x, y); callers stay inside the picture.
    pub fn pixel(&self, x: usize, y: usize) -> (u8, u8, u8) {
        let i = (y * self.width + x) * 3;
        (self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
    }

    /// Whether anything but one flat colour is on screen (a booted guest vs. a blank VGA).
    pub fn is_blank(&self) -> bool {
        self.rgb
            .chunks_exact(3)
            .all(|p| p == &self.rgb[..3.min(self.rgb.len())])
    }

    /// Average colour of the source block that one output cell covers, so downscaling keeps
    /// thin text strokes visible as shades instead of dropping them.
    pub fn sample(&self, x0: usize, y0: usize, x1: usize, y1: usize) -> (u8, u8, u8) {
        let (x1, y1) = (x1.clamp(x0 + 1, self.width), y1.clamp(y0 + 1, self.height));
        let (mut r, mut g, mut b, mut n) = (0u32, 0u32, 0u32, 0u32);
        for y in y0..y1 {
            for x in x0..x1 {
                let (pr, pg, pb) = self.pixel(x, y);
                r += pr as u32;
                g += pg as u32;
                b += pb as u32;
                n += 1;
            }
        }
        let n = n.max(1);
        ((r / n) as u8, (g / n) as u8, (b / n) as u8)
    }
}

/// Save `picture` as `NAME.screen-N.png` beside `image` (the first N not taken, so nothing
/// is overwritten); the path written.
pub fn save_png(picture: &Picture, image: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let stem = image.file_stem().unwrap_or_default().to_string_lossy();
    let dir = image.parent().unwrap_or(std::path::Path::new("."));
    let rgb = image::RgbImage::from_raw(
        picture.width as u32,
        picture.height as u32,
        picture.rgb.clone(),
    )
    .ok_or_else(|| std::io::Error::other("the picture's size does not match its pixels"))?;
    let mut png = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(std::io::Error::other)?;
    for n in 1.. {
        let path = dir.join(format!("{stem}.screen-{n}.png"));
        // create_new: a file of that name is never replaced, even by a racing kiln.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                use std::io::Write;
                file.write_all(&png)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some N is free")
}

/// Decode a binary PPM (`P6`, maxval 255), as QEMU's screendump writes.
pub fn parse_ppm(bytes: &[u8]) -> Result<Picture, String> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while fields.len() < 4 {
        // Skip whitespace and comments between header fields.
        while pos < bytes.len() && (bytes[pos].is_ascii_whitespace() || bytes[pos] == b'#') {
            if bytes[pos] == b'#' {
                while pos < bytes.len() && bytes[pos] != b'\n' {
                    pos += 1;
                }
            } else {
                pos += 1;
            }
        }
        let start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if start == pos {
            return Err("truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..pos]).into_owned());
    }
    if fields[0] != "P6" {
        return Err(format!("not a binary PPM (magic {})", fields[0]));
    }
    let number = |s: &str| {
        s.parse::<usize>()
            .map_err(|_| format!("bad PPM number {s}"))
    };
    let (width, height, maxval) = (
        number(&fields[1])?,
        number(&fields[2])?,
        number(&fields[3])?,
    );
    if maxval != 255 {
        return Err(format!("unsupported PPM maxval {maxval}"));
    }
    // One whitespace byte ends the header; a header that ends the file has no pixels.
    let data = bytes.get(pos + 1..).unwrap_or_default();
    let needed = width
        .checked_mul(height)
        .and_then(|pixels| pixels.checked_mul(3))
        .ok_or_else(|| format!("PPM size {width}x{height} is not a screen"))?;
    if data.len() < needed {
        return Err(format!("PPM has {} of {needed} pixel bytes", data.len()));
    }
    Ok(Picture {
        width,
        height,
        rgb: data[..needed].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_picture_reads_back_the_same_and_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("ci.qcow2");
        let picture = Picture {
            width: 3,
            height: 2,
            rgb: (0..18).map(|i| i * 14).collect(),
        };
        let first = save_png(&picture, &image).unwrap();
        let second = save_png(&picture, &image).unwrap();
        assert_eq!(first, dir.path().join("ci.screen-1.png"));
        assert_eq!(second, dir.path().join("ci.screen-2.png"));
        let back = image::open(&first).unwrap().to_rgb8();
        assert_eq!((back.width(), back.height()), (3, 2));
        assert_eq!(back.into_raw(), picture.rgb);
    }

    #[test]
    fn damaged_ppm_headers_are_errors_not_panics() {
        for bad in [
            &b"P6 2 2 255"[..],
            b"P6 99999999999 99999999999 255\n",
            b"P6 18446744073709551615 2 255\n\0\0\0",
            b"P6",
            b"",
        ] {
            assert!(
                parse_ppm(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn decodes_qemu_style_ppm() {
        let mut bytes = b"P6\n2 2 255\n".to_vec();
        bytes.extend([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]);
        let picture = parse_ppm(&bytes).unwrap();
        assert_eq!((picture.width, picture.height), (2, 2));
        assert_eq!(picture.pixel(1, 0), (0, 255, 0));
        assert_eq!(picture.pixel(1, 1), (255, 255, 255));
        assert!(!picture.is_blank());
        assert_eq!(picture.sample(0, 0, 2, 1), (127, 127, 0));
    }

    #[test]
    fn rejects_other_formats_and_truncation() {
        assert!(parse_ppm(b"P3\n1 1 255\n0 0 0").is_err());
        assert!(parse_ppm(b"P6\n2 2 255\n\x00\x00").is_err());
        assert!(parse_ppm(b"P6\n# comment\n1 1 255\n\x01\x02\x03").is_ok());
    }
}
