//! The global allocator, and giving a burst's memory back to the kernel once it is over.
//!
//! mimalloc keeps a heap per thread. A block freed by another thread than the one that
//! allocated it (the rule with tokio's work stealing) waits on its page until the owning thread
//! collects, which it does only while it keeps allocating. After a burst the workers go idle
//! with those pages still resident, so each worker collects once, at its next park, when
//! [`release_after_burst`] asks it to.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped once per request to collect; each worker collects when it sees a new value.
static GENERATION: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static SEEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Asks every worker of `runtime` to give its freed memory back at its next park, and wakes the
/// workers so that an idle one parks (and collects) now rather than at its next event.
pub fn release_after_burst(runtime: &tokio::runtime::Handle) {
    GENERATION.fetch_add(1, Ordering::Relaxed);
    // A task spawned from outside the runtime wakes a parked worker; it has nothing to do, so
    // that worker parks again straight away.
    for _ in 0..runtime.metrics().num_workers() {
        drop(runtime.spawn(async {}));
    }
}

/// tokio's `on_thread_park` hook: collects this thread's heap if a release was asked for since
/// it last did. Costs an atomic load otherwise.
pub fn on_worker_park() {
    let wanted = GENERATION.load(Ordering::Relaxed);
    SEEN.with(|seen| {
        if seen.get() != wanted {
            seen.set(wanted);
            collect_this_thread();
        }
    });
}

#[cfg(feature = "mimalloc")]
mod mimalloc_setup {
    //! mimalloc, set to give freed memory back to the kernel at once. Its defaults (purge after
    //! 10 ms, arenas committed eagerly where the kernel overcommits) kept a burst's heap
    //! resident on an idle server.

    use std::ffi::{c_int, c_long};

    #[global_allocator]
    static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

    // `mi_option_e` values from mimalloc.h (the same in mimalloc 2 and 3).
    const ARENA_EAGER_COMMIT: c_int = 4;
    const PURGE_DELAY: c_int = 15;

    unsafe extern "C" {
        fn mi_option_set(option: c_int, value: c_long);
        fn mi_collect(force: bool);
    }

    /// An ELF constructor: it runs before Rust's runtime starts, so before the first
    /// allocation reserves an arena.
    #[used]
    #[unsafe(link_section = ".init_array")]
    static CONFIGURE: extern "C" fn() = configure;

    extern "C" fn configure() {
        // SAFETY: plain setters of mimalloc's options, called before any allocation.
        unsafe {
            mi_option_set(ARENA_EAGER_COMMIT, 0);
            mi_option_set(PURGE_DELAY, 0);
        }
    }

    /// Takes in the blocks other threads freed on this thread's pages, frees the pages left
    /// empty and purges them.
    pub fn collect() {
        // SAFETY: mi_collect works on the calling thread's own heap.
        unsafe { mi_collect(true) }
    }
}

#[cfg(feature = "mimalloc")]
fn collect_this_thread() {
    mimalloc_setup::collect();
}

/// The C library's malloc has no per-thread collection to ask for.
#[cfg(not(feature = "mimalloc"))]
fn collect_this_thread() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_collects_once_per_release() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let before = GENERATION.load(Ordering::Relaxed);
        release_after_burst(runtime.handle());
        assert_eq!(GENERATION.load(Ordering::Relaxed), before + 1);
        on_worker_park();
        assert_eq!(SEEN.with(std::cell::Cell::get), before + 1);
    }
}
