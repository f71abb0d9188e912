//! Large tensors without page faults while training.
//!
//! libtorch allocates each CPU tensor with `malloc` and frees it when its last use ends. glibc
//! serves blocks above its mmap threshold (at most 32 MiB) with fresh `mmap`s and gives them back
//! to the system on free; blocks at the top of its heap go back too once more than the trim
//! threshold is free there. A training step allocates the same large activations and gradients
//! at every step (DeBERTa's [batch, heads, seq, seq] scores are 50 MB at 16 × 256 tokens), so
//! each step page-faults them in again, one fault per 4 KiB page on the first write: a quarter
//! of a deberta-v3-base step at 256 tokens (bench/README.md). While `HeapReuse` guards are
//! alive, glibc keeps every block in its heap (no `mmap`, no trimming), so the next step reuses
//! the memory the last one freed; the peak is the same. When the outermost guard is dropped,
//! glibc's default limits come back and the free memory at the top of the heap goes back to the
//! system (`malloc_trim`). Other C libraries are left as they are.

use std::sync::Mutex;

static DEPTH: Mutex<usize> = Mutex::new(0);

/// Keeps freed memory in the heap for reuse while alive (see the module documentation).
pub struct HeapReuse(());

impl HeapReuse {
    pub fn enter() -> HeapReuse {
        let mut depth = DEPTH.lock().unwrap_or_else(|e| e.into_inner());
        if *depth == 0 {
            keep_freed_memory(true);
        }
        *depth += 1;
        HeapReuse(())
    }
}

impl Drop for HeapReuse {
    fn drop(&mut self) {
        let mut depth = DEPTH.lock().unwrap_or_else(|e| e.into_inner());
        *depth -= 1;
        if *depth == 0 {
            keep_freed_memory(false);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory(keep: bool) {
    // glibc's defaults: DEFAULT_MMAP_MAX and DEFAULT_TRIM_THRESHOLD (malloc/malloc.c).
    const MMAP_MAX: libc::c_int = 65536;
    const TRIM_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt and malloc_trim only change the allocator's limits and release free
    // memory; glibc's allocator locks its arenas for both.
    unsafe {
        if keep {
            libc::mallopt(libc::M_MMAP_MAX, 0);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        } else {
            libc::mallopt(libc::M_MMAP_MAX, MMAP_MAX);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory(_keep: bool) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_nest_and_the_last_one_restores() {
        let outer = HeapReuse::enter();
        {
            let _inner = HeapReuse::enter();
            assert_eq!(*DEPTH.lock().unwrap(), 2);
        }
        assert_eq!(*DEPTH.lock().unwrap(), 1);
        // A large block while kept, freed: the memory stays usable for the next one.
        let block = vec![1u8; 64 << 20];
        drop(block);
        drop(outer);
        assert_eq!(*DEPTH.lock().unwrap(), 0);
    }
}
