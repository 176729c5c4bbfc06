//! Versioned weight snapshots: the learner publishes, actors wait for the exact version their
//! round calls for, and a shared stop flag wakes every waiter when the run fails.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tch::{Device, Tensor};

use crate::nn::Model;

/// The online network's parameters at one version, as plain host memory (a `Tensor` is not
/// `Sync`, so snapshots are shared as vectors and copied into each actor's own network).
#[derive(Debug)]
pub struct Snapshot {
    /// `(name, shape, values)`, sorted by name.
    pub tensors: Vec<(String, Vec<i64>, Vec<f32>)>,
}

impl Snapshot {
    /// Copies `model`'s parameters to host memory.
    pub fn of(model: &Model) -> Self {
        let mut vars: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let tensors = vars
            .into_iter()
            .map(|(name, t)| {
                let host = t
                    .detach()
                    .to_device(Device::Cpu)
                    .to_kind(tch::Kind::Float)
                    .flatten(0, -1);
                let values = Vec::<f32>::try_from(&host).expect("float parameters");
                (name, t.size(), values)
            })
            .collect();
        Self { tensors }
    }

    /// Copies the snapshot into `model`, which must have the same architecture.
    pub fn load_into(&self, model: &mut Model) {
        let vars = model.vs.variables();
        tch::no_grad(|| {
            for (name, shape, values) in &self.tensors {
                let mut var = vars[name].shallow_clone();
                let src = Tensor::from_slice(values).view(&shape[..]);
                var.copy_(&src.to_kind(var.kind()).to_device(var.device()));
            }
        });
    }
}

/// Why a wait ended without a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

/// The shared board.
#[derive(Debug)]
pub struct Board {
    versions: Mutex<BTreeMap<u64, Arc<Snapshot>>>,
    published: Condvar,
    stop: AtomicBool,
    /// The version each actor holds now; older versions can be dropped.
    taken: Vec<AtomicU64>,
}

impl Board {
    /// A board for `actors` actors, starting at `first` with `snapshot`.
    pub fn new(actors: usize, first: u64, snapshot: Snapshot) -> Self {
        let mut versions = BTreeMap::new();
        versions.insert(first, Arc::new(snapshot));
        Self {
            versions: Mutex::new(versions),
            published: Condvar::new(),
            stop: AtomicBool::new(false),
            taken: (0..actors).map(|_| AtomicU64::new(first)).collect(),
        }
    }

    /// Publishes `version` and drops versions no actor can need any more.
    pub fn publish(&self, version: u64, snapshot: Snapshot) {
        let oldest_needed = self
            .taken
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .min()
            .unwrap_or(version);
        let mut versions = self.versions.lock().expect("board lock");
        versions.insert(version, Arc::new(snapshot));
        versions.retain(|&v, _| v >= oldest_needed);
        drop(versions);
        self.published.notify_all();
    }

    /// Blocks until `version` is published (or the run stops), and records that `actor`
    /// now holds it.
    pub fn wait(&self, actor: usize, version: u64) -> Result<Arc<Snapshot>, Stopped> {
        let mut versions = self.versions.lock().expect("board lock");
        loop {
            if self.stopped() {
                return Err(Stopped);
            }
            if let Some(s) = versions.get(&version) {
                self.taken[actor].store(version, Ordering::Release);
                return Ok(s.clone());
            }
            versions = self
                .published
                .wait_timeout(versions, Duration::from_millis(100))
                .expect("board lock")
                .0;
        }
    }

    /// Asks every thread to stop and wakes the waiters.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _guard = self.versions.lock().expect("board lock");
        self.published.notify_all();
    }

    /// Whether the run is stopping.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Versions held now (for tests and diagnostics).
    pub fn held(&self) -> usize {
        self.versions.lock().expect("board lock").len()
    }
}
