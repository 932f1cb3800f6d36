//! Tessera's HTTP layer: the OAuth 2.0 endpoints on axum.
//!
//! The key design decision: handlers are thin. Each one extracts the request, calls one
//! flow of `tessera-flow` (which sequences `tessera-core` decisions over the store), and
//! maps the outcome; every error becomes an HTTP answer in one place, [`error`]. The server is a value:
//! [`Server::build`] binds the socket and [`Server::run_until`] serves until a future
//! resolves, so tests, `serve` and `demo` start it the same way, on port 0 if they like.
//!
//! The server runs its own accept loop rather than `axum::serve`, for the limits a client on
//! the open internet needs: a connection cap (past it, new connections wait in the listen
//! backlog), a deadline for request headers and one for idle keep-alive connections, and an
//! accept loop that waits and retries when the process runs out of file descriptors.
//!
//! Layout:
//! - [`config`]: [`Config`], everything a node needs to know.
//! - [`state`]: the shared [`state::AppState`] (the store, the flows, the cookie names).
//! - [`extract`]: the strict OAuth form extractor and the `Authorization` header.
//! - [`routes`]: one module per endpoint; no route imports another.
//! - [`error`]: [`error::WebError`] (JSON answers) and the browser error pages.
//! - [`browser`]: session and CSRF cookies for the login and consent pages.
//! - [`pages`]: askama templates and the security headers of every HTML page.
//! - [`proxy`]: the caller's address behind a trusted proxy.
//! - [`client_metadata`]: fetching client metadata documents, public addresses only.
//! - [`local_guard`]: the guard's validator reading the store directly (no HTTP hop).
//! - [`observe`]: the request id and log line around every request.
//! - [`janitor`]: purges expired tokens, codes, sessions, old revocation and audit events in batches.
//! - [`prometheus`]: the metrics recorder and the `/metrics` listener.
//! - [`admin`]: the admin API and its OpenAPI document, on the `--admin-listen` listener.

pub mod admin;
pub mod browser;
pub mod client_metadata;
pub mod config;
pub mod error;
pub mod extract;
pub mod janitor;
pub mod local_guard;
pub mod observe;
pub mod pages;
pub mod prometheus;
pub mod proxy;
pub mod routes;
pub mod state;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tessera_store::Store;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

pub use config::Config;
pub use state::AppState;

/// Marks a response whose body streams for as long as its client listens (the revocation
/// stream). Its connection stays in flight, free of the idle deadline, until it closes: the
/// response must close it when it ends (`Connection: close`). The stop of the server ends
/// such bodies through their flow.
#[derive(Debug, Clone, Copy)]
pub struct LongLived;

/// A bound, ready-to-run authorization server.
pub struct Server {
    listener: NoDelayListener,
    limits: Limits,
    state: AppState,
    /// The `/metrics` listener, with the handle it renders.
    metrics: Option<(TcpListener, metrics_exporter_prometheus::PrometheusHandle)>,
    /// The admin API's listener.
    admin: Option<NoDelayListener>,
}

impl Server {
    /// Raises the open-file limit, binds the listen address and prepares the state.
    /// Migrations are the caller's step, so that `tessera migrate` and tests can run them
    /// separately.
    ///
    /// The soft limit on open files goes up to the hard limit, and the connection cap down to
    /// that limit less a reserve (a quarter of it, at most 256) for the store's files and
    /// sockets, so connections alone never exhaust the descriptors.
    pub async fn build(config: Config, store: Arc<dyn Store>) -> io::Result<Self> {
        let limits = Limits::new(&config, raise_open_file_limit());
        let listener = TcpListener::bind(config.listen).await?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some((TcpListener::bind(addr).await?, prometheus::install())),
            None => None,
        };
        let admin = match config.admin_listen {
            Some(addr) => Some(NoDelayListener(TcpListener::bind(addr).await?)),
            None => None,
        };
        // Also when the caller installed the recorder and brings its own listener (the demo).
        let metered = metrics.is_some() || prometheus::installed().is_some();
        let local = listener.local_addr()?;
        let issuer = config
            .issuer
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let documents = if config.client_metadata_documents {
            let source = client_metadata::HttpsMetadataSource::new(
                config.allow_loopback_client_metadata,
                config.client_metadata_ca_file.as_deref(),
            )?;
            Some(Arc::new(source) as Arc<dyn tessera_flow::ClientMetadataSource>)
        } else {
            None
        };
        let state = AppState::new(config, issuer, store, documents, metered);
        // Keys the KEK cannot open stop the node here, before it serves anything.
        state
            .flows
            .keys
            .start(state.now())
            .await
            .map_err(io::Error::other)?;
        Ok(Self {
            listener: NoDelayListener(listener),
            limits,
            state,
            metrics,
            admin,
        })
    }

    /// Serves `/metrics` on `listener` (instead of `Config::metrics_listen`), installing the
    /// recorder if need be. Requests and store operations are measured only if the recorder
    /// was installed before [`Server::build`].
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics = Some((listener, prometheus::install()));
        self
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Where the admin API is served, if it is.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.0.local_addr().ok())
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.0.local_addr()
    }

    pub fn issuer(&self) -> &str {
        self.state.issuer()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves requests and runs the janitor until `shutdown` resolves; then stops accepting,
    /// closes the connections that have no request in flight, lets the others finish their
    /// request, and returns when every connection is closed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let (stop_janitor, janitor_stopped) = tokio::sync::watch::channel(false);
        let janitor = tokio::spawn(janitor::run(self.state.clone(), janitor_stopped));
        coarse::advance();
        let primer = tokio::spawn(keep_timer_wheel_primed());
        let flows = self.state.flows.clone();
        // The metrics and admin listeners stop when the main one is told to.
        let (stop_side_listeners, side_listeners_stopped) = watch::channel(false);
        let stopped = || {
            let mut stopped = side_listeners_stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let metrics = self.metrics.map(|(listener, handle)| {
            let store = self.state.store.clone();
            tokio::spawn(prometheus::serve(listener, handle, store, stopped()))
        });
        // The admin API: the same accept loop, limits and graceful stop as the main listener.
        let admin = self.admin.map(|listener| {
            let app = admin::app(self.state.clone());
            tokio::spawn(serve(listener, app, self.limits, stopped()))
        });
        // Before the connections are told: a stream must end for its connection to close.
        let shutdown = async move {
            shutdown.await;
            flows.stop_revocation_streams();
            let _ = stop_side_listeners.send(true);
        };
        let app = routes::app(self.state);
        serve(self.listener, app, self.limits, shutdown).await;
        let _ = stop_janitor.send(true);
        let _ = janitor.await;
        primer.abort();
        if let Some(metrics) = metrics {
            metrics.await.map_err(io::Error::other)??;
        }
        if let Some(admin) = admin {
            admin.await.map_err(io::Error::other)?;
        }
        Ok(())
    }
}

/// The limits every connection is held to.
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read: Duration,
    idle: Duration,
    max_connections: usize,
}

impl Limits {
    fn new(config: &Config, open_files: Option<u64>) -> Self {
        Self {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
            max_connections: connection_cap(config.max_connections, open_files),
        }
    }

    /// How long the watchdog sleeps at most, so that it sees any new phase before the phase's
    /// own deadline (see [`watchdog`]).
    fn recheck(&self) -> Duration {
        self.header_read.min(self.idle)
    }
}

/// File descriptors kept out of the connection cap for everything else the process opens:
/// the SQLite database, its WAL and readers, PostgreSQL connections, the log.
const RESERVED_FILES: u64 = 256;

/// `wanted`, lowered to fit `open_files` less a reserve (a quarter of the limit, at most
/// [`RESERVED_FILES`]), and at least one.
fn connection_cap(wanted: usize, open_files: Option<u64>) -> usize {
    let wanted = wanted.clamp(1, Semaphore::MAX_PERMITS);
    let Some(files) = open_files else {
        return wanted;
    };
    let room = files - (files / 4).min(RESERVED_FILES);
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    if room < wanted {
        tracing::info!(
            max_connections = room,
            open_file_limit = files,
            "connection cap lowered to fit the open-file limit"
        );
        room
    } else {
        wanted
    }
}

/// Raises this process's soft limit on open files to its hard limit, and returns the limit
/// now in force (`None` if it could not be read). A common soft limit is 1,024, which a few
/// hundred idle clients would otherwise exhaust while the hard limit allows far more.
fn raise_open_file_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "the open-file limit could not be raised");
            None
        }
    }
}

/// A listener whose every accepted connection sends without delay. Without `TCP_NODELAY`,
/// Nagle's algorithm holds a write back while an earlier one of the connection is
/// unacknowledged: a response written in two parts, or a second response queued behind a
/// first, waits for the client's delayed ACK. axum 0.8 no longer sets it; Go's HTTP servers
/// (Hydra's) and most others do.
struct NoDelayListener(TcpListener);

impl NoDelayListener {
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        Ok((stream, peer))
    }
}

/// The accept loop: at most `limits.max_connections` connections at once, each served on a
/// task of its own until it closes or `shutdown` resolves.
///
/// A permit is taken before `accept`, so past the cap the loop stops accepting and new
/// connections wait in the kernel's listen backlog (their SYN is answered by the kernel;
/// past the backlog, clients retry) instead of costing a file descriptor each. The permit
/// lives as long as the connection's task.
async fn serve<S>(
    listener: NoDelayListener,
    app: S,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog keeps the header deadline: hyper's own runs from the end of one response
    // to the headers of the next, which would close idle keep-alive connections at the
    // header deadline rather than the idle one.
    http.header_read_timeout(None);
    let mut shutdown = pin!(shutdown);
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = accept_within(&listener, &permits) => accepted,
        };
        match accepted {
            Ok((permit, stream, peer)) => {
                backoff.succeeded();
                tokio::spawn(serve_connection(
                    http.clone(),
                    stream,
                    peer,
                    app.clone(),
                    limits,
                    stopping.clone(),
                    permit,
                ));
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                if !pause.is_zero() {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
    // Closing the listener refuses new connections at once; then every connection task is
    // told, and the loop waits until each has ended (each holds a receiver).
    drop(listener);
    drop(stopping);
    stop.send_replace(());
    stop.closed().await;
}

/// A permit under the connection cap, then the next connection.
async fn accept_within(
    listener: &NoDelayListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(io::Error::other)?;
    let (stream, peer) = listener.accept().await?;
    Ok((permit, stream, peer))
}

/// The app as one connection's service: each request carries the peer's address as
/// [`ConnectInfo`] (as `into_make_service_with_connect_info` did; the login throttle reads
/// it) and moves the connection's [`Activity`] to in flight, and its answer back to idle.
///
/// A hyper service rather than tower's map layers under hyper-util's adapter: hyper calls it
/// by reference, where the adapter cloned the whole stack, both activity handles with it, for
/// every request.
struct ConnectionService<S> {
    app: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl<S> hyper::service::Service<hyper::Request<hyper::body::Incoming>> for ConnectionService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answered<Oneshot<S, Request>>;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.set(Phase::InFlight);
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Answered {
            answer: self.app.clone().oneshot(request),
            activity: self.activity.clone(),
        }
    }
}

/// A request's answer; when it is ready, its connection's [`Activity`] becomes idle, unless
/// the answer is [`LongLived`].
struct Answered<F> {
    answer: F,
    activity: Arc<Activity>,
}

impl<F> Future for Answered<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let answer = std::task::ready!(Pin::new(&mut self.answer).poll(cx));
        let long_lived = matches!(&answer, Ok(r) if r.extensions().get::<LongLived>().is_some());
        if !long_lived {
            self.activity.set(Phase::Idle);
        }
        Poll::Ready(answer)
    }
}

/// Serves one connection until it ends, its watchdog fires, or the server stops. On stop a
/// connection with a request in flight finishes that request and closes (hyper's graceful
/// shutdown); any other (idle, or still sending headers) is closed at once, as no answer of
/// it is under way.
async fn serve_connection<S>(
    http: hyper::server::conn::http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: S,
    limits: Limits,
    mut stopping: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + Unpin,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let service = ConnectionService {
        app,
        peer,
        activity: activity.clone(),
    };
    let mut connection = pin!(http.serve_connection(io, service));
    let mut watchdog = pin!(watchdog(&activity, limits));
    let mut stop = pin!(stopping.changed());
    let mut stopped = false;
    // The watchdog and the stop signal are polled only when one of them woke the task
    // (through `alarm`), not on each of the connection's many wake-ups: a poll of either
    // costs more than the rest of what a wake-up adds to hyper's own work.
    let alarm = Arc::new(Alarm::default());
    let alarm_waker = Waker::from(alarm.clone());
    let end = std::future::poll_fn(|cx| {
        alarm.task.register(cx.waker());
        loop {
            if let Poll::Ready(served) = connection.as_mut().poll(cx) {
                return Poll::Ready(Ended::Served(served));
            }
            if !alarm.rang() {
                return Poll::Pending;
            }
            let mut alarmed = Context::from_waker(&alarm_waker);
            if let Poll::Ready(phase) = watchdog.as_mut().poll(&mut alarmed) {
                return Poll::Ready(Ended::PastDeadline(phase));
            }
            if stopped || stop.as_mut().poll(&mut alarmed).is_pending() {
                return Poll::Pending;
            }
            stopped = true;
            if activity.phase() != Phase::InFlight {
                return Poll::Ready(Ended::Stopped);
            }
            // The answer under way is finished first; the connection is polled again, as
            // it may close at once.
            connection.as_mut().graceful_shutdown();
        }
    })
    .await;
    match end {
        Ended::Served(Err(e)) => {
            tracing::trace!(%peer, error = %e, "connection ended with an error");
        }
        Ended::PastDeadline(phase) => {
            tracing::debug!(%peer, ?phase, "connection closed: past its phase's deadline");
        }
        Ended::Served(Ok(())) | Ended::Stopped => {}
    }
}

/// Why [`serve_connection`] returned.
enum Ended {
    Served(hyper::Result<()>),
    PastDeadline(Phase),
    Stopped,
}

/// Wakes a connection's task for its watchdog or the stop signal, and remembers that it did,
/// so that the task polls those two only then.
struct Alarm {
    rang: AtomicBool,
    task: AtomicWaker,
}

impl Default for Alarm {
    /// Rung: the first poll registers the watchdog's timer and the stop signal.
    fn default() -> Self {
        Self {
            rang: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }
    }
}

impl Alarm {
    /// Whether it rang since the last call.
    fn rang(&self) -> bool {
        self.rang.load(Ordering::Acquire) && self.rang.swap(false, Ordering::AcqRel)
    }
}

impl Wake for Alarm {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.rang.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The headers of a request: from the accept, or from the first byte after an answer.
    Headers = 0,
    /// The answer to a request whose headers have arrived; the request's own timeout
    /// ([`routes::app`]) bounds it.
    InFlight = 1,
    /// The next request, after an answer.
    Idle = 2,
}

/// A connection's [`Phase`] and when it began, in one word so that the reads, the service
/// and the watchdog share it without a lock: the phase in the low two bits, above them the
/// phase's start on the [`coarse`] clock.
#[derive(Debug)]
struct Activity {
    word: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            word: AtomicU64::new((coarse::now() << 2) | Phase::Headers as u64),
        }
    }

    fn set(&self, phase: Phase) {
        // A request in flight has no deadline here, so its start is not recorded.
        let since = match phase {
            Phase::InFlight => 0,
            Phase::Headers | Phase::Idle => coarse::now(),
        };
        self.word
            .store((since << 2) | phase as u64, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        Self::decode(self.word.load(Ordering::Relaxed)).0
    }

    /// The phase, and when it began.
    fn decode(word: u64) -> (Phase, Instant) {
        let phase = match word & 3 {
            0 => Phase::Headers,
            1 => Phase::InFlight,
            _ => Phase::Idle,
        };
        (phase, coarse::instant(word >> 2))
    }

    /// Bytes arrived: after an answer, they are the start of the next request's headers.
    fn received(&self) {
        if self.phase() == Phase::Idle {
            self.set(Phase::Headers);
        }
    }
}

/// Resolves with the phase a connection has outstayed: headers not complete within
/// `header_read` of their start, or no next request within `idle` of the last answer.
///
/// It never sleeps longer than [`Limits::recheck`], the shorter of the two, so a phase that
/// begins while it sleeps is seen before its own deadline. A connection costs one timer
/// wake-up per `recheck` at most, and a request nothing more than two stores.
async fn watchdog(activity: &Activity, limits: Limits) -> Phase {
    loop {
        let (phase, since) = Activity::decode(activity.word.load(Ordering::Relaxed));
        // The start is up to a tick early: a tick more, so that no deadline comes early.
        let deadline = match phase {
            Phase::Headers => Some(since + limits.header_read + coarse::TICK),
            Phase::Idle => Some(since + limits.idle + coarse::TICK),
            Phase::InFlight => None,
        };
        let now = Instant::now();
        let recheck = now + limits.recheck();
        match deadline {
            Some(deadline) if deadline <= now => return phase,
            Some(deadline) => tokio::time::sleep_until(deadline.min(recheck)).await,
            None => tokio::time::sleep_until(recheck).await,
        }
    }
}

/// A connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// How long the accept loop waits after a failed `accept`. A connection refused, reset or
/// aborted before it was accepted is that client's loss: the next is accepted at once. Any
/// other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) would come straight back, so the
/// loop waits, 10 ms doubling up to 1 s, and warns at most once a second; the connections
/// wait in the backlog meanwhile.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Duration,
    warned: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    fn failed(&mut self, error: &io::Error) -> Duration {
        if matches!(
            error.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::ConnectionReset
        ) {
            return Duration::ZERO;
        }
        self.pause = (self.pause * 2).clamp(Self::FIRST, Self::LONGEST);
        let now = Instant::now();
        if self
            .warned
            .is_none_or(|warned| now.duration_since(warned) >= Duration::from_secs(1))
        {
            self.warned = Some(now);
            tracing::warn!(error = %error, pause = ?self.pause, "accept failed; retrying");
        }
        self.pause
    }

    fn succeeded(&mut self) {
        self.pause = Duration::ZERO;
    }
}

/// Keeps a timer due within a [`coarse::TICK`] in the runtime's timer wheel, and the
/// [`coarse`] clock going, for as long as it runs.
///
/// Every request has a timeout ([`routes::app`]), and tokio wakes its I/O driver (an
/// `eventfd` write) whenever a new timer is due before anything the wheel held when the
/// driver last looked: between bursts the wheel is empty, so each timeout of the next burst
/// would cost a system call and a wake-up. With this timer always due sooner, registering a
/// request's timeout wakes nothing (docs/BENCHMARKS.md, "Bounds").
async fn keep_timer_wheel_primed() {
    loop {
        coarse::advance();
        tokio::time::sleep(coarse::TICK).await;
    }
}

/// The clock of the connections' phases: milliseconds since the first use, advanced every
/// [`TICK`] by [`keep_timer_wheel_primed`] rather than read from the system on every request,
/// as each request starts two phases. Reads are up to a tick (and a busy runtime's delay) late.
mod coarse {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::time::Instant;

    pub(crate) const TICK: Duration = Duration::from_millis(100);

    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    static MILLIS: AtomicU64 = AtomicU64::new(0);

    /// Now, as of the last tick.
    pub(crate) fn now() -> u64 {
        MILLIS.load(Ordering::Relaxed)
    }

    /// Moves the clock to the present (never back: several servers may share it).
    pub(crate) fn advance() {
        let millis = u64::try_from(START.elapsed().as_millis()).unwrap_or(u64::MAX >> 2);
        MILLIS.fetch_max(millis, Ordering::Relaxed);
    }

    /// The moment `millis` stands for.
    pub(crate) fn instant(millis: u64) -> Instant {
        *START + Duration::from_millis(millis)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Through [`Server::build`], so the test fails if the listener it serves is not the
    /// one that sets `TCP_NODELAY`.
    #[tokio::test]
    async fn the_server_accepts_connections_that_send_without_delay() {
        let (url, path) = tessera_store::testing::fresh_sqlite_url().unwrap();
        let store = tessera_store::connect(&url).await.unwrap();
        // The server reads the signing keys at start.
        store.migrate().await.unwrap();
        let config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        };
        let server = Server::build(config, store).await.unwrap();
        let address = server.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = server.listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _other = TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let (untouched, _) = plain.accept().await.unwrap();
        assert!(!untouched.nodelay().unwrap(), "Linux's default is Nagle on");
        drop(server);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn the_connection_cap_leaves_room_for_the_other_files() {
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(10_000, Some(1_048_576)), 10_000);
        assert_eq!(connection_cap(10_000, Some(1_024)), 768);
        assert_eq!(connection_cap(10_000, Some(256)), 192);
        assert_eq!(connection_cap(0, Some(1_024)), 1);
        assert_eq!(connection_cap(usize::MAX, None), Semaphore::MAX_PERMITS);
    }

    /// An `EMFILE` from `accept` must neither end the accept loop nor spin it.
    #[tokio::test]
    async fn accept_errors_back_off_and_client_errors_do_not() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let pauses: Vec<_> = (0..9).map(|_| backoff.failed(&emfile)).collect();
        assert_eq!(pauses.first(), Some(&Duration::from_millis(10)));
        assert_eq!(pauses.get(1), Some(&Duration::from_millis(20)));
        assert_eq!(pauses.last(), Some(&Duration::from_secs(1)));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.failed(&aborted), Duration::ZERO);
        backoff.succeeded();
        assert_eq!(backoff.failed(&emfile), Duration::from_millis(10));
    }

    #[test]
    fn activity_keeps_the_phase_and_its_start_in_one_word() {
        let activity = Activity::new();
        assert_eq!(activity.phase(), Phase::Headers);
        activity.received();
        assert_eq!(activity.phase(), Phase::Headers);
        activity.set(Phase::InFlight);
        activity.received();
        assert_eq!(
            activity.phase(),
            Phase::InFlight,
            "a body is not a new request"
        );
        activity.set(Phase::Idle);
        activity.received();
        assert_eq!(activity.phase(), Phase::Headers);
    }
}
