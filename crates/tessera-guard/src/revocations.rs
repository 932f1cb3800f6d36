//! The guard's subscription to the authorization server's revocation stream (Server-Sent
//! Events): each event names a revoked access token's store key, which is also the cache key,
//! so the cache can hold answers for minutes and still refuse a revoked token within the
//! stream's lag.
//!
//! Failure modes, and what bounds the staleness in each:
//! - stream up: an event evicts the token; an introspection already in flight when the event
//!   arrives is caught by the revoked set (kept as long as any cache entry can live);
//! - stream down (before the first connection, or after a drop): every cached answer older
//!   than the fallback TTL is introspected again, while the task reconnects with backoff and
//!   jitter and resumes from the last event id it saw;
//! - a resume from before the server's retained window (a `reset` event), or a first
//!   connection with nothing to resume from: the whole cache is flushed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tokio::sync::watch;

use crate::cache::{AnswerCache, CacheKey, Entry};
use crate::meters::GuardMeters;

/// What the embedding application can see of the subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    /// A stream endpoint is configured and the subscription task runs.
    pub subscribed: bool,
    /// The stream is open and the server answered it with 200.
    pub connected: bool,
    /// The id of the last event seen, sent as `Last-Event-ID` on a reconnection.
    pub last_event_id: Option<u64>,
    /// Revocation events applied since the start.
    pub events: u64,
    /// Cache flushes: `reset` events and first connections.
    pub resets: u64,
    /// Connections opened (the first included).
    pub connections: u64,
    /// When the stream last said anything (an event, an id or a heartbeat): a stream that
    /// stays connected but silent past the server's heartbeat is stuck.
    pub last_message: Option<Instant>,
    /// Why the stream last failed, without credentials.
    pub last_error: Option<String>,
}

impl StreamStatus {
    /// Cached answers are capped at the fallback TTL while this holds.
    pub fn fallback(&self) -> bool {
        self.subscribed && !self.connected
    }
}

/// State shared by the validator's hot path and the subscription task.
pub(crate) struct StreamShared {
    connected: AtomicBool,
    /// Counts revocation events and flushes; a cached answer remembers its value when its
    /// introspection began.
    epoch: AtomicU64,
    /// The epoch of the last flush: answers whose introspection began before it are stale.
    flushed_at: AtomicU64,
    /// Keys revoked, with the epoch of their event, kept as long as a cache entry lives.
    revoked: moka::sync::Cache<CacheKey, u64>,
    status: watch::Sender<StreamStatus>,
    pub(crate) fallback_ttl: Duration,
    meters: GuardMeters,
}

impl StreamShared {
    pub(crate) fn new(
        fallback_ttl: Duration,
        keep_revoked: Duration,
        max_entries: u64,
        meters: GuardMeters,
    ) -> Self {
        let (status, _) = watch::channel(StreamStatus {
            subscribed: true,
            ..StreamStatus::default()
        });
        Self {
            connected: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            flushed_at: AtomicU64::new(0),
            revoked: moka::sync::Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(keep_revoked)
                .build(),
            status,
            fallback_ttl,
            meters,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether `entry`, just read from the cache under `key`, may still be used.
    pub(crate) fn admits(&self, key: &CacheKey, entry: &Entry) -> Admission {
        if entry.started < self.flushed_at.load(Ordering::Acquire) {
            return Admission::Stale;
        }
        if !entry.settled.load(Ordering::Acquire) {
            // The entry is in the cache, so an event whose epoch this load misses evicts it
            // after this point; one it sees has published its key, checked here.
            if self.revoked_since(key, entry) {
                return Admission::Revoked;
            }
            entry.settled.store(true, Ordering::Release);
        }
        if !self.connected.load(Ordering::Acquire) && entry.stored_at.elapsed() > self.fallback_ttl
        {
            return Admission::Stale;
        }
        Admission::Fresh
    }

    /// Whether `entry` is still an answer the cache may give: no flush and no revocation of
    /// its key since its introspection began.
    pub(crate) fn still_current(&self, key: &CacheKey, entry: &Entry) -> bool {
        entry.started >= self.flushed_at.load(Ordering::Acquire) && !self.revoked_since(key, entry)
    }

    fn revoked_since(&self, key: &CacheKey, entry: &Entry) -> bool {
        entry.started < self.epoch.load(Ordering::SeqCst)
            && self
                .revoked
                .get(key)
                .is_some_and(|revoked_at| revoked_at > entry.started)
    }

    pub(crate) fn was_revoked(&self, key: &CacheKey) -> bool {
        self.revoked.contains_key(key)
    }

    pub(crate) fn status(&self) -> StreamStatus {
        self.status.borrow().clone()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<StreamStatus> {
        self.status.subscribe()
    }

    fn revoke(&self, key: CacheKey) {
        // The epoch moves before the key is published, so an introspection that began before
        // this point has a smaller epoch and is refused.
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.revoked.insert(key, epoch);
    }

    fn flush(&self) {
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.flushed_at.store(epoch, Ordering::Release);
    }

    fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Release);
        self.meters
            .stream_connected
            .set(if connected { 1.0 } else { 0.0 });
    }
}

pub(crate) enum Admission {
    Fresh,
    /// Introspect again.
    Stale,
    /// The token was revoked after this answer was obtained.
    Revoked,
}

/// Settings of the subscription task.
pub(crate) struct Subscription {
    pub(crate) endpoint: String,
    pub(crate) basic: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) shared: Arc<StreamShared>,
    /// The validator's cache, evicted from.
    pub(crate) cache: AnswerCache,
    /// Closed when the validator is dropped, which ends the task.
    pub(crate) stop: watch::Receiver<()>,
}

/// Longest silence on an open stream before it is taken as dead: the server sends a
/// heartbeat well within it.
const IDLE_LIMIT: Duration = Duration::from_secs(45);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// An event larger than this is not one of ours: the connection is dropped.
const MAX_EVENT_BYTES: usize = 16 * 1024;

impl Subscription {
    pub(crate) async fn run(self) {
        let mut stop = self.stop.clone();
        let http = match reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(http) => http,
            Err(e) => {
                self.note_error(format!("cannot build an HTTP client: {e}"));
                return;
            }
        };
        let mut failures: u32 = 0;
        loop {
            let opened = Instant::now();
            let outcome = tokio::select! {
                outcome = self.connect_and_read(&http) => outcome,
                _ = stop.changed() => return,
            };
            self.shared.set_connected(false);
            let error = match outcome {
                Ok(()) => "the server closed the stream".to_owned(),
                Err(e) => e,
            };
            tracing::debug!(error = %error, "revocation stream down; cached answers capped");
            self.note_error(error);
            // A stream that stayed up a while was healthy: start the backoff afresh.
            if opened.elapsed() > Duration::from_secs(10) {
                failures = 0;
            }
            let delay = backoff(failures);
            failures = failures.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return,
            }
            self.shared.meters.stream_reconnects.increment(1);
        }
    }

    async fn connect_and_read(&self, http: &reqwest::Client) -> Result<(), String> {
        let last_id = self.shared.status.borrow().last_event_id;
        let mut request = http
            .get(&self.endpoint)
            .header(http::header::AUTHORIZATION, &self.basic)
            .header(http::header::ACCEPT, "text/event-stream")
            .header(http::header::CACHE_CONTROL, "no-cache");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id.to_string());
        }
        let mut response = request.send().await.map_err(|e| without_url(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("the stream endpoint answered {status}"));
        }
        let is_event_stream = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_event_stream {
            return Err(
                "the stream endpoint answered something other than text/event-stream".into(),
            );
        }
        self.shared.set_connected(true);
        let first = last_id.is_none();
        self.shared.status.send_modify(|s| {
            s.connected = true;
            s.connections += 1;
            s.last_error = None;
        });
        if first {
            // Nothing to resume from: revocations before this connection were never seen.
            self.apply_reset(None).await;
        }
        let mut parser = EventParser::default();
        loop {
            let chunk = tokio::time::timeout(IDLE_LIMIT, response.chunk())
                .await
                .map_err(|_| "the stream fell silent past its heartbeat".to_owned())?
                .map_err(|e| without_url(&e))?;
            let Some(chunk) = chunk else {
                return Ok(());
            };
            self.shared
                .status
                .send_modify(|s| s.last_message = Some(Instant::now()));
            for event in parser.feed(&chunk)? {
                self.apply(event).await;
            }
        }
    }

    async fn apply(&self, event: Event) {
        let id = event.id.as_deref().and_then(|id| id.parse::<u64>().ok());
        match event.kind.as_str() {
            "revoked" => match parse_revoked(&event.data) {
                Some(key) => {
                    self.shared.meters.stream_events.increment(1);
                    self.shared.revoke(key);
                    self.cache.invalidate(&key).await;
                    self.shared.status.send_modify(|s| {
                        s.events += 1;
                        s.last_event_id = id.or(s.last_event_id);
                    });
                }
                None => tracing::warn!("a revocation event the guard cannot read; ignored"),
            },
            "reset" => self.apply_reset(id).await,
            _ => self
                .shared
                .status
                .send_modify(|s| s.last_event_id = id.or(s.last_event_id)),
        }
    }

    async fn apply_reset(&self, id: Option<u64>) {
        self.shared.flush();
        self.cache.invalidate_all();
        self.shared.status.send_modify(|s| {
            s.resets += 1;
            s.last_event_id = id.or(s.last_event_id);
        });
    }

    fn note_error(&self, error: String) {
        self.shared.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(error);
        });
    }
}

/// Exponential, capped, with full jitter over its upper half, so guards cut off together do
/// not reconnect together.
fn backoff(failures: u32) -> Duration {
    let ceiling = FIRST_RETRY
        .saturating_mul(1u32 << failures.min(16))
        .min(LAST_RETRY);
    let draw = tessera_core::random::random_bytes::<2>()
        .map(u16::from_le_bytes)
        .unwrap_or(u16::MAX);
    ceiling / 2 + ceiling.mul_f64(f64::from(draw) / f64::from(u16::MAX)) / 2
}

/// A reqwest error names the URL, which may carry no secret but is noise in a status.
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "the stream endpoint");
    }
    text
}

/// The `data` of a `revoked` event: the token's key in base64url.
#[derive(Deserialize)]
struct RevokedData {
    token_key: String,
}

fn parse_revoked(data: &str) -> Option<CacheKey> {
    let data: RevokedData = serde_json::from_str(data).ok()?;
    let bytes = URL_SAFE_NO_PAD.decode(data.token_key).ok()?;
    CacheKey::try_from(bytes.as_slice()).ok()
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) id: Option<String>,
    pub(crate) kind: String,
    pub(crate) data: String,
}

/// The event-stream format of the HTML Living Standard, §9.2.6, read incrementally: lines end
/// in CR LF, LF or CR; a blank line dispatches; a line starting with a colon is a comment.
#[derive(Default)]
pub(crate) struct EventParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF belongs to that line end.
    after_cr: bool,
    id: Option<String>,
    kind: String,
    data: String,
    has_data: bool,
    /// This event set an id: even without data, the id is the point to resume from.
    has_id: bool,
    pending: usize,
}

impl EventParser {
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\r' | b'\n' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&line) {
                        events.push(event);
                    }
                }
                _ => {
                    self.line.push(byte);
                    self.pending += 1;
                    if self.pending > MAX_EVENT_BYTES {
                        return Err("an event larger than the guard reads".into());
                    }
                }
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            self.pending = 0;
            let kind = std::mem::take(&mut self.kind);
            let data = std::mem::take(&mut self.data);
            let has_id = std::mem::take(&mut self.has_id);
            if !std::mem::take(&mut self.has_data) {
                // Not dispatched as an event, but the id stands (the standard sets the "last
                // event ID" before it looks at the data).
                return has_id.then(|| Event {
                    id: self.id.clone(),
                    kind: String::new(),
                    data,
                });
            }
            return Some(Event {
                id: self.id.clone(),
                kind: if kind.is_empty() {
                    "message".into()
                } else {
                    kind
                },
                data,
            });
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.kind = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_owned());
                self.has_id = true;
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = EventParser::default();
        chunks
            .iter()
            .flat_map(|c| parser.feed(c).unwrap())
            .collect()
    }

    #[test]
    fn reads_events_split_anywhere_with_any_line_end() {
        let whole = b": hello\n\nid: 7\nevent: revoked\ndata: {\"a\":1}\n\nid:8\r\nevent:reset\r\ndata:\r\n\r\n";
        let expected = vec![
            Event {
                id: Some("7".into()),
                kind: "revoked".into(),
                data: "{\"a\":1}".into(),
            },
            Event {
                id: Some("8".into()),
                kind: "reset".into(),
                data: String::new(),
            },
        ];
        assert_eq!(events(&[whole]), expected);
        for split in 1..whole.len() {
            let (a, b) = whole.split_at(split);
            assert_eq!(events(&[a, b]), expected, "split at {split}");
        }
        // A lone CR ends a line too; a comment or an event without data dispatches nothing,
        // unless it sets an id, which is then where to resume.
        assert_eq!(
            events(&[b"event: x\rdata: y\r\revent: z\n\n:c\n\nid: 9\n\n"]),
            vec![
                Event {
                    id: None,
                    kind: "x".into(),
                    data: "y".into()
                },
                Event {
                    id: Some("9".into()),
                    kind: String::new(),
                    data: String::new()
                }
            ]
        );
    }

    #[test]
    fn refuses_an_endless_line() {
        let mut parser = EventParser::default();
        assert!(parser.feed(&vec![b'a'; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn reads_a_revocation_and_nothing_else() {
        let key = [7u8; 32];
        let data = format!(r#"{{"token_key":"{}"}}"#, URL_SAFE_NO_PAD.encode(key));
        assert_eq!(parse_revoked(&data), Some(key));
        // The server's own encoding of a key.
        let server = tessera_core::revocation::RevokedData::of(&tessera_core::token::TokenKey(key));
        assert_eq!(
            parse_revoked(&serde_json::to_string(&server).unwrap()),
            Some(key)
        );
        for wrong in [
            "{}",
            r#"{"token_key":"AAAA"}"#,
            r#"{"token_key":"not base64!"}"#,
            "nonsense",
        ] {
            assert_eq!(parse_revoked(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_and_jitters() {
        for failures in [0, 1, 5, 40] {
            let ceiling = FIRST_RETRY
                .saturating_mul(1u32 << failures.min(16))
                .min(LAST_RETRY);
            let delay = backoff(failures);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{failures}: {delay:?}"
            );
        }
        assert!(backoff(40) > backoff(0));
    }

    /// Stream state with `fallback_ttl`, keeping revoked keys a minute.
    fn shared(fallback_ttl: Duration) -> StreamShared {
        StreamShared::new(
            fallback_ttl,
            Duration::from_secs(60),
            100,
            GuardMeters::new("test"),
        )
    }

    fn entry(started: u64, stored_at: Instant) -> Entry {
        Entry {
            info: None,
            ttl: Duration::from_secs(60),
            started,
            stored_at,
            settled: AtomicBool::new(false),
        }
    }

    #[test]
    fn an_answer_from_before_a_revocation_or_a_flush_is_not_admitted() {
        let shared = shared(Duration::from_secs(5));
        shared.set_connected(true);
        let key = [1u8; 32];
        let before = shared.epoch();
        shared.revoke(key);
        // Introspected before the event, cached after it had evicted the key.
        assert!(matches!(
            shared.admits(&key, &entry(before, Instant::now())),
            Admission::Revoked
        ));
        // Introspected after the event: the server's answer already reflects it.
        let after = shared.epoch();
        assert!(matches!(
            shared.admits(&key, &entry(after, Instant::now())),
            Admission::Fresh
        ));
        assert!(matches!(
            shared.admits(&[2u8; 32], &entry(before, Instant::now())),
            Admission::Fresh
        ));
        shared.flush();
        assert!(matches!(
            shared.admits(&[2u8; 32], &entry(before, Instant::now())),
            Admission::Stale
        ));
    }

    #[test]
    fn an_entry_checked_once_is_not_looked_up_again() {
        let shared = shared(Duration::from_secs(5));
        shared.set_connected(true);
        let key = [4u8; 32];
        let cached = entry(shared.epoch(), Instant::now());
        assert!(matches!(shared.admits(&key, &cached), Admission::Fresh));
        assert!(cached.settled.load(Ordering::Acquire));
        // From here on the event's eviction, not the lookup, removes the entry.
        shared.revoke(key);
        assert!(matches!(shared.admits(&key, &cached), Admission::Fresh));
        // A refused entry is never settled.
        let stale = entry(0, Instant::now());
        assert!(matches!(shared.admits(&key, &stale), Admission::Revoked));
        assert!(!stale.settled.load(Ordering::Acquire));
    }

    #[test]
    fn while_down_answers_older_than_the_fallback_ttl_are_stale() {
        let shared = shared(Duration::from_millis(50));
        let key = [3u8; 32];
        let old = Instant::now()
            .checked_sub(Duration::from_millis(100))
            .unwrap_or_else(Instant::now);
        assert!(matches!(
            shared.admits(&key, &entry(0, Instant::now())),
            Admission::Fresh
        ));
        assert!(matches!(
            shared.admits(&key, &entry(0, old)),
            Admission::Stale
        ));
        shared.set_connected(true);
        assert!(matches!(
            shared.admits(&key, &entry(0, old)),
            Admission::Fresh
        ));
    }
}
