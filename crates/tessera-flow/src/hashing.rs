//! Argon2 verifications run on a few threads of their own, one per core.
//!
//! Argon2id (m = 19 MiB) is CPU-bound for tens of milliseconds, so it cannot run on the async
//! workers. On tokio's blocking pool each run may land on a different thread, and glibc gives
//! threads their own arenas, each keeping a freed 19 MiB block for later, so a burst of
//! sign-ins leaves the server's memory grown for good (docs/BENCHMARKS.md, "Bounds"). On one
//! thread per core, at most that many blocks exist, each reused by its thread's next run; more
//! threads would not finish sooner, since the work is CPU-bound.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tessera_core::secret::{Secret, verify_secret};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

static WORKERS: LazyLock<Sender<Job>> = LazyLock::new(|| {
    let (queue, jobs) = channel::<Job>();
    let jobs = Arc::new(Mutex::new(jobs));
    for n in 0..std::thread::available_parallelism().map_or(1, usize::from) {
        let jobs = jobs.clone();
        let started = std::thread::Builder::new()
            .name(format!("tessera-argon2-{n}"))
            .spawn(move || work(&jobs));
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start a password-hashing thread");
        }
    }
    queue
});

fn work(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let next = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Checks `secret` against `stored` (or a dummy hash, see [`verify_secret`]) on a hashing
/// thread. `None` if no hashing thread could run it.
pub async fn verify(stored: Option<String>, secret: Secret) -> Option<bool> {
    let (reply, answer) = oneshot::channel();
    let span = tracing::Span::current();
    let job: Job = Box::new(move || {
        // A caller that has gone away (a closed connection) needs no answer.
        if !reply.is_closed() {
            let verified = span.in_scope(|| verify_secret(&secret, stored.as_deref()));
            let _ = reply.send(verified);
        }
    });
    WORKERS.send(job).ok()?;
    answer.await.ok()
}
