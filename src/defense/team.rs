//! Parallel loops over a batch's examples on the OpenMP team that libtorch's CPU kernels run
//! on.
//!
//! A defense point sits between two of libtorch's parallel kernels. Run on a second thread
//! pool, its work competes with libtorch's OpenMP workers, which spin for a while after each
//! kernel waiting for the next, so both pools want the same cores at once. Run on the
//! OpenMP team itself (through `GOMP_parallel`, the entry point a compiler emits for
//! `#pragma omp parallel`, looked up in the OpenMP runtime libtorch has loaded), the spinning
//! workers take the examples at once and nothing is oversubscribed. The team's size is
//! libtorch's thread count (`tch::set_num_threads`), so a defense uses the cores its network
//! is given and no more.
//!
//! Where no OpenMP runtime is loaded (a libtorch built without OpenMP), the loop runs on
//! rayon's pool. Either way an example's result does not depend on which thread runs it.

use std::ffi::{c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

/// A contiguous f32 host buffer that the calls of [`for_each`] split among themselves, each
/// writing a piece no other call touches (a row per example, a piece of a parameter).
#[derive(Clone, Copy)]
pub struct SharedBuf(*mut f32);

// SAFETY: the calls take disjoint pieces (the contract of `SharedBuf::piece`).
unsafe impl Sync for SharedBuf {}
unsafe impl Send for SharedBuf {}

impl SharedBuf {
    /// The buffer that starts at `ptr` (a contiguous f32 tensor's `data_ptr`, say).
    pub fn new(ptr: *mut f32) -> Self {
        SharedBuf(ptr)
    }

    /// The `len` values from `start` on.
    ///
    /// # Safety
    /// They lie in the buffer, which outlives the slice, and no other reference to them lives
    /// while this one does.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn piece<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        std::slice::from_raw_parts_mut(self.0.add(start), len)
    }
}

/// `void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)`.
type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

/// libgomp's `GOMP_parallel`, if the process has an OpenMP runtime that provides it (GNU's,
/// or LLVM's and Intel's, which export it for compatibility).
fn gomp_parallel() -> Option<GompParallel> {
    static ENTRY: OnceLock<Option<GompParallel>> = OnceLock::new();
    *ENTRY.get_or_init(|| {
        // Loading torch's library first makes its OpenMP runtime part of the process.
        tch::get_num_threads();
        // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the libraries
        // already loaded.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"GOMP_parallel".as_ptr()) };
        if symbol.is_null() {
            None
        } else {
            // SAFETY: the symbol is GOMP_parallel, whose C signature is GompParallel's.
            Some(unsafe { std::mem::transmute::<*mut c_void, GompParallel>(symbol) })
        }
    })
}

/// Whether [`for_each`] runs on an OpenMP team (else on rayon's pool).
pub fn uses_openmp() -> bool {
    gomp_parallel().is_some()
}

/// What every member of the team shares: the next example to take, the body, and the first
/// panic, if any, to resume on the calling thread.
struct Shared<'a> {
    next: AtomicUsize,
    count: usize,
    body: &'a (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// Each team member's function: takes examples until none are left. A panic is caught (it
/// must not unwind through C), stops the others taking more, and is kept for the caller.
extern "C" fn member(data: *mut c_void) {
    // SAFETY: `data` is the `Shared` that `for_each` keeps alive until GOMP_parallel returns.
    let shared = unsafe { &*(data as *const Shared) };
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.count {
            return;
        }
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (shared.body)(i))) {
            shared.next.store(shared.count, Ordering::Relaxed);
            let mut slot = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
            slot.get_or_insert(panic);
            return;
        }
    }
}

/// Calls `body(i)` for every `i` in `0..count`, in parallel, each exactly once, and returns
/// when all have returned. A panic in `body` is resumed on the calling thread.
pub fn for_each(count: usize, body: impl Fn(usize) + Sync) {
    if count == 0 {
        return;
    }
    let Some(parallel) = gomp_parallel() else {
        (0..count).into_par_iter().for_each(&body);
        return;
    };
    // libtorch's thread count as its own kernels read it on this thread (1 inside a
    // parallel region).
    let threads = (tch::get_num_threads().max(1) as usize).min(count);
    if threads == 1 {
        (0..count).for_each(body);
        return;
    }
    let shared = Shared {
        next: AtomicUsize::new(0),
        count,
        body: &body,
        panic: Mutex::new(None),
    };
    // SAFETY: `member` only reads `shared` through a shared reference, which outlives the
    // call: GOMP_parallel returns after every member has.
    let data = &shared as *const Shared as *mut c_void;
    unsafe { parallel(member, data, threads as c_uint, 0) };
    if let Some(panic) = shared.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_exactly_once() {
        for count in [0, 1, 2, 7, 128, 1000] {
            let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
            for_each(count, |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn every_index_runs_exactly_once_on_any_team_size() {
        let previous = tch::get_num_threads();
        for threads in [1, 2, 3, 5] {
            tch::set_num_threads(threads);
            let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
            for_each(hits.len(), |i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
        tch::set_num_threads(previous);
    }

    #[test]
    fn a_panic_in_the_body_reaches_the_caller() {
        let result = catch_unwind(|| {
            for_each(64, |i| {
                if i == 17 {
                    panic!("example 17");
                }
            })
        });
        let panic = result.expect_err("the panic comes back");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"example 17"));
    }

    #[test]
    fn libtorch_brings_an_openmp_runtime() {
        assert!(
            uses_openmp(),
            "GOMP_parallel is found in the loaded libraries"
        );
    }
}
