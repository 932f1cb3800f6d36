//! Issue 24, "HTTP limits": slow clients and connection floods over real sockets. Each test
//! starts its own server with short timeouts (a second or two), so every one is bounded.
//! Nothing here touches the store, so SQLite alone.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tessera_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::helpers::{Backend, fresh_database, http_client};

/// A server started through [`Server::build`], with a handle on its `run_until`.
struct Running {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
}

async fn start(tweak: impl FnOnce(&mut Config)) -> Running {
    let url = fresh_database(Backend::Sqlite).await.unwrap();
    let store = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    tweak(&mut config);
    let server = Server::build(config, store).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    Running { addr, stop, served }
}

fn timeouts(header_read: u64, idle: u64) -> impl FnOnce(&mut Config) {
    move |config| {
        config.header_read_timeout = Duration::from_secs(header_read);
        config.idle_timeout = Duration::from_secs(idle);
    }
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const PARTIAL: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";

/// Reads one response (headers and a `Content-Length` body) within 5 s.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let read = async {
        loop {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response: {seen:?}");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_owned)
                    })
                    .expect("a Content-Length")
                    .parse()
                    .unwrap();
                if seen.len() >= end + 4 + length {
                    return text;
                }
            }
        }
    };
    timeout(Duration::from_secs(5), read)
        .await
        .expect("a response within 5 s")
}

/// Waits at most `limit` for the server to close `stream` (end of stream or reset), and
/// returns how long that took; `None` if it is still open.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let closed = async {
        let mut buf = [0u8; 1024];
        if let Ok(n @ 1..) = stream.read(&mut buf).await {
            panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n]));
        }
    };
    timeout(limit, closed).await.ok().map(|()| start.elapsed())
}

fn assert_between(elapsed: Option<Duration>, low: f64, high: f64, what: &str) {
    let elapsed = elapsed.unwrap_or_else(|| panic!("{what}: not closed within {high} s"));
    let secs = elapsed.as_secs_f64();
    assert!(
        (low..=high).contains(&secs),
        "{what}: closed after {secs:.2} s, expected {low} to {high} s"
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let server = start(timeouts(2, 30)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(4)).await;
    assert_between(closed, 1.7, 3.5, "no bytes at all");
}

#[tokio::test]
async fn issue_24_partial_headers_are_cut_off() {
    let server = start(timeouts(2, 30)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(PARTIAL).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(4)).await;
    assert_between(closed, 1.7, 3.5, "partial headers");
}

/// One byte every 500 ms keeps bytes coming, but the deadline is for the whole header.
#[tokio::test]
async fn issue_24_dripped_headers_are_cut_off() {
    let server = start(timeouts(2, 30)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let start = Instant::now();
    let drip = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = None;
    for byte in drip.iter().take(20) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = Some(start.elapsed());
            break;
        }
        if closed_within(&mut stream, Duration::from_millis(500))
            .await
            .is_some()
        {
            closed = Some(start.elapsed());
            break;
        }
    }
    assert_between(closed, 1.7, 3.5, "dripped headers");
}

/// The idle timeout is its own setting: longer or shorter than the header deadline, an idle
/// keep-alive connection lasts exactly it.
#[tokio::test]
async fn issue_24_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let check = |header_read: u64, idle: u64| async move {
        let server = start(timeouts(header_read, idle)).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        let response = read_response(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let closed = closed_within(&mut stream, Duration::from_secs(idle + 3)).await;
        let what = format!("idle after an answer, header {header_read} s, idle {idle} s");
        assert_between(closed, idle as f64 - 0.3, idle as f64 + 1.5, &what);
    };
    tokio::join!(check(1, 3), check(3, 1));
}

/// After an answer the idle timeout applies, and the header deadline of the next request
/// runs from its first byte.
#[tokio::test]
async fn the_header_deadline_of_a_later_request_starts_at_its_first_byte() {
    let server = start(timeouts(1, 3)).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(HEALTH).await.unwrap();
    read_response(&mut stream).await;
    let idle = closed_within(&mut stream, Duration::from_millis(2000)).await;
    assert_eq!(
        idle, None,
        "closed while idle for less than the idle timeout"
    );
    stream.write_all(PARTIAL).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert_between(closed, 0.7, 2.0, "partial headers after an idle wait");
}

/// Past the cap, new connections wait in the listen backlog and are served as soon as a
/// connection closes; the accept loop survives it.
#[tokio::test]
async fn issue_24_past_the_connection_cap_new_connections_wait_in_the_backlog() {
    let _alone = crate::machine::load_alone().await;
    let server = start(|config| {
        timeouts(10, 2)(config);
        config.max_connections = 50;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(HEALTH).await.unwrap();
        read_response(&mut stream).await;
        idle.push(stream);
    }
    // Ten more wait silently in the backlog, ahead of the one that will ask.
    let mut waiting = Vec::new();
    for _ in 0..10 {
        waiting.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut closes = tokio::task::JoinSet::new();
    for mut stream in idle {
        closes.spawn(async move {
            closed_within(&mut stream, Duration::from_secs(10)).await;
            Instant::now()
        });
    }
    let sent = Instant::now();
    let mut asking = TcpStream::connect(server.addr).await.unwrap();
    asking.write_all(HEALTH).await.unwrap();
    let answer = timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 256];
        let n = asking.read(&mut buf).await.unwrap();
        (
            Instant::now(),
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )
    })
    .await
    .expect("answered once a connection closed");
    assert!(answer.1.starts_with("HTTP/1.1 200"), "{}", answer.1);
    let mut first_close = None::<Instant>;
    while let Some(closed) = closes.join_next().await {
        let closed = closed.unwrap();
        first_close = Some(first_close.map_or(closed, |first| first.min(closed)));
    }
    let first_close = first_close.unwrap();
    assert!(
        answer.0 - sent >= Duration::from_millis(800),
        "answered after {:?}: the cap did not hold",
        answer.0 - sent
    );
    assert!(
        answer.0 <= first_close + Duration::from_secs(1),
        "answered {:?} after the first idle connection closed",
        answer.0 - first_close
    );
    drop(waiting);
    let http = http_client();
    for _ in 0..20 {
        let r = http
            .get(format!("http://{}/healthz", server.addr))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    server.stop.send(()).unwrap();
    timeout(Duration::from_secs(5), server.served)
        .await
        .expect("shutdown completes")
        .unwrap()
        .unwrap();
}

/// The soft and hard limits on open files of this process, from `/proc/self/limits`.
fn open_file_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The issue's 5,000 idle connections (fewer if this machine's hard limit cannot hold them
/// and the test's own ends), half of them with partial headers: a normal request is answered
/// within a second, and shutdown does not wait for them.
#[tokio::test]
async fn issue_24_thousands_of_idle_connections_leave_a_request_answered_within_a_second() {
    let _alone = crate::machine::load_alone().await;
    let server = start(timeouts(60, 60)).await;
    let (soft, hard) = open_file_limits();
    assert_eq!(
        soft, hard,
        "Server::build raises the soft limit to the hard one"
    );
    let count = 5_000.min(soft.saturating_sub(4_096) / 2) as usize;
    assert!(
        count >= 1_000,
        "a hard limit of {hard} is too low for this test"
    );
    let mut idle = Vec::with_capacity(count);
    for i in 0..count {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 0 {
            stream.write_all(PARTIAL).await.unwrap();
        }
        idle.push(stream);
    }
    // Let the server accept them all before timing a request behind them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = http_client();
    for _ in 0..3 {
        let started = Instant::now();
        let r = http
            .get(format!("http://{}/healthz", server.addr))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered after {:?} with {count} idle connections",
            started.elapsed()
        );
    }
    for stream in idle.iter_mut().rev().take(10) {
        let closed = closed_within(stream, Duration::from_millis(10)).await;
        assert_eq!(closed, None, "an idle connection was closed early");
    }
    let stopping = Instant::now();
    server.stop.send(()).unwrap();
    timeout(Duration::from_secs(5), server.served)
        .await
        .expect("shutdown does not wait for connections with no request in flight")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(3));
    let first = idle.first_mut().unwrap();
    assert!(closed_within(first, Duration::from_secs(2)).await.is_some());
}

/// Graceful shutdown: a request in flight is finished (its body arrives after the signal),
/// connections without one are closed at once, new ones are refused, and `run_until`
/// returns.
#[tokio::test]
async fn graceful_shutdown_finishes_the_request_in_flight_and_closes_the_rest() {
    let server = start(timeouts(30, 30)).await;
    let mut kept_alive = TcpStream::connect(server.addr).await.unwrap();
    kept_alive.write_all(HEALTH).await.unwrap();
    read_response(&mut kept_alive).await;
    let mut partial = TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(PARTIAL).await.unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let body = "grant_type=client_credentials&scope=read";
    let mut in_flight = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(&body.as_bytes()[..10]).await.unwrap();
    let r = http_client()
        .get(format!("http://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the server answers with all of them open");
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.stop.send(()).unwrap();
    for (stream, what) in [
        (&mut kept_alive, "idle keep-alive"),
        (&mut partial, "partial headers"),
        (&mut silent, "silent"),
    ] {
        let closed = closed_within(stream, Duration::from_secs(2)).await;
        assert_between(closed, 0.0, 1.0, what);
    }
    let mut served = server.served;
    assert!(
        timeout(Duration::from_millis(300), &mut served)
            .await
            .is_err(),
        "run_until returned with a request in flight"
    );
    in_flight.write_all(&body.as_bytes()[10..]).await.unwrap();
    let response = read_response(&mut in_flight).await;
    assert!(response.starts_with("HTTP/1.1 4"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
    timeout(Duration::from_secs(2), served)
        .await
        .expect("run_until returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

/// The attack as reported: a file limit of 256 and more idle connections than it allows.
/// `tessera serve` caps its connections below the limit, so a normal request waits in the
/// backlog rather than meeting `EMFILE`, and is answered once header deadlines free room.
#[tokio::test]
async fn issue_24_a_low_file_limit_never_fails_a_request() {
    let _alone = crate::machine::load_alone().await;
    let url = fresh_database(Backend::Sqlite).await.unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new("sh")
        .args(["-c", r#"ulimit -n 256 && exec "$0" "$@""#])
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", &listen, "--header-read-timeout", "2"])
        .env("TESSERA_DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = http_client();
    let base = format!("http://{listen}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "tessera serve did not become ready");
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(&listen).await.unwrap());
    }
    let started = Instant::now();
    let r = http
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(child.try_wait().unwrap().is_none(), "the server exited");
    child.start_kill().unwrap();
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
}
