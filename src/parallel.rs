//! Data parallelism on rayon, made safe for `fork()`.
//!
//! A forked child inherits none of rayon's worker threads, so work sent to the global pool
//! there never runs. Notebooks and data loaders fork, so, as the tokenizers bindings do
//! (`bindings/python/src/utils/mod.rs`), a `pthread_atfork` child handler turns parallelism off
//! in the child once the parent has used it; the child then runs the same work serially.
//! `FERROTUNE_PARALLELISM=false` turns it off from the start.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

pub const ENV_VARIABLE: &str = "FERROTUNE_PARALLELISM";

static ENABLED: AtomicBool = AtomicBool::new(true);
static USED: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();

/// Reads the environment and registers the fork handler; called once at import.
pub fn init() {
    INIT.call_once(|| {
        if let Ok(value) = std::env::var(ENV_VARIABLE) {
            let off = matches!(value.to_ascii_lowercase().as_str(), "0" | "false" | "off" | "no");
            ENABLED.store(!off, Ordering::SeqCst);
        }
        // SAFETY: the handler only stores to atomics, which is async-signal-safe.
        unsafe {
            libc::pthread_atfork(None, None, Some(child_after_fork));
        }
    });
}

extern "C" fn child_after_fork() {
    if USED.load(Ordering::SeqCst) {
        ENABLED.store(false, Ordering::SeqCst);
        tokenizers::utils::parallelism::set_parallelism(false);
    }
}

/// Whether work runs on the rayon pool (false in a child forked after parallel work).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

pub fn set_enabled(value: bool) {
    ENABLED.store(value, Ordering::SeqCst);
    tokenizers::utils::parallelism::set_parallelism(value);
}

/// Whether this process has run work on the rayon pool.
pub fn used() -> bool {
    USED.load(Ordering::SeqCst)
}

/// `items.map(f).collect()`, on the rayon pool when parallelism is on, in input order.
pub fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    if enabled() && items.len() > 1 {
        USED.store(true, Ordering::SeqCst);
        items.par_iter().map(f).collect()
    } else {
        items.iter().map(f).collect()
    }
}

/// Calls `f(index, chunk)` for each `size`-element chunk of `items`, on the rayon pool when
/// parallelism is on.
pub fn for_each_chunk_mut<T, F>(items: &mut [T], size: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    if enabled() && items.len() > size {
        USED.store(true, Ordering::SeqCst);
        items.par_chunks_mut(size).enumerate().for_each(|(i, chunk)| f(i, chunk));
    } else {
        items.chunks_mut(size).enumerate().for_each(|(i, chunk)| f(i, chunk));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_input_order_in_both_modes() {
        let items: Vec<u64> = (0..10_000).collect();
        let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
        set_enabled(true);
        assert_eq!(map(&items, |x| x * x), expected);
        assert!(used());
        set_enabled(false);
        assert_eq!(map(&items, |x| x * x), expected);
        set_enabled(true);
    }
}
