//! Every module's tests share one process and its test threads (one per core unless
//! `--test-threads` says otherwise), so tests from different files now run side by side. A few
//! load the machine: a 1000-request burst, 10,000 client addresses, Chromium, schemathesis.
//! Those hold [`heavy`]; tests that assert how long something takes hold [`timed`]. The two
//! never overlap, while timed tests still run beside each other and beside everything else, as
//! they did when each file was its own binary.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Held for the whole of a test that loads the machine: no timed or other heavy test meanwhile.
pub fn heavy() -> RwLockWriteGuard<'static, ()> {
    // A test that failed while holding it says nothing about the next one.
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Held for the whole of a test that asserts a duration: no heavy test runs meanwhile.
pub fn timed() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}
