//! Who may share the test machine. Tests that load every core (floods, thousands of
//! connections, bursts under SIGKILL) run one at a time and never beside a test that drives
//! Chromium, whose steps have deadlines a starved browser can miss on two cores.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::const_new(());

/// Held for the whole of a test that loads every core: it waits for the browser tests and the
/// other loading tests to end, and they wait for it.
pub async fn load_alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().await
}

/// Held for the whole of a browser test: browser tests run side by side, never beside a test
/// that loads every core.
pub async fn steady() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().await
}
