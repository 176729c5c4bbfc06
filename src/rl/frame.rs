//! What replay stores: the observation values of one frame, as pixels or features.

use crate::env::Observation;

/// Observations the replay buffer can store: Atari pixels (`u8`) or classic features
/// (`f32`).
pub trait Frame: Copy + Default + Send + Sync + 'static + tch::kind::Element {
    /// Bytes per value in checkpoint files.
    const BYTES: usize;

    /// The observation's values (a whole stack, oldest frame first), or `None` when the
    /// observation is of the other kind.
    fn unpack(obs: Observation) -> Option<Vec<Self>>;

    /// Appends the values' little-endian bytes to `out`.
    fn put(values: &[Self], out: &mut Vec<u8>);

    /// Values from little-endian bytes (`bytes.len()` a multiple of [`Frame::BYTES`]).
    fn get(bytes: &[u8]) -> Vec<Self>;
}

impl Frame for u8 {
    const BYTES: usize = 1;

    fn unpack(obs: Observation) -> Option<Vec<Self>> {
        match obs {
            Observation::Pixels(v) => Some(v),
            Observation::Features(_) => None,
        }
    }

    fn put(values: &[Self], out: &mut Vec<u8>) {
        out.extend_from_slice(values);
    }

    fn get(bytes: &[u8]) -> Vec<Self> {
        bytes.to_vec()
    }
}

impl Frame for f32 {
    const BYTES: usize = 4;

    fn unpack(obs: Observation) -> Option<Vec<Self>> {
        match obs {
            Observation::Features(v) => Some(v),
            Observation::Pixels(_) => None,
        }
    }

    fn put(values: &[Self], out: &mut Vec<u8>) {
        values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }

    fn get(bytes: &[u8]) -> Vec<Self> {
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}
