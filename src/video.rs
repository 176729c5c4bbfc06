//! Episodes as animated GIFs (an agent job's `record = N`): the game screen, the 84x84 frame
//! the network saw after the attack, and the perturbation amplified to be visible, side by
//! side, with the score, the action and the step.
//!
//! One global palette holds ALE's 128 NTSC colours and 128 grays, so the game screen is
//! exact and nothing is quantised per frame, and each frame stores only the rectangle that
//! changed since the one before. A video is written to `<name>.tmp` and renamed when the
//! episode ends, so a killed cell never leaves half a GIF under the final name.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::backend::DrawingBackend;
use plotters::prelude::*;

use crate::env::palette::NTSC_RGB;

const MARGIN: usize = 8;
const SCREEN_W: usize = 160;
const SCREEN_H: usize = 210;
/// Side of the network's frames.
pub const SIDE: usize = 84;
const ZOOM: usize = 2;
/// Side of the network-input and perturbation panels (the 84x84 frames, twice enlarged).
pub const PANEL: usize = SIDE * ZOOM;
const TITLE_H: usize = 20;
const LABEL_H: usize = 18;
const INFO_H: usize = 22;
/// Top row of the three panels.
pub const TOP: usize = MARGIN + TITLE_H + LABEL_H;
const OBS_X: usize = 2 * MARGIN + SCREEN_W;
/// Left column of the perturbation panel.
pub const PERT_X: usize = OBS_X + PANEL + MARGIN;
/// Width of a video frame in pixels.
pub const WIDTH: usize = PERT_X + PANEL + MARGIN;
/// Height of a video frame in pixels.
pub const HEIGHT: usize = TOP + SCREEN_H + INFO_H + MARGIN;
/// GIF delay of one agent step, in hundredths of a second: 4 emulator frames at 60 Hz.
pub const STEP_DELAY: u16 = 7;
/// How long the last frame stays, in hundredths of a second.
const END_DELAY: u16 = 300;
/// Palette index of the first gray: index `GRAYS + k` is gray level `k * 255 / 127`.
pub const GRAYS: u8 = 128;
/// Palette index of the perturbation panel where the network saw the clean pixel.
pub const NO_CHANGE: u8 = GRAYS + 64;

/// The global palette: NTSC colours 0..127, then 128 grays from black to white.
fn palette() -> Vec<u8> {
    let mut p = Vec::with_capacity(256 * 3);
    for c in NTSC_RGB {
        p.extend_from_slice(&[(c >> 16) as u8, (c >> 8) as u8, c as u8]);
    }
    for k in 0..128u32 {
        let v = ((k * 255 + 63) / 127) as u8;
        p.extend_from_slice(&[v, v, v]);
    }
    p
}

/// The palette index nearest to gray value `v`.
fn gray(v: u8) -> u8 {
    GRAYS + v / 2
}

/// What one agent step shows.
pub struct Frame<'a> {
    /// The game screen after the step, ALE palette indices (`[height * 160]`; the video
    /// shows its top 210 rows, all of the screen for every game but the few ALE renders
    /// taller).
    pub screen: &'a [u8],
    /// The newest frame of the clean observation the step's action was chosen on
    /// (`[84 * 84]`).
    pub clean: &'a [u8],
    /// The same frame after the attack, as the network saw it (`[84 * 84]`, pixel values).
    pub seen: &'a [f32],
    /// The episode's score so far.
    pub score: f64,
    /// The action taken.
    pub action: &'a str,
    /// Agent steps so far, this one included.
    pub step: u64,
}

/// One episode's GIF, written as it is played.
pub struct EpisodeVideo {
    path: PathBuf,
    tmp: PathBuf,
    encoder: Option<gif::Encoder<BufWriter<File>>>,
    /// Title and panel labels, drawn once.
    backdrop: Vec<u8>,
    canvas: Vec<u8>,
    previous: Vec<u8>,
    /// The last frame, held back so the final one can stay longer: (left, top, width,
    /// height, indices).
    pending: Option<(usize, usize, usize, usize, Vec<u8>)>,
    /// Perturbation pixel value per unit of difference.
    amplify: f32,
    finished: bool,
}

impl EpisodeVideo {
    /// Starts the video that [`EpisodeVideo::finish`] writes to `path`; `title` heads every
    /// frame and `lambda` (pixel units) sets the amplification of the perturbation panel,
    /// so that +-lambda spans black to white.
    pub fn create(path: &Path, title: &str, lambda: f64) -> Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut encoder = gif::Encoder::new(
            BufWriter::new(file),
            WIDTH as u16,
            HEIGHT as u16,
            &palette(),
        )
        .with_context(|| format!("writing {}", tmp.display()))?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .with_context(|| format!("writing {}", tmp.display()))?;
        let amplify = if lambda > 0.0 {
            (127.5 / lambda) as f32
        } else {
            0.0
        };
        let mut backdrop = vec![gray(0); WIDTH * HEIGHT];
        draw_text(
            &mut backdrop,
            MARGIN,
            MARGIN,
            WIDTH - MARGIN,
            TITLE_H,
            title,
            15.0,
        )?;
        let labels = [
            (MARGIN, SCREEN_W, "game".to_owned()),
            (OBS_X, PANEL, "network input".to_owned()),
            (
                PERT_X,
                PANEL,
                if lambda > 0.0 {
                    format!("perturbation x{:.0}", amplify)
                } else {
                    "no perturbation".to_owned()
                },
            ),
        ];
        for (x, w, label) in labels {
            draw_text(&mut backdrop, x, MARGIN + TITLE_H, w, LABEL_H, &label, 13.0)?;
        }
        Ok(Self {
            path: path.to_owned(),
            tmp,
            encoder: Some(encoder),
            canvas: backdrop.clone(),
            previous: Vec::new(),
            backdrop,
            pending: None,
            amplify,
            finished: false,
        })
    }

    /// Adds one agent step.
    ///
    /// # Panics
    /// If a slice of `frame` has another length than its documented shape.
    pub fn push(&mut self, frame: &Frame) -> Result<()> {
        assert_eq!(frame.screen.len(), SCREEN_W * SCREEN_H, "screen size");
        assert_eq!(frame.clean.len(), SIDE * SIDE, "clean frame size");
        assert_eq!(frame.seen.len(), SIDE * SIDE, "seen frame size");
        self.canvas.copy_from_slice(&self.backdrop);
        for y in 0..SCREEN_H {
            let row = &frame.screen[y * SCREEN_W..(y + 1) * SCREEN_W];
            let at = (TOP + y) * WIDTH + MARGIN;
            for (o, &i) in self.canvas[at..at + SCREEN_W].iter_mut().zip(row) {
                *o = i >> 1;
            }
        }
        for y in 0..SIDE {
            for x in 0..SIDE {
                let seen = frame.seen[y * SIDE + x];
                let shown = gray(seen.round().clamp(0.0, 255.0) as u8);
                let delta = (seen - frame.clean[y * SIDE + x] as f32) * self.amplify;
                let pert = gray((127.5 + delta).round().clamp(0.0, 255.0) as u8);
                for dy in 0..ZOOM {
                    let row = (TOP + y * ZOOM + dy) * WIDTH;
                    for dx in 0..ZOOM {
                        self.canvas[row + OBS_X + x * ZOOM + dx] = shown;
                        self.canvas[row + PERT_X + x * ZOOM + dx] = pert;
                    }
                }
            }
        }
        let info = format!(
            "score {}    action {}    step {}",
            frame.score, frame.action, frame.step
        );
        draw_text(
            &mut self.canvas,
            MARGIN,
            TOP + SCREEN_H + 4,
            WIDTH - 2 * MARGIN,
            INFO_H - 4,
            &info,
            14.0,
        )?;
        let changed = if self.previous.is_empty() {
            self.previous = self.canvas.clone();
            (0, 0, WIDTH, HEIGHT)
        } else {
            let rect = changed_rect(&self.previous, &self.canvas);
            self.previous.copy_from_slice(&self.canvas);
            rect
        };
        let (left, top, width, height) = changed;
        let mut indices = Vec::with_capacity(width * height);
        for y in top..top + height {
            indices.extend_from_slice(&self.canvas[y * WIDTH + left..y * WIDTH + left + width]);
        }
        if let Some(pending) = self.pending.replace((left, top, width, height, indices)) {
            self.write(pending, STEP_DELAY)?;
        }
        Ok(())
    }

    fn write(&mut self, rect: (usize, usize, usize, usize, Vec<u8>), delay: u16) -> Result<()> {
        let (left, top, width, height, indices) = rect;
        let frame = gif::Frame {
            delay,
            dispose: gif::DisposalMethod::Keep,
            left: left as u16,
            top: top as u16,
            width: width as u16,
            height: height as u16,
            buffer: Cow::Owned(indices),
            ..gif::Frame::default()
        };
        let tmp = &self.tmp;
        self.encoder
            .as_mut()
            .ok_or_else(|| anyhow!("{} is already finished", tmp.display()))?
            .write_frame(&frame)
            .with_context(|| format!("writing {}", tmp.display()))
    }

    /// Writes the last frame (held for 3 s), closes the GIF and renames it to its path.
    pub fn finish(mut self) -> Result<()> {
        if let Some(pending) = self.pending.take() {
            self.write(pending, END_DELAY)?;
        }
        let encoder = self.encoder.take().expect("finished once");
        let tmp = self.tmp.clone();
        let context = || format!("writing {}", tmp.display());
        let mut writer = encoder.into_inner().with_context(context)?;
        writer.flush().with_context(context)?;
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(context)?;
        file.sync_all().with_context(context)?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!("renaming {} to {}", self.tmp.display(), self.path.display())
        })?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for EpisodeVideo {
    /// An unfinished video (its episode did not end) leaves no file behind.
    fn drop(&mut self) {
        if !self.finished {
            self.encoder.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The smallest rectangle (left, top, width, height) holding every pixel that differs
/// between two frames; one pixel when none does (a GIF frame cannot be empty).
fn changed_rect(a: &[u8], b: &[u8]) -> (usize, usize, usize, usize) {
    let rows: Vec<usize> = (0..HEIGHT)
        .filter(|&y| a[y * WIDTH..(y + 1) * WIDTH] != b[y * WIDTH..(y + 1) * WIDTH])
        .collect();
    let (Some(&top), Some(&bottom)) = (rows.first(), rows.last()) else {
        return (0, 0, 1, 1);
    };
    let mut left = WIDTH;
    let mut right = 0;
    for &y in &rows {
        let (ra, rb) = (
            &a[y * WIDTH..(y + 1) * WIDTH],
            &b[y * WIDTH..(y + 1) * WIDTH],
        );
        if let Some(l) = (0..WIDTH).find(|&x| ra[x] != rb[x]) {
            left = left.min(l);
        }
        if let Some(r) = (0..WIDTH).rev().find(|&x| ra[x] != rb[x]) {
            right = right.max(r);
        }
    }
    (left, top, right + 1 - left, bottom + 1 - top)
}

/// Draws `text` in white on black into the `w` x `h` box at (`x`, `y`) of an index canvas.
fn draw_text(
    canvas: &mut [u8],
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    text: &str,
    size: f64,
) -> Result<()> {
    crate::plot::register_font()?;
    let mut rgb = vec![0u8; w * h * 3];
    {
        let area = BitMapBackend::with_buffer(&mut rgb, (w as u32, h as u32)).into_drawing_area();
        let style = ("sans-serif", size).into_font().color(&WHITE);
        area.draw(&Text::new(text, (0, 0), style))
            .map_err(|e| anyhow!("drawing the text {text:?}: {e}"))?;
        area.present()
            .map_err(|e| anyhow!("drawing the text {text:?}: {e}"))?;
    }
    for row in 0..h {
        for col in 0..w {
            let v = rgb[(row * w + col) * 3];
            canvas[(y + row) * WIDTH + x + col] = gray(v);
        }
    }
    Ok(())
}

/// A decoded GIF.
pub struct Decoded {
    /// Every frame composited onto the canvas, as palette indices (`[height * width]`).
    pub frames: Vec<Vec<u8>>,
    /// The global palette (RGB triples).
    pub palette: Vec<u8>,
    /// Canvas width in pixels.
    pub width: usize,
    /// Canvas height in pixels.
    pub height: usize,
}

/// Every frame of the GIF at `path`, composited onto its canvas (frames that keep what is
/// under them, as [`EpisodeVideo`] writes them).
pub fn decode(path: &Path) -> Result<Decoded> {
    let context = || format!("reading {}", path.display());
    let file = File::open(path).with_context(context)?;
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(file).with_context(context)?;
    let (w, h) = (decoder.width() as usize, decoder.height() as usize);
    let palette = decoder
        .global_palette()
        .ok_or_else(|| anyhow!("{} has no global palette", path.display()))?
        .to_vec();
    let mut canvas = vec![0u8; w * h];
    let mut frames = Vec::new();
    while let Some(frame) = decoder.read_next_frame().with_context(context)? {
        let (left, top, fw) = (
            frame.left as usize,
            frame.top as usize,
            frame.width as usize,
        );
        if left + fw > w || top + frame.height as usize > h {
            bail!("{}: a frame lies outside the canvas", path.display());
        }
        for (y, row) in frame.buffer.chunks(fw.max(1)).enumerate() {
            let at = (top + y) * w + left;
            canvas[at..at + row.len()].copy_from_slice(row);
        }
        frames.push(canvas.clone());
    }
    Ok(Decoded {
        frames,
        palette,
        width: w,
        height: h,
    })
}

/// Writes the middle frame of the video at `gif` as a PNG at `png`.
pub fn still(gif: &Path, png: &Path) -> Result<()> {
    let d = decode(gif)?;
    let Some(frame) = d.frames.get(d.frames.len() / 2) else {
        bail!("{} has no frame", gif.display());
    };
    let mut rgb = Vec::with_capacity(frame.len() * 3);
    for &i in frame {
        let c = i as usize * 3;
        rgb.extend_from_slice(d.palette.get(c..c + 3).unwrap_or(&[0, 0, 0]));
    }
    let (w, h) = (d.width as u32, d.height as u32);
    let mut backend = BitMapBackend::new(png, (w, h));
    backend
        .blit_bitmap((0, 0), (w, h), &rgb)
        .and_then(|_| backend.present())
        .map_err(|e| anyhow!("writing {}: {e}", png.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changed_rectangle_holds_every_changed_pixel_and_no_more_rows_or_columns() {
        let a = vec![0u8; WIDTH * HEIGHT];
        let mut b = a.clone();
        assert_eq!(changed_rect(&a, &b), (0, 0, 1, 1));
        b[10 * WIDTH + 30] = 5;
        b[20 * WIDTH + 7] = 5;
        assert_eq!(changed_rect(&a, &b), (7, 10, 24, 11));
    }

    #[test]
    fn the_palette_holds_the_ntsc_colours_then_grays_from_black_to_white() {
        let p = palette();
        assert_eq!(p.len(), 768);
        let c = NTSC_RGB[37];
        assert_eq!(
            &p[37 * 3..38 * 3],
            &[(c >> 16) as u8, (c >> 8) as u8, c as u8]
        );
        assert_eq!(&p[128 * 3..129 * 3], &[0, 0, 0]);
        assert_eq!(&p[255 * 3..256 * 3], &[255, 255, 255]);
        assert_eq!(gray(255), 255);
        assert_eq!(gray(0), 128);
        assert_eq!(gray(128), NO_CHANGE, "127.5 rounds to 128");
    }
}
