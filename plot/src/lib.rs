//! `riffle-plot`: the pixels under Riffle's report plots — an RGB image that fills rectangles,
//! draws segments and saves itself as PNG.
//!
//! What it is: the one drawing surface `riffle-bench` (timelines) and `riffle-jepsen`
//! (operations and fault windows) share, so each keeps only what it plots.
//! What it is not: a charting library — no axes, text or scales; callers map their data to
//! pixels.
//!
//! Invariants: drawing outside the image is clipped, never a panic; `(0, 0)` is the top left.

use std::path::{Path, PathBuf};

/// A colour as red, green, blue.
pub type Rgb = [u8; 3];

/// Why an image could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("creating {path}: {source}")]
    Create { path: PathBuf, source: std::io::Error },
    #[error("writing {path}: {source}")]
    Encode { path: PathBuf, source: png::EncodingError },
}

/// An RGB image being drawn.
pub struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Image {
    /// A `width` × `height` image filled with `background`.
    pub fn new(width: u32, height: u32, background: Rgb) -> Image {
        Image { width, height, pixels: background.repeat(width as usize * height as usize) }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Sets one pixel; outside the image, nothing.
    pub fn set(&mut self, x: u32, y: u32, color: Rgb) {
        if x < self.width && y < self.height {
            let at = (y as usize * self.width as usize + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    /// Fills the rectangle between two corners, both included, in any order.
    pub fn fill(&mut self, (x0, y0): (u32, u32), (x1, y1): (u32, u32), color: Rgb) {
        let (right, bottom) =
            (x0.max(x1).min(self.width.saturating_sub(1)), y0.max(y1).min(self.height.saturating_sub(1)));
        for y in y0.min(y1)..=bottom {
            for x in x0.min(x1)..=right {
                self.set(x, y, color);
            }
        }
    }

    /// A segment two pixels thick from one point to the other.
    pub fn segment(&mut self, from: (u32, u32), to: (u32, u32), color: Rgb) {
        let steps = from.0.abs_diff(to.0).max(from.1.abs_diff(to.1)).max(1);
        for step in 0..=steps {
            let along = f64::from(step) / f64::from(steps);
            let x = (f64::from(from.0) + (f64::from(to.0) - f64::from(from.0)) * along) as u32;
            let y = (f64::from(from.1) + (f64::from(to.1) - f64::from(from.1)) * along) as u32;
            self.fill((x, y), (x + 1, y + 1), color);
        }
    }

    /// Writes the image to `path` as an 8-bit RGB PNG.
    pub fn save(&self, path: &Path) -> Result<(), PlotError> {
        let file = std::fs::File::create(path).map_err(|source| PlotError::Create { path: path.into(), source })?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let encode = |source| PlotError::Encode { path: path.into(), source };
        let mut writer = encoder.write_header().map_err(encode)?;
        writer.write_image_data(&self.pixels).map_err(encode)?;
        writer.finish().map_err(encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: Rgb = [255, 255, 255];
    const RED: Rgb = [255, 0, 0];

    fn pixel(image: &Image, x: u32, y: u32) -> Rgb {
        let at = (y as usize * image.width as usize + x as usize) * 3;
        [image.pixels[at], image.pixels[at + 1], image.pixels[at + 2]]
    }

    #[test]
    fn drawing_is_clipped_to_the_image() {
        let mut image = Image::new(10, 5, WHITE);
        image.fill((8, 3), (20, 20), RED);
        image.set(10, 0, RED);
        image.segment((0, 0), (30, 30), RED);
        assert_eq!(pixel(&image, 9, 4), RED);
        assert_eq!(pixel(&image, 7, 2), WHITE);
        assert_eq!(pixel(&image, 0, 0), RED);
    }

    #[test]
    fn images_are_saved_as_png() {
        let directory = tempfile::tempdir().expect("a scratch directory");
        let path = directory.path().join("image.png");
        let mut image = Image::new(4, 3, WHITE);
        image.fill((0, 0), (1, 1), RED);
        image.save(&path).expect("saved");
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(image.save(&directory.path().join("missing").join("image.png")).is_err());
    }
}
