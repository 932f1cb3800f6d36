//! Argon2 verifications (and the hashing of a self-registered client's new secret) run on a few threads of their own, one per core, from two bounded
//! queues: one for sign-ins, one for client authentication.
//!
//! Argon2id (m = 19 MiB) is CPU-bound for tens of milliseconds, so it cannot run on the async
//! workers. On tokio's blocking pool each run may land on a different thread, and glibc gives
//! threads their own arenas, each keeping a freed 19 MiB block for later, so a burst of
//! sign-ins leaves the server's memory grown for good (docs/BENCHMARKS.md, "Bounds"). On one
//! thread per core, at most that many blocks exist, each reused by its thread's next run; more
//! threads would not finish sooner, since the work is CPU-bound.
//!
//! The queues are bounded, so a flood of wrong secrets is refused at once ([`Busy`]) instead
//! of making everyone wait behind it; and the threads take from the two queues in turn, so a
//! flood of one kind cannot starve the other: each kind is guaranteed half the threads' runs.

use std::collections::VecDeque;
use std::sync::{Condvar, LazyLock, Mutex, PoisonError};
use std::time::Instant;

use tessera_core::secret::{HashError, Secret, hash_secret, verify_secret};
use tokio::sync::oneshot;

use crate::measure::{self, Queue};

/// Verifications waiting in one queue at most; past it, [`verify`] answers [`Busy`] at once.
/// A few hundred milliseconds of work for the threads of a small machine.
pub const MOST_QUEUED: usize = 16;

/// Who is waiting for a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignIn,
    ClientAuthentication,
}

impl Purpose {
    fn queue(self) -> Queue {
        match self {
            Self::SignIn => Queue::SignIn,
            Self::ClientAuthentication => Queue::Client,
        }
    }
}

/// The queue for this purpose is full, or no hashing thread runs: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the password-hashing queue is full")]
pub struct Busy;

type Job = Box<dyn FnOnce() + Send>;

struct Queues {
    sign_in: VecDeque<Job>,
    client: VecDeque<Job>,
    /// Whose turn it is when both queues hold work.
    sign_in_next: bool,
    threads: usize,
}

impl Queues {
    fn queue(&mut self, purpose: Purpose) -> &mut VecDeque<Job> {
        match purpose {
            Purpose::SignIn => &mut self.sign_in,
            Purpose::ClientAuthentication => &mut self.client,
        }
    }

    fn next(&mut self) -> Option<Job> {
        let job = if self.sign_in_next {
            self.sign_in.pop_front().or_else(|| self.client.pop_front())
        } else {
            self.client.pop_front().or_else(|| self.sign_in.pop_front())
        };
        self.sign_in_next = !self.sign_in_next;
        job
    }
}

struct Pool {
    queues: Mutex<Queues>,
    work: Condvar,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let pool = Pool {
        queues: Mutex::new(Queues {
            sign_in: VecDeque::new(),
            client: VecDeque::new(),
            sign_in_next: true,
            threads: 0,
        }),
        work: Condvar::new(),
    };
    let mut started = 0;
    for n in 0..std::thread::available_parallelism().map_or(1, usize::from) {
        let spawned = std::thread::Builder::new()
            .name(format!("tessera-argon2-{n}"))
            .spawn(|| work(&POOL));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::error!(error = %e, "cannot start a password-hashing thread"),
        }
    }
    pool.queues
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .threads = started;
    pool
});

fn work(pool: &Pool) {
    loop {
        let job = {
            let mut queues = pool.queues.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(job) = queues.next() {
                    measure::hashing_queued(Queue::SignIn, queues.sign_in.len());
                    measure::hashing_queued(Queue::Client, queues.client.len());
                    break job;
                }
                queues = pool
                    .work
                    .wait(queues)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        job();
    }
}

/// Checks `secret` against `stored` (or a dummy hash, see [`verify_secret`]) on a hashing
/// thread, or answers [`Busy`] at once when `purpose`'s queue is full.
pub async fn verify(
    purpose: Purpose,
    stored: Option<String>,
    secret: Secret,
) -> Result<bool, Busy> {
    run(purpose, move || verify_secret(&secret, stored.as_deref())).await
}

/// Hashes a new client secret (a self-registered client's) on a hashing thread, from the
/// clients' queue, or answers [`Busy`] at once when it is full.
pub async fn hash(secret: Secret) -> Result<Result<String, HashError>, Busy> {
    run(Purpose::ClientAuthentication, move || hash_secret(&secret)).await
}

/// Runs `work` on a hashing thread from `purpose`'s queue, in the caller's span.
pub(crate) async fn run<T: Send + 'static>(
    purpose: Purpose,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Busy> {
    let (reply, answer) = oneshot::channel();
    let span = tracing::Span::current();
    let queued_at = Instant::now();
    let job: Job = Box::new(move || {
        measure::hashing_waited(purpose.queue(), queued_at.elapsed());
        // A caller that has gone away (a closed connection) needs no answer.
        if !reply.is_closed() {
            let done = span.in_scope(work);
            let _ = reply.send(done);
        }
    });
    {
        let mut queues = POOL.queues.lock().unwrap_or_else(PoisonError::into_inner);
        if queues.threads == 0 || queues.queue(purpose).len() >= MOST_QUEUED {
            measure::hashing_busy(purpose.queue());
            return Err(Busy);
        }
        queues.queue(purpose).push_back(job);
        measure::hashing_queued(purpose.queue(), queues.queue(purpose).len());
    }
    POOL.work.notify_one();
    answer.await.map_err(|_| Busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(log: &std::sync::Arc<Mutex<Vec<&'static str>>>, name: &'static str) -> Job {
        let log = log.clone();
        Box::new(move || {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(name)
        })
    }

    #[test]
    fn the_two_queues_take_turns_so_neither_starves() {
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut queues = Queues {
            sign_in: VecDeque::new(),
            client: VecDeque::new(),
            sign_in_next: false,
            threads: 1,
        };
        for _ in 0..5 {
            queues.client.push_back(job(&log, "client"));
        }
        queues.sign_in.push_back(job(&log, "sign-in"));
        while let Some(next) = queues.next() {
            next();
        }
        let order = log.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(
            order.iter().position(|n| *n == "sign-in"),
            Some(1),
            "{order:?}"
        );
        assert_eq!(order.len(), 6);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once_and_the_other_still_serves() {
        // Enough client verifications to fill the threads and the client queue.
        let secret = Secret::new("wrong");
        let mut waiting = Vec::new();
        for _ in 0..(MOST_QUEUED + 8) * 2 {
            let secret = secret.clone();
            waiting.push(tokio::spawn(verify(
                Purpose::ClientAuthentication,
                None,
                secret,
            )));
        }
        tokio::task::yield_now().await;
        let busy = verify(Purpose::ClientAuthentication, None, secret.clone()).await;
        let sign_in = verify(Purpose::SignIn, None, secret).await;
        assert_eq!(busy, Err(Busy));
        assert_eq!(sign_in, Ok(false));
        let mut refused = 0;
        for w in waiting {
            if w.await.unwrap_or(Err(Busy)).is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0, "the queue never filled");
    }
}
