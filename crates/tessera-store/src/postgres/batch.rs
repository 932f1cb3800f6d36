//! Many concurrent requests, one statement.
//!
//! Every PostgreSQL statement costs a network round trip and a backend's parse-plan-execute
//! cycle, whatever it does. Under load many requests want the same kind of statement at the
//! same moment (look up a token, store one, revoke one), so a [`Batcher`] collects what is
//! waiting and runs one statement for all of it (`WHERE hash = ANY($1)`, a multi-row insert).
//! A request that arrives alone is run at once, alone: batching adds no waiting, it only
//! takes what has piled up while the previous statement ran, and what the tasks that are
//! ready to run bring in one more turn of the scheduler. That turn makes batches larger and
//! each token cheaper for the server (docs/BENCHMARKS.md, "Bounds").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::StoreError;

/// The most requests in one statement.
const MAX_BATCH: usize = 256;

type Reply<R> = oneshot::Sender<Result<R, StoreError>>;
type Queue<Q, R> = Arc<Mutex<mpsc::UnboundedReceiver<(Q, Reply<R>)>>>;

/// Runs one statement for a batch of requests and returns one answer per request, in order.
pub type BatchFn<Q, R> = Arc<
    dyn Fn(
            Vec<Q>,
        )
            -> Pin<Box<dyn Future<Output = Result<Vec<Result<R, StoreError>>, StoreError>> + Send>>
        + Send
        + Sync,
>;

#[derive(Debug)]
pub struct Batcher<Q, R> {
    queue: mpsc::UnboundedSender<(Q, Reply<R>)>,
}

impl<Q: Send + 'static, R: Send + 'static> Batcher<Q, R> {
    /// Starts `lanes` tasks, each running one batch at a time, so up to `lanes` statements
    /// are in flight. The tasks end when the batcher is dropped.
    pub fn start(lanes: usize, run: BatchFn<Q, R>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting: Queue<Q, R> = Arc::new(Mutex::new(waiting));
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(waiting.clone(), run.clone()));
        }
        Self { queue }
    }

    pub async fn submit(&self, request: Q) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's batching task has stopped".into())
}

async fn lane<Q, R>(waiting: Queue<Q, R>, run: BatchFn<Q, R>) {
    loop {
        let (requests, replies): (Vec<Q>, Vec<Reply<R>>) = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            // One turn of the scheduler before the batch is cut: the tasks that are ready
            // now (requests already read from their sockets) reach the queue and ride
            // along, instead of waiting for the next statement. No timer: alone, the request
            // goes at once.
            tokio::task::yield_now().await;
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match waiting.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch.into_iter().unzip()
        };
        let count = requests.len();
        match run(requests).await {
            Ok(answers) if answers.len() == count => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt(
                        "a batched statement answered the wrong number of requests".into(),
                    )));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.for_batch_member()));
                }
            }
        }
    }
}
