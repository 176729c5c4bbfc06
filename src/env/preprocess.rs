//! Atari frame preprocessing, all in Rust: max-pool of the last two frames, grayscale,
//! area resize to 84x84 and the 4-frame stack (docs/ARCHITECTURE.md section 4; Mnih et al. 2015).
//!
//! The functions work on plain byte slices so that tests can feed constructed frames.

/// Height of the Atari 2600 screen as ALE renders it.
pub const SCREEN_HEIGHT: usize = 210;
/// Width of the Atari 2600 screen as ALE renders it.
pub const SCREEN_WIDTH: usize = 160;
/// Side of the square observation frame the networks see.
pub const FRAME_SIDE: usize = 84;
/// Number of frames in an observation stack.
pub const STACK_DEPTH: usize = 4;

/// ITU-R BT.601 luma `0.299 R + 0.587 G + 0.114 B`, rounded, in 14-bit fixed point
/// (the weights OpenCV's RGB-to-gray conversion uses): `(4899 R + 9617 G + 1868 B + 8192) >> 14`.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((4899 * r as u32 + 9617 * g as u32 + 1868 * b as u32 + 8192) >> 14) as u8
}

/// Luma of a packed `0xRRGGBB` colour.
#[inline]
fn luma_packed(rgb: u32) -> u8 {
    luma((rgb >> 16) as u8, (rgb >> 8) as u8, rgb as u8)
}

/// Channel-wise maximum of two packed `0xRRGGBB` colours.
#[inline]
fn max_packed(a: u32, b: u32) -> u32 {
    let r = ((a >> 16) & 0xff).max((b >> 16) & 0xff);
    let g = ((a >> 8) & 0xff).max((b >> 8) & 0xff);
    let bl = (a & 0xff).max(b & 0xff);
    (r << 16) | (g << 8) | bl
}

/// Max-pools two RGB frames channel by channel, then converts to grayscale.
///
/// # Shapes
/// `a`, `b`: `[h * w * 3]` interleaved RGB; `out`: `[h * w]`.
pub fn max_pool_gray_rgb(a: &[u8], b: &[u8], out: &mut [u8]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), out.len() * 3);
    for ((pa, pb), o) in a.chunks_exact(3).zip(b.chunks_exact(3)).zip(out.iter_mut()) {
        *o = luma(pa[0].max(pb[0]), pa[1].max(pb[1]), pa[2].max(pb[2]));
    }
}

/// A colour palette turned into lookup tables for the index-screen fast path.
#[derive(Clone)]
pub struct PaletteLut {
    /// Packed colour per raw palette index (odd indices repeat the even ones).
    rgb: [u32; 256],
    /// Luma per raw palette index.
    gray: [u8; 256],
}

impl PaletteLut {
    /// Builds the tables from packed `0xRRGGBB` colours indexed by `palette_index >> 1`.
    pub fn new(colours: &[u32; 128]) -> Self {
        Self::from_indexed(&std::array::from_fn(|i| colours[i >> 1]))
    }

    /// Builds the tables from packed `0xRRGGBB` colours of every raw palette index (what ALE
    /// reports for the loaded game's TV format).
    pub fn from_indexed(rgb: &[u32; 256]) -> Self {
        Self {
            rgb: *rgb,
            gray: std::array::from_fn(|i| luma_packed(rgb[i])),
        }
    }

    /// The packed colour of an ALE palette index.
    #[inline]
    pub fn rgb(&self, index: u8) -> u32 {
        self.rgb[index as usize]
    }

    /// Same result as [`max_pool_gray_rgb`] on the RGB renderings of two index screens.
    ///
    /// # Shapes
    /// `a`, `b`, `out`: `[h * w]`.
    pub fn max_pool_gray(&self, a: &[u8], b: &[u8], out: &mut [u8]) {
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len(), out.len());
        let pixel = |ia: u8, ib: u8| {
            if ia == ib {
                self.gray[ia as usize]
            } else {
                luma_packed(max_packed(self.rgb[ia as usize], self.rgb[ib as usize]))
            }
        };
        let (ca, cb, co) = (
            a.chunks_exact(8),
            b.chunks_exact(8),
            out.chunks_exact_mut(8),
        );
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for ((xa, xb), xo) in ca.zip(cb).zip(co) {
            if xa == xb {
                // Most of the screen is the same in consecutive frames: plain lookups,
                // stored eight at a time.
                let g = |k: usize| self.gray[xa[k] as usize];
                let bytes = [g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7)];
                xo.copy_from_slice(&bytes);
            } else {
                for ((o, &ia), &ib) in xo.iter_mut().zip(xa).zip(xb) {
                    *o = pixel(ia, ib);
                }
            }
        }
        let tail = out.len() - ra.len();
        for ((o, &ia), &ib) in out[tail..].iter_mut().zip(ra).zip(rb) {
            *o = pixel(ia, ib);
        }
    }
}

/// The most input samples one output of an area resize can touch (scale factor <= 3).
const MAX_TAPS: usize = 4;

/// Area-weighted taps for resampling `n_in` samples to `n_out` (`n_out <= n_in <= 3 n_out`):
/// output `o` averages the input interval `[o * s, (o + 1) * s)` with `s = n_in / n_out`,
/// each input weighted by its overlap with that interval (OpenCV's INTER_AREA for
/// shrinking). Returns, per output, the first input index and [`MAX_TAPS`] weights (zero
/// padded; the padded indices stay inside the input).
fn area_taps(n_in: usize, n_out: usize) -> Vec<(usize, [f32; MAX_TAPS])> {
    assert!(
        n_out > 0 && n_out <= n_in && n_in <= 3 * n_out,
        "area resize shrinks by at most 3x"
    );
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let lo = o as f64 * scale;
            let hi = lo + scale;
            // Keep every tap inside the input, padding included.
            let start = (lo.floor() as usize).min(n_in.saturating_sub(MAX_TAPS));
            let mut weights = [0f32; MAX_TAPS];
            for (k, w) in weights.iter_mut().enumerate() {
                let i = (start + k) as f64;
                *w = ((hi.min(i + 1.0) - lo.max(i)).max(0.0) / scale) as f32;
            }
            (start, weights)
        })
        .collect()
}

/// Area resize of a grayscale image with precomputed separable taps.
#[derive(Clone, Debug)]
pub struct AreaResizer {
    in_h: usize,
    in_w: usize,
    rows: Vec<(usize, [f32; MAX_TAPS])>,
    cols: Vec<(usize, [f32; MAX_TAPS])>,
    /// Leading taps that carry weight, per axis (fixed by the sizes).
    row_taps: usize,
    col_taps: usize,
    scratch: Vec<f32>,
}

impl AreaResizer {
    /// A resizer from `in_h x in_w` to `out_h x out_w` (each side shrinks by 1x to 3x).
    pub fn new(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Self {
        assert!(
            in_h >= MAX_TAPS && in_w >= MAX_TAPS,
            "input smaller than the tap window"
        );
        let (rows, cols) = (area_taps(in_h, out_h), area_taps(in_w, out_w));
        Self {
            in_h,
            in_w,
            row_taps: taps_used(&rows),
            col_taps: taps_used(&cols),
            rows,
            cols,
            scratch: vec![0.0; out_h * in_w],
        }
    }

    /// The Atari resizer: 210x160 to 84x84.
    pub fn atari() -> Self {
        Self::new(SCREEN_HEIGHT, SCREEN_WIDTH, FRAME_SIDE, FRAME_SIDE)
    }

    /// Resizes `src` into `dst`, rounding to the nearest integer (halves up).
    ///
    /// # Shapes
    /// `src`: `[in_h * in_w]`; `dst`: `[out_h * out_w]`.
    pub fn resize(&mut self, src: &[u8], dst: &mut [u8]) {
        let (in_w, out_w) = (self.in_w, self.cols.len());
        assert_eq!(src.len(), self.in_h * in_w);
        assert_eq!(dst.len(), self.rows.len() * out_w);
        // Vertical pass first: whole rows at a time, which vectorises. [out_h, in_w]
        match self.row_taps {
            0..=3 => vertical::<3>(&self.rows, src, in_w, &mut self.scratch),
            _ => vertical::<MAX_TAPS>(&self.rows, src, in_w, &mut self.scratch),
        }
        // Horizontal pass: a fixed number of taps per output. [out_h, out_w]
        match self.col_taps {
            0..=3 => horizontal::<3>(&self.cols, &self.scratch, in_w, dst),
            _ => horizontal::<MAX_TAPS>(&self.cols, &self.scratch, in_w, dst),
        }
    }
}

/// How many leading taps carry weight in any output.
fn taps_used(taps: &[(usize, [f32; MAX_TAPS])]) -> usize {
    taps.iter()
        .map(|(_, w)| w.iter().rposition(|&x| x != 0.0).map_or(0, |i| i + 1))
        .max()
        .unwrap_or(0)
}

/// `acc[o] = sum_k w[o][k] * src[start[o] + k]` row-wise, with `N` taps.
fn vertical<const N: usize>(
    rows: &[(usize, [f32; MAX_TAPS])],
    src: &[u8],
    in_w: usize,
    acc: &mut [f32],
) {
    for (&(start, w), acc) in rows.iter().zip(acc.chunks_exact_mut(in_w)) {
        let row = |k: usize| &src[(start + k) * in_w..][..in_w];
        let (r0, r1, r2) = (row(0), row(1), row(2));
        if N == 3 {
            for (a, ((&p0, &p1), &p2)) in acc.iter_mut().zip(r0.iter().zip(r1).zip(r2)) {
                *a = w[0] * p0 as f32 + w[1] * p1 as f32 + w[2] * p2 as f32;
            }
        } else {
            let r3 = row(3);
            let rows = r0.iter().zip(r1).zip(r2).zip(r3);
            for (a, (((&p0, &p1), &p2), &p3)) in acc.iter_mut().zip(rows) {
                *a = w[0] * p0 as f32 + w[1] * p1 as f32 + w[2] * p2 as f32 + w[3] * p3 as f32;
            }
        }
    }
}

/// `dst[y][o] = round(sum_k w[o][k] * acc[y][start[o] + k])`, with `N` taps.
fn horizontal<const N: usize>(
    cols: &[(usize, [f32; MAX_TAPS])],
    acc: &[f32],
    in_w: usize,
    dst: &mut [u8],
) {
    for (acc, out_row) in acc.chunks_exact(in_w).zip(dst.chunks_exact_mut(cols.len())) {
        for (&(start, w), o) in cols.iter().zip(out_row.iter_mut()) {
            let p = &acc[start..start + MAX_TAPS];
            let mut v = w[0] * p[0] + w[1] * p[1] + w[2] * p[2];
            if N > 3 {
                v += w[3] * p[3];
            }
            // Round half up; `as` saturates to 0..=255. (f32::round is a libm call on
            // baseline x86-64 and would cost more than the whole pass.)
            *o = (v + 0.5) as u8;
        }
    }
}

/// The last [`STACK_DEPTH`] preprocessed frames, oldest first.
///
/// At the start of an episode the stack is all zeros and the first frame is pushed, as in
/// Dopamine's Atari runner: the agent never sees frames from the previous episode.
#[derive(Clone, Debug)]
pub struct FrameStack {
    frames: Vec<u8>,
    frame_len: usize,
    depth: usize,
    /// Slot of the oldest frame.
    head: usize,
}

impl FrameStack {
    /// An all-zero stack of `depth` frames of `frame_len` bytes.
    pub fn new(depth: usize, frame_len: usize) -> Self {
        Self {
            frames: vec![0; depth * frame_len],
            frame_len,
            depth,
            head: 0,
        }
    }

    /// Clears every frame to zero (the start of an episode).
    pub fn clear(&mut self) {
        self.frames.fill(0);
        self.head = 0;
    }

    /// Pushes the newest frame, dropping the oldest.
    pub fn push(&mut self, frame: &[u8]) {
        assert_eq!(frame.len(), self.frame_len);
        let slot = self.head;
        self.frames[slot * self.frame_len..][..self.frame_len].copy_from_slice(frame);
        self.head = (self.head + 1) % self.depth;
    }

    /// Writes the stack oldest first into `out` (`[depth * frame_len]`): the last frame of
    /// `out` is the newest.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.frames[self.head * self.frame_len..]);
        out.extend_from_slice(&self.frames[..self.head * self.frame_len]);
    }

    /// The stack oldest first, as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frames.len());
        self.write_to(&mut out);
        out
    }
}

/// Clips a reward to `[-1, 1]` (training only; Mnih et al. 2015).
#[inline]
pub fn clip_reward(r: f64) -> f64 {
    r.clamp(-1.0, 1.0)
}
