//! Uniform experience replay that stores every frame once.
//!
//! An Atari observation is a stack of the last 4 frames, so storing `(s, a, r, s')` whole
//! would keep each 84x84 frame eight times. Here each environment slot writes a stream of
//! *slots*: slot `k` holds the newest frame of observation `o_k` and, once the agent acted
//! from `o_k`, the action, the reward and whether that step terminated the episode. Stacks are
//! rebuilt when a batch is sampled:
//!
//! ```text
//! s  = frames k-3 .. k      (oldest first)
//! s' = frames k-2 .. k+1
//! ```
//!
//! CRUCIAL: a stack never reaches across an episode boundary. Frames before the episode's
//! first slot are zeros, exactly as [`crate::env::preprocess::FrameStack`] fills them at a
//! reset, so a rebuilt stack equals the observation the agent saw. The last observation of an
//! episode gets a slot of its own (never acted from), so a truncated episode still has the
//! `s'` to bootstrap from.
//!
//! Memory per slot: one frame plus 6 bytes (action `u8`, reward `f32`, flags `u8`): 7062
//! bytes for an 84x84 frame, 1.0009x the frame, plus one extra slot per episode.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use rand::Rng;

/// Slot flag: the slot holds an episode's first observation.
const FIRST: u8 = 1;
/// Slot flag: the agent acted from this slot (action, reward and TERMINATED are set).
const ACTED: u8 = 2;
/// Slot flag: the step from this slot ended the episode by the task's rules.
const TERMINATED: u8 = 4;

/// Errors from building a replay buffer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReplayError {
    /// The capacity cannot hold one transition per stream.
    #[error("a replay capacity of {capacity} cannot serve {streams} environment streams of {stack}-frame stacks; allowed: at least {min}")]
    TooSmall {
        /// The capacity asked for.
        capacity: usize,
        /// Environment streams.
        streams: usize,
        /// Frames per stack.
        stack: usize,
        /// The smallest capacity allowed.
        min: usize,
    },
}

/// One environment's ring of slots.
#[derive(Debug)]
struct Stream<T> {
    frames: Vec<T>,
    actions: Vec<u8>,
    rewards: Vec<f32>,
    flags: Vec<u8>,
    /// Slots ever written; slot `seq` lives at `seq % capacity`.
    written: u64,
}

/// A sampled batch, stacks rebuilt, oldest frame first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch<T> {
    /// `[batch, stack * frame_len]`.
    pub states: Vec<T>,
    /// The actions taken, `[batch]`.
    pub actions: Vec<i64>,
    /// The (clipped) rewards, `[batch]`.
    pub rewards: Vec<f32>,
    /// `[batch, stack * frame_len]`.
    pub next_states: Vec<T>,
    /// 1 where the step terminated the episode (no bootstrap), else 0. Truncated steps are
    /// 0: the learner bootstraps from `next_states`.
    pub dones: Vec<f32>,
}

impl<T> Batch<T> {
    /// Transitions in the batch.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether the batch holds no transition.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// A uniform replay buffer over several environment streams.
#[derive(Debug)]
pub struct Replay<T> {
    frame_len: usize,
    stack: usize,
    stream_capacity: usize,
    streams: Vec<Stream<T>>,
}

impl<T: Copy + Default> Replay<T> {
    /// A buffer of `capacity` slots in all, split evenly over `streams` environment streams,
    /// for frames of `frame_len` values stacked `stack` deep. Memory grows with use.
    pub fn new(
        capacity: usize,
        streams: usize,
        frame_len: usize,
        stack: usize,
    ) -> Result<Self, ReplayError> {
        let min = streams * (stack + 2);
        if streams == 0 || capacity < min {
            return Err(ReplayError::TooSmall {
                capacity,
                streams,
                stack,
                min,
            });
        }
        let stream_capacity = capacity / streams;
        let streams = (0..streams)
            .map(|_| Stream {
                frames: Vec::new(),
                actions: Vec::new(),
                rewards: Vec::new(),
                flags: Vec::new(),
                written: 0,
            })
            .collect();
        Ok(Self {
            frame_len,
            stack,
            stream_capacity,
            streams,
        })
    }

    /// Values per frame.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Frames per stacked observation.
    pub fn stack(&self) -> usize {
        self.stack
    }

    fn push_slot(&mut self, stream: usize, frame: &[T], flags: u8) {
        assert_eq!(frame.len(), self.frame_len, "frame length");
        let cap = self.stream_capacity;
        let len = self.frame_len;
        let s = &mut self.streams[stream];
        let pos = (s.written % cap as u64) as usize;
        if s.flags.len() < cap {
            // Grow exactly, never past the capacity (doubling could reserve twice the
            // memory a million-frame buffer needs).
            if s.frames.capacity() == s.frames.len() {
                let slots = (s.flags.len().max(1024)).min(cap - s.flags.len());
                s.frames.reserve_exact(slots * len);
            }
            s.frames.extend_from_slice(frame);
            s.actions.push(0);
            s.rewards.push(0.0);
            s.flags.push(flags);
        } else {
            s.frames[pos * len..(pos + 1) * len].copy_from_slice(frame);
            s.actions[pos] = 0;
            s.rewards[pos] = 0.0;
            s.flags[pos] = flags;
        }
        s.written += 1;
    }

    /// Starts an episode in `stream` with its first observation's newest frame.
    pub fn begin_episode(&mut self, stream: usize, frame: &[T]) {
        self.push_slot(stream, frame, FIRST);
    }

    /// Records that the agent took `action` from the stream's latest observation, got
    /// `reward`, and saw `next_frame` (the newest frame of the next observation).
    /// `terminated`: the episode ended by the task's rules (a truncation is not one).
    ///
    /// # Panics
    /// If the stream has no observation to act from (call [`Replay::begin_episode`] first).
    pub fn record_step(
        &mut self,
        stream: usize,
        action: u8,
        reward: f32,
        terminated: bool,
        next_frame: &[T],
    ) {
        let cap = self.stream_capacity as u64;
        let s = &mut self.streams[stream];
        assert!(s.written > 0, "record_step before begin_episode");
        let pos = ((s.written - 1) % cap) as usize;
        assert_eq!(
            s.flags[pos] & ACTED,
            0,
            "the agent already acted from this slot"
        );
        s.actions[pos] = action;
        s.rewards[pos] = reward;
        s.flags[pos] |= ACTED | if terminated { TERMINATED } else { 0 };
        self.push_slot(stream, next_frame, 0);
    }

    /// Slots held now, over all streams.
    pub fn slots(&self) -> usize {
        self.streams.iter().map(|s| s.flags.len()).sum()
    }

    /// Transitions that can be sampled now (a scan of every slot: for reports, not hot
    /// paths).
    pub fn transitions(&self) -> usize {
        (0..self.streams.len())
            .map(|i| {
                let (lo, hi) = self.window(i);
                (lo..hi).filter(|&k| self.valid(i, k)).count()
            })
            .sum()
    }

    /// Bytes held by the buffer's storage (allocated, not only used).
    pub fn bytes(&self) -> usize {
        self.streams
            .iter()
            .map(|s| {
                s.frames.capacity() * std::mem::size_of::<T>()
                    + s.actions.capacity()
                    + s.rewards.capacity() * 4
                    + s.flags.capacity()
            })
            .sum()
    }

    /// The sequence numbers `[lo, hi)` still held by stream `i`.
    fn window(&self, i: usize) -> (u64, u64) {
        let s = &self.streams[i];
        let hi = s.written;
        (hi.saturating_sub(self.stream_capacity as u64), hi)
    }

    fn flag(&self, i: usize, seq: u64) -> u8 {
        self.streams[i].flags[(seq % self.stream_capacity as u64) as usize]
    }

    /// Whether slot `seq` of stream `i` is a transition whose stacks are intact: the agent
    /// acted from it and no frame its stack needs was overwritten.
    fn valid(&self, i: usize, seq: u64) -> bool {
        let (lo, hi) = self.window(i);
        if seq + 1 >= hi || self.flag(i, seq) & ACTED == 0 {
            return false;
        }
        // Walk back to the episode's first slot or a full stack, inside the window.
        let mut k = seq;
        for _ in 1..self.stack {
            if self.flag(i, k) & FIRST != 0 {
                return true;
            }
            if k == lo {
                return lo == 0;
            }
            k -= 1;
        }
        true
    }

    /// Writes the stack ending at slot `seq` of stream `i` into `out` (oldest first, zeros
    /// before the episode's first frame).
    fn write_stack(&self, i: usize, seq: u64, out: &mut Vec<T>) {
        // How many earlier frames belong to the same episode (at most stack - 1).
        let mut back = 0;
        while back + 1 < self.stack && self.flag(i, seq - back as u64) & FIRST == 0 {
            back += 1;
        }
        let len = self.frame_len;
        out.extend(std::iter::repeat_n(
            T::default(),
            (self.stack - 1 - back) * len,
        ));
        let cap = self.stream_capacity as u64;
        for k in (seq - back as u64)..=seq {
            let pos = (k % cap) as usize;
            out.extend_from_slice(&self.streams[i].frames[pos * len..(pos + 1) * len]);
        }
    }

    /// Samples `batch` transitions uniformly with replacement into `out`.
    ///
    /// Every valid transition is equally likely: a slot is drawn uniformly over all streams'
    /// windows and drawn again when it is not a valid transition (the last slot of an
    /// episode, or one whose stack was overwritten).
    ///
    /// # Panics
    /// If the buffer holds no valid transition.
    pub fn sample(&self, batch: usize, rng: &mut impl Rng, out: &mut Batch<T>) {
        out.states.clear();
        out.next_states.clear();
        out.actions.clear();
        out.rewards.clear();
        out.dones.clear();
        let sizes: Vec<u64> = (0..self.streams.len())
            .map(|i| {
                let (lo, hi) = self.window(i);
                hi - lo
            })
            .collect();
        let total: u64 = sizes.iter().sum();
        assert!(total > 0, "sampling from an empty replay buffer");
        let mut attempts = 0u64;
        while out.actions.len() < batch {
            attempts += 1;
            assert!(
                attempts < 1000 * batch as u64 + 100_000,
                "the replay buffer holds no valid transition"
            );
            let mut u = rng.gen_range(0..total);
            let mut i = 0;
            while u >= sizes[i] {
                u -= sizes[i];
                i += 1;
            }
            let seq = self.window(i).0 + u;
            if !self.valid(i, seq) {
                continue;
            }
            let pos = (seq % self.stream_capacity as u64) as usize;
            let s = &self.streams[i];
            out.actions.push(s.actions[pos] as i64);
            out.rewards.push(s.rewards[pos]);
            out.dones.push(if s.flags[pos] & TERMINATED != 0 {
                1.0
            } else {
                0.0
            });
            self.write_stack(i, seq, &mut out.states);
            self.write_stack(i, seq + 1, &mut out.next_states);
        }
    }
}

/// The first bytes of a replay file.
const MAGIC: &[u8; 10] = b"SAPREPLAY1";

impl<T: super::Frame> Replay<T> {
    /// Writes the whole buffer to `path` (a temporary file renamed over it), so a
    /// checkpoint restores replay exactly. Returns the bytes written.
    pub fn save(&self, path: &Path) -> std::io::Result<u64> {
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("replay"),
            std::process::id()
        ));
        let mut w = BufWriter::new(File::create(&tmp)?);
        let mut head = MAGIC.to_vec();
        for v in [
            T::BYTES as u64,
            self.frame_len as u64,
            self.stack as u64,
            self.stream_capacity as u64,
            self.streams.len() as u64,
        ] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&head)?;
        let mut total = head.len() as u64;
        let mut buf = Vec::new();
        for st in &self.streams {
            buf.clear();
            buf.extend_from_slice(&st.written.to_le_bytes());
            buf.extend_from_slice(&(st.actions.len() as u64).to_le_bytes());
            T::put(&st.frames, &mut buf);
            buf.extend_from_slice(&st.actions);
            st.rewards
                .iter()
                .for_each(|r| buf.extend_from_slice(&r.to_le_bytes()));
            buf.extend_from_slice(&st.flags);
            w.write_all(&buf)?;
            total += buf.len() as u64;
        }
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(total)
    }

    /// Replaces the buffer's contents with those `save` wrote to `path`. The file must have
    /// this buffer's geometry (frame size, stack, capacity, streams).
    pub fn load(&mut self, path: &Path) -> std::io::Result<()> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut r = BufReader::new(File::open(path)?);
        let mut magic = [0u8; 10];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a replay file of this version".into()));
        }
        let mut word = || -> std::io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        let found = [word()?, word()?, word()?, word()?, word()?];
        let expected = [
            T::BYTES as u64,
            self.frame_len as u64,
            self.stack as u64,
            self.stream_capacity as u64,
            self.streams.len() as u64,
        ];
        if found != expected {
            return Err(bad(format!(
                "replay geometry (value bytes, frame length, stack, capacity per stream, \
                 streams) is {found:?}, this run needs {expected:?}"
            )));
        }
        for st in &mut self.streams {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            let written = u64::from_le_bytes(b);
            r.read_exact(&mut b)?;
            let n = u64::from_le_bytes(b) as usize;
            if n > self.stream_capacity || (n as u64) > written {
                return Err(bad(format!("a stream of {n} slots exceeds the capacity")));
            }
            let mut bytes = vec![0u8; n * self.frame_len * T::BYTES];
            r.read_exact(&mut bytes)?;
            st.frames = T::get(&bytes);
            st.actions = vec![0u8; n];
            r.read_exact(&mut st.actions)?;
            let mut rewards = vec![0u8; n * 4];
            r.read_exact(&mut rewards)?;
            st.rewards = rewards
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            st.flags = vec![0u8; n];
            r.read_exact(&mut st.flags)?;
            st.written = written;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_saved_and_loaded_buffer_samples_the_same_batches() {
        let mut a = Replay::<f32>::new(40, 2, 3, 2).unwrap();
        for stream in 0..2 {
            a.begin_episode(stream, &[stream as f32; 3]);
            for t in 0..30u8 {
                let frame = [t as f32 + 0.5, -(t as f32), stream as f32];
                a.record_step(stream, t % 3, t as f32 * 0.25, t % 11 == 10, &frame);
                if t % 11 == 10 {
                    a.begin_episode(stream, &[1.0; 3]);
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.replay");
        a.save(&path).unwrap();
        let mut b = Replay::<f32>::new(40, 2, 3, 2).unwrap();
        b.load(&path).unwrap();
        let (mut x, mut y) = (Batch::default(), Batch::default());
        a.sample(16, &mut ChaCha8Rng::seed_from_u64(5), &mut x);
        b.sample(16, &mut ChaCha8Rng::seed_from_u64(5), &mut y);
        assert_eq!(x, y);
        assert_eq!(a.transitions(), b.transitions());
        // Another geometry is refused, naming what differs.
        let mut c = Replay::<f32>::new(60, 2, 3, 2).unwrap();
        let err = c.load(&path).unwrap_err().to_string();
        assert!(err.contains("replay geometry"), "{err}");
    }

    #[test]
    fn a_full_stream_keeps_sampling_only_intact_stacks() {
        // Stack 3, one stream of 8 slots: after many writes the oldest slots are gone and a
        // stack that needs them must never be sampled.
        let mut r = Replay::<u8>::new(8, 1, 1, 3).unwrap();
        let mut t = 0u8;
        r.begin_episode(0, &[t]);
        for _ in 0..50 {
            t += 1;
            r.record_step(0, t, 0.0, false, &[t]);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut b = Batch::default();
        r.sample(500, &mut rng, &mut b);
        for j in 0..b.len() {
            let s = &b.states[j * 3..j * 3 + 3];
            // Consecutive frames t-2, t-1, t with t >= 43 (the window holds 43..=50).
            assert_eq!(s[1], s[0] + 1);
            assert_eq!(s[2], s[1] + 1);
            assert!(s[0] >= 43, "stack reaches an overwritten slot: {s:?}");
            assert_eq!(b.next_states[j * 3 + 2], s[2] + 1);
        }
    }
}
