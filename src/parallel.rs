//! Parallelism that shares the cores with libtorch, made safe for `fork()`.
//!
//! ferrotune uses as many threads as torch does (`torch.get_num_threads()`, which follows
//! `torch.set_num_threads` and `OMP_NUM_THREADS`), and one pool at a time:
//! - work inside a training or inference step (dropout masks) runs on libtorch's own threads
//!   (`at::parallel_for`): a second pool there made the threads of each wait for the other's
//!   at every fine-grained region whenever another process took a core (bench/README.md);
//! - whole-column work outside the steps (tokenization, batch decoding) runs on a rayon pool
//!   of the same size, whose workers go to sleep when it ends;
//! - each step uses only the cores that other processes leave free (`Threads`): libtorch
//!   splits each operation evenly among its threads, so a thread that shares its core with a
//!   busy process holds up all the others at every operation.
//!
//! A forked child inherits none of rayon's worker threads, so work sent to the pool there never
//! runs. Notebooks and data loaders fork, so, as the tokenizers bindings do
//! (`bindings/python/src/utils/mod.rs`), a `pthread_atfork` child handler turns parallelism off
//! in the child once the parent has used it; the child then runs the same work serially.
//! `FERROTUNE_PARALLELISM=false` turns it off from the start.

use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub const ENV_VARIABLE: &str = "FERROTUNE_PARALLELISM";

static ENABLED: AtomicBool = AtomicBool::new(true);
static USED: AtomicBool = AtomicBool::new(false);
static INIT: Once = Once::new();
/// The rayon pool for work outside the steps, with its size.
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Held by tests that change the process-wide settings (parallelism, torch's thread count), so
/// that tests running at the same time see the settings they made.
#[cfg(test)]
pub static TEST_SETTINGS: Mutex<()> = Mutex::new(());

#[cfg(test)]
pub fn lock_settings() -> std::sync::MutexGuard<'static, ()> {
    TEST_SETTINGS.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// Whether work may run on more than one thread (false in a child forked after parallel work).
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

/// The threads ferrotune's work may use: torch's, or 1 when parallelism is off.
pub fn threads() -> usize {
    if enabled() {
        tch::get_num_threads().max(1) as usize
    } else {
        1
    }
}

/// The rayon pool of `threads` threads, built again when torch's thread count changed; None
/// if the threads cannot be started (the work then runs serially).
fn pool(threads: usize) -> Option<Arc<rayon::ThreadPool>> {
    let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((size, current)) = pool.as_ref() {
        if *size == threads {
            return Some(current.clone());
        }
    }
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ferrotune-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *pool = Some((threads, built.clone()));
    Some(built)
}

/// `items.map(f).collect()` in input order, on `threads()` threads: for work outside the steps.
pub fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync + Send,
{
    let threads = threads();
    if threads > 1 && items.len() > 1 {
        if let Some(pool) = pool(threads) {
            USED.store(true, Ordering::SeqCst);
            return pool.install(|| items.par_iter().map(f).collect());
        }
    }
    items.iter().map(f).collect()
}

/// A pointer that threads writing disjoint parts of one slice may share.
struct Shared<T>(*mut T);
// SAFETY: only used by `for_each_chunk_mut`, whose chunks never overlap.
unsafe impl<T: Send> Sync for Shared<T> {}
impl<T> Shared<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Calls `f(index, chunk)` for each `size`-element chunk of `items`, on libtorch's threads when
/// parallelism is on: for work inside a step.
pub fn for_each_chunk_mut<T, F>(items: &mut [T], size: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let size = size.max(1);
    let chunks = items.len().div_ceil(size);
    if !enabled() || chunks <= 1 {
        items.chunks_mut(size).enumerate().for_each(|(i, chunk)| f(i, chunk));
        return;
    }
    let len = items.len();
    let base = Shared(items.as_mut_ptr());
    crate::ops::parallel_for(chunks, 1, |range| {
        for i in range {
            let start = i * size;
            let end = len.min(start + size);
            // SAFETY: chunk i covers start..end of `items`, which no other chunk overlaps, and
            // `items` stays borrowed mutably until parallel_for returns.
            let chunk =
                unsafe { std::slice::from_raw_parts_mut(base.get().add(start), end - start) };
            f(i, chunk);
        }
    });
}

/// The threads a step should use when torch has `configured` threads, `cpus` cores are ours
/// and `others` tasks of other processes are running: all of them on a quiet machine, else
/// one per core that the others leave free, and at least one. A thread that shares its core
/// with a busy task holds up all the others at each operation (libtorch splits each one
/// evenly), by as much as a time slice; one thread alone never waits for another
/// (bench/README.md, "A shared CPU").
pub fn threads_beside(configured: usize, cpus: usize, others: usize) -> usize {
    if others == 0 {
        configured
    } else {
        configured.min(cpus.saturating_sub(others)).max(1)
    }
}

/// Busy tasks of other processes, from the last few looks at the machine.
struct Load {
    /// The last samples (the fewest of them counts: a task seen once is not a busy process).
    samples: [usize; 3],
    next: usize,
    looked: Option<Instant>,
}

static LOAD: Mutex<Load> = Mutex::new(Load { samples: [0; 3], next: 0, looked: None });
/// How often the machine is looked at, at most.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Running tasks on the machine (`/proc/loadavg`'s fourth field, "running/total") less this
/// process's running threads; None where /proc does not say.
fn others_running() -> Option<usize> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let running: usize = loadavg.split_whitespace().nth(3)?.split('/').next()?.parse().ok()?;
    let mut own = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        // "pid (comm) S ...": the state follows the last parenthesis.
        if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('R')) {
            own += 1;
        }
    }
    Some(running.saturating_sub(own))
}

/// Busy tasks of other processes now (smoothed over the last looks).
fn others_busy() -> usize {
    let mut load = LOAD.lock().unwrap_or_else(|e| e.into_inner());
    if load.looked.is_none_or(|t| t.elapsed() >= LOOK_EVERY) {
        let seen = others_running().unwrap_or(0);
        let slot = load.next;
        load.samples[slot] = seen;
        load.next = (slot + 1) % load.samples.len();
        load.looked = Some(Instant::now());
    }
    load.samples.iter().copied().min().unwrap_or(0)
}

/// The user's thread count and the one ferrotune set, while training or inference runs.
struct Adapted {
    /// Open `Threads` guards (evaluation runs inside training).
    depth: usize,
    user: i32,
    current: i32,
    /// The cores this process may use (its affinity and cgroup quota), read once per call.
    cpus: usize,
}

static ADAPTED: Mutex<Adapted> = Mutex::new(Adapted { depth: 0, user: 1, current: 1, cpus: 1 });

/// Adapts libtorch's thread count to the load while training or inference runs
/// (`threads_beside`, looked at before each step) and gives the user's count back when the
/// outermost guard is dropped. The count changes only when the decision does: libtorch
/// rebuilds its thread pools and clears oneDNN's caches at each change.
pub struct Threads(());

impl Threads {
    pub fn enter() -> Threads {
        let mut a = ADAPTED.lock().unwrap_or_else(|e| e.into_inner());
        if a.depth == 0 {
            a.user = tch::get_num_threads().max(1);
            a.current = a.user;
            a.cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        }
        a.depth += 1;
        Threads(())
    }

    /// Called before each step.
    pub fn adapt(&self) {
        let mut a = ADAPTED.lock().unwrap_or_else(|e| e.into_inner());
        let now = tch::get_num_threads();
        if now != a.current {
            a.user = now.max(1); // the user set a count meanwhile (torch.set_num_threads)
            a.current = a.user;
        }
        if !enabled() || a.user == 1 {
            return;
        }
        let threads = threads_beside(a.user as usize, a.cpus, others_busy()) as i32;
        if threads != a.current {
            tch::set_num_threads(threads);
            a.current = threads;
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        let mut a = ADAPTED.lock().unwrap_or_else(|e| e.into_inner());
        a.depth -= 1;
        if a.depth == 0 && a.current != a.user {
            tch::set_num_threads(a.user);
            a.current = a.user;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_input_order_in_both_modes() {
        let items: Vec<u64> = (0..10_000).collect();
        let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
        let _settings = lock_settings();
        let threads = tch::get_num_threads();
        tch::set_num_threads(2);
        set_enabled(true);
        assert_eq!(map(&items, |x| x * x), expected);
        assert!(used());
        set_enabled(false);
        assert_eq!(map(&items, |x| x * x), expected);
        set_enabled(true);
        tch::set_num_threads(threads);
    }

    #[test]
    fn map_uses_as_many_threads_as_torch() {
        let _settings = lock_settings();
        let threads = tch::get_num_threads();
        for n in [1, 3] {
            tch::set_num_threads(n);
            assert_eq!(super::threads(), n as usize);
            let items: Vec<u32> = (0..64).collect();
            let seen = map(&items, |_| rayon::current_num_threads());
            // One thread runs serially, outside any pool (rayon then reports its global pool).
            if n > 1 {
                assert!(seen.iter().all(|&t| t == n as usize), "{seen:?}");
            }
        }
        tch::set_num_threads(threads);
    }

    #[test]
    fn steps_use_the_free_cores_when_other_processes_are_busy() {
        assert_eq!(threads_beside(2, 2, 0), 2); // quiet
        assert_eq!(threads_beside(2, 2, 1), 1); // one core busy
        assert_eq!(threads_beside(2, 2, 2), 1); // every core busy
        assert_eq!(threads_beside(2, 2, 5), 1);
        assert_eq!(threads_beside(16, 16, 3), 13);
        assert_eq!(threads_beside(4, 16, 3), 4); // torch was given fewer threads than cores
        assert_eq!(threads_beside(8, 8, 7), 1);
    }

    #[test]
    fn a_quiet_process_sees_no_other_busy_task_of_its_own() {
        // This process's own running threads are not counted as other processes' tasks.
        let sample = || {
            let others = others_running().expect("/proc is readable");
            let busy: Vec<_> = (0..2)
                .map(|_| {
                    std::thread::spawn(|| {
                        let start = Instant::now();
                        while start.elapsed() < Duration::from_millis(200) {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(50));
            let during = others_running().unwrap();
            busy.into_iter().for_each(|t| t.join().unwrap());
            (others, during)
        };
        // Other processes' tasks come and go meanwhile (one sample in about ten saw two more on
        // this 2-core machine); the two spinning threads of this process would add two to
        // every sample.
        let samples: Vec<_> = (0..3).map(|_| sample()).collect();
        assert!(
            samples.iter().any(|&(others, during)| during < others + 2),
            "(before, with two busy threads of ours): {samples:?}"
        );
    }

    #[test]
    fn chunks_cover_the_slice_once_with_their_indices() {
        let _settings = lock_settings();
        for (len, size) in [(0, 4), (3, 4), (10, 3), (100_000, 1 << 14)] {
            let mut items = vec![usize::MAX; len];
            for_each_chunk_mut(&mut items, size, |i, chunk| {
                for (j, slot) in chunk.iter_mut().enumerate() {
                    *slot = i * size + j;
                }
            });
            assert!(items.iter().enumerate().all(|(k, &v)| k == v), "len {len} size {size}");
        }
    }
}
