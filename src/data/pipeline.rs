//! Training batches of CIFAR-10 made on background threads: each epoch a seeded shuffle, each
//! image a 4-pixel zero-pad random crop and a random horizontal flip (He et al. 2016), sent
//! to the trainer over bounded crossbeam channels.
//!
//! Batch `k` of epoch `e` depends only on (seed, e, k): its images come from the epoch's
//! permutation and its augmentation from a generator seeded with (seed, e, k). Worker `w`
//! makes the batches `k` with `k % workers == w` and the consumer reads the workers in turn,
//! so the sequence of batches is the same for any number of workers, and a trainer resumed
//! at (epoch, batch) sees exactly the batches an uninterrupted one would.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{bounded, Receiver, Sender};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cifar::{CifarSplit, IMAGE_BYTES, SIDE};
use crate::seed::derive;

/// Zero padding of the random crop, pixels (He et al. 2016: 4).
pub const PAD: usize = 4;

/// Copies `src` (channel-major 3x32x32 bytes) into `out` as pixel values (0..255 floats),
/// cropped from the image zero-padded by [`PAD`] at offset (`dx`, `dy`) in `0..=2*PAD`, then
/// mirrored left-right when `flip`.
pub fn crop_flip(src: &[u8], dx: usize, dy: usize, flip: bool, out: &mut [f32]) {
    debug_assert!(dx <= 2 * PAD && dy <= 2 * PAD);
    for c in 0..3 {
        let plane = &src[c * SIDE * SIDE..(c + 1) * SIDE * SIDE];
        for y in 0..SIDE {
            // Row y of the crop is row y + dy - PAD of the image.
            let sy = (y + dy) as isize - PAD as isize;
            for x in 0..SIDE {
                let ox = if flip { SIDE - 1 - x } else { x };
                let sx = (ox + dx) as isize - PAD as isize;
                let inside = (0..SIDE as isize).contains(&sy) && (0..SIDE as isize).contains(&sx);
                out[c * SIDE * SIDE + y * SIDE + x] = if inside {
                    plane[sy as usize * SIDE + sx as usize] as f32
                } else {
                    0.0
                };
            }
        }
    }
}

/// One training batch.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainBatch {
    /// The epoch, from 0.
    pub epoch: u64,
    /// The batch within the epoch, from 0.
    pub index: u64,
    /// `[batch, 3, 32, 32]` pixel values 0..255, row-major.
    pub images: Vec<f32>,
    /// Labels 0..9.
    pub labels: Vec<i64>,
}

/// How batches are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Background threads (>= 1).
    pub workers: usize,
    /// Batches each worker may have ready before it waits.
    pub capacity: usize,
    /// Seed of shuffles and augmentation.
    pub seed: u64,
    /// Random crop and flip (off: the images as they are).
    pub augment: bool,
    /// Where the sequence starts: (epoch, batch).
    pub start: (u64, u64),
}

impl PipelineConfig {
    /// Whole batches per epoch of `n` images (the last partial batch is dropped).
    pub fn batches_per_epoch(&self, n: usize) -> u64 {
        (n / self.batch_size) as u64
    }
}

/// The epoch's order of the `n` images.
fn permutation(seed: u64, epoch: u64, n: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(derive(
        seed, "shuffle", epoch,
    )));
    order
}

/// Makes batch `index` of `epoch` from its epoch's `order`.
fn make_batch(
    data: &CifarSplit,
    cfg: &PipelineConfig,
    order: &[u32],
    epoch: u64,
    index: u64,
) -> TrainBatch {
    let b = cfg.batch_size;
    let mut rng = ChaCha8Rng::seed_from_u64(derive(derive(cfg.seed, "augment", epoch), "", index));
    let mut images = vec![0f32; b * IMAGE_BYTES];
    let mut labels = Vec::with_capacity(b);
    for (j, &i) in order[index as usize * b..(index as usize + 1) * b]
        .iter()
        .enumerate()
    {
        let out = &mut images[j * IMAGE_BYTES..(j + 1) * IMAGE_BYTES];
        let src = data.image(i as usize);
        if cfg.augment {
            let (dx, dy) = (rng.gen_range(0..=2 * PAD), rng.gen_range(0..=2 * PAD));
            crop_flip(src, dx, dy, rng.gen::<bool>(), out);
        } else {
            out.iter_mut().zip(src).for_each(|(o, &s)| *o = s as f32);
        }
        labels.push(data.labels[i as usize] as i64);
    }
    TrainBatch {
        epoch,
        index,
        images,
        labels,
    }
}

/// Batches made on background threads, in a fixed order; an endless iterator over epochs.
/// Dropping it stops the workers.
pub struct Pipeline {
    receivers: Vec<Receiver<TrainBatch>>,
    next: usize,
    handles: Vec<JoinHandle<()>>,
}

impl Pipeline {
    /// Starts `cfg.workers` threads making batches of `data` from `cfg.start` on.
    ///
    /// # Panics
    /// If `data` holds fewer images than one batch, or `workers` or `batch_size` is 0
    /// (configuration checks belong to the caller).
    pub fn start(data: Arc<CifarSplit>, cfg: PipelineConfig) -> Self {
        assert!(
            cfg.workers > 0 && cfg.batch_size > 0,
            "workers and batch size >= 1"
        );
        let per_epoch = cfg.batches_per_epoch(data.len());
        assert!(per_epoch > 0, "fewer images than one batch");
        let start = cfg.start.0 * per_epoch + cfg.start.1;
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        for w in 0..cfg.workers as u64 {
            let (tx, rx): (Sender<TrainBatch>, _) = bounded(cfg.capacity.max(1));
            receivers.push(rx);
            let data = Arc::clone(&data);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("cifar-batches-{w}"))
                    .spawn(move || {
                        let mut order: Option<(u64, Vec<u32>)> = None;
                        // Global batch numbers start, start + 1, ... are dealt out in turn.
                        let mut k = start + w;
                        loop {
                            let (epoch, index) = (k / per_epoch, k % per_epoch);
                            if order.as_ref().map(|o| o.0) != Some(epoch) {
                                order = Some((epoch, permutation(cfg.seed, epoch, data.len())));
                            }
                            let o = &order.as_ref().expect("set above").1;
                            let batch = make_batch(&data, &cfg, o, epoch, index);
                            if tx.send(batch).is_err() {
                                return; // the pipeline was dropped
                            }
                            k += cfg.workers as u64;
                        }
                    })
                    .expect("spawning a batch worker"),
            );
        }
        Pipeline {
            receivers,
            next: 0,
            handles,
        }
    }
}

impl Iterator for Pipeline {
    type Item = TrainBatch;

    fn next(&mut self) -> Option<TrainBatch> {
        let batch = self.receivers[self.next].recv().ok()?;
        self.next = (self.next + 1) % self.receivers.len();
        Some(batch)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        // Closing the channels makes every worker's next send fail.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
