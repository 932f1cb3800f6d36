//! Wake-ups for the readers of revocation events.
//!
//! A [`Feed`] holds the number of the last event this node knows of, in a `watch` channel:
//! readers wait for it to change, then read the table. Nothing is delivered through it, so a
//! wake-up lost or repeated costs nothing but latency or a read. What appends on this node
//! advances it after its commit; what other processes append is learnt by a watcher task
//! each backend starts on the first subscription (a process that never subscribes, such as
//! the command line, runs none).

use std::future::Future;
use std::sync::OnceLock;

use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug)]
pub(crate) struct Feed {
    latest: watch::Sender<u64>,
    watcher: OnceLock<AbortOnDrop>,
}

impl Feed {
    pub(crate) fn new() -> Self {
        Self {
            latest: watch::Sender::new(0),
            watcher: OnceLock::new(),
        }
    }

    /// Events up to `seq` are committed.
    pub(crate) fn advance(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            advance(&self.latest, seq);
        }
    }

    /// A receiver of the last event's number. The first call inside a Tokio runtime starts
    /// `watcher`, given the sender to advance.
    pub(crate) fn subscribe<F>(
        &self,
        watcher: impl FnOnce(watch::Sender<u64>) -> F,
    ) -> watch::Receiver<u64>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.watcher
                .get_or_init(|| AbortOnDrop(runtime.spawn(watcher(self.latest.clone()))));
        }
        self.latest.subscribe()
    }
}

/// Moves `latest` forward to `seq`, waking its receivers; never back.
pub(crate) fn advance(latest: &watch::Sender<u64>, seq: u64) {
    latest.send_if_modified(|known| {
        let newer = seq > *known;
        if newer {
            *known = seq;
        }
        newer
    });
}

/// The watcher ends with the store.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
