//! How the process's allocator treats the large, short-lived buffers of tensor code.
//!
//! glibc's malloc hands allocations above its mmap threshold (128 KiB at first, raised
//! up to the size of the largest freed mapping) to fresh `mmap`s, and returns the top of its
//! heap to the system once more than twice that lies free. A training step allocates and
//! frees tensors of a few MB each (activations, gradients, optimiser temporaries), so every
//! step faulted its memory in again page by page: a fifth of a Double DQN update's time
//! (Nature CNN, batch 32, on a 2-core x86-64 CPU) went to the kernel zeroing pages. Raising
//! both thresholds keeps the freed buffers in the heap for the next step.

/// Largest allocation served from malloc's heap rather than its own mapping (older glibc
/// releases accept at most 32 MiB on 64-bit systems).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the top of the heap that malloc keeps rather than returns.
pub const TRIM_THRESHOLD: usize = 512 << 20;

/// Sets glibc's mmap and trim thresholds to [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`],
/// unless the user set them (`GLIBC_TUNABLES`, `MALLOC_MMAP_THRESHOLD_`,
/// `MALLOC_TRIM_THRESHOLD_`). Returns whether it did. Elsewhere than on glibc it does
/// nothing. Call it early, before threads allocate.
pub fn keep_freed_memory() -> bool {
    if user_setting(|v| std::env::var_os(v).is_some()).is_some() {
        return false;
    }
    set_thresholds()
}

/// The first environment variable, among those through which a user sets glibc's malloc
/// thresholds, that `is_set` says is set.
fn user_setting(is_set: impl Fn(&str) -> bool) -> Option<&'static str> {
    [
        "GLIBC_TUNABLES",
        "MALLOC_MMAP_THRESHOLD_",
        "MALLOC_TRIM_THRESHOLD_",
    ]
    .into_iter()
    .find(|v| is_set(v))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes malloc's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_setting_of_the_allocator_is_left_alone() {
        assert_eq!(user_setting(|_| false), None);
        assert_eq!(
            user_setting(|v| v == "MALLOC_TRIM_THRESHOLD_"),
            Some("MALLOC_TRIM_THRESHOLD_")
        );
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_both_thresholds() {
        assert!(set_thresholds(), "mallopt refused a threshold");
    }
}
