//! The revocation stream (a Tessera extension, see `tessera_core::revocation`): a registered
//! resource server follows the revocations of the access tokens for it, so it may cache
//! introspection answers and still refuse a revoked token at once.
//!
//! One reader per node reads each new page of events once, after each wake-up of the store's
//! feed, and hands it to every stream of the node, each keeping the events for its resource:
//! a revocation costs the database one read per node, not one per stream. A stream that is
//! behind (it resumed from an earlier event, or took too long over a page and missed the
//! next) reads the store itself until it has caught up. Streams are bounded per resource and
//! per node, so that opening them cannot exhaust a node, and all end when the node stops.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tessera_core::OAuthError;
use tessera_core::form::FormParams;
use tessera_core::resource::ResourceUri;
use tessera_core::revocation::{StreamStart, stream_start};
use tessera_core::token::TokenKey;
use tessera_store::{RevocationEvent, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Flows;
use crate::client_auth::Allowed;
use crate::error::FlowError;

/// Streams open at once for one resource: a few per instance of a resource server.
pub const STREAMS_PER_RESOURCE: usize = 8;
/// Streams open at once on one node.
pub const STREAMS_PER_NODE: usize = 512;
/// Events read at once.
const PAGE: u32 = 256;
/// How often at most a stream tells how far it has read when none of the events was for
/// its resource (see [`StreamItem::Progress`]).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How long the reader waits after the store failed before it reads again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// What a refused stream is told to wait, in seconds.
const FULL_RETRY_AFTER: i64 = 5;

/// What a stream sends next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamItem {
    /// An access token for the resource was revoked: event `seq`.
    Revoked { seq: u64, token_key: TokenKey },
    /// Events may have been missed: the resource server must forget every token it cached.
    /// The stream goes on after event `latest`.
    Reset { latest: u64 },
    /// Read up to event `seq`, none of them for this resource: an id to resume after, so
    /// that a resource that hears little does not fall behind the events kept.
    Progress { seq: u64 },
}

impl Flows {
    /// `GET /revocations`: authenticates a registered resource server (HTTP Basic: a `GET`
    /// has no form) and opens its stream, resuming after `last_event_id` if given.
    pub async fn revocation_stream(
        &self,
        authorization: Option<&[u8]>,
        last_event_id: Option<&str>,
        caller: Option<IpAddr>,
    ) -> Result<RevocationStream, FlowError> {
        let now = self.now();
        if authorization.is_none() {
            return Err(OAuthError::invalid_client(true).into());
        }
        let none = FormParams::default();
        let client = self
            .clients
            .authenticate(authorization, &none, Allowed::ConfidentialOnly, caller, now)
            .await?;
        let Some(resource) = client.resource.clone() else {
            tracing::warn!(client_id = %client.id, "revocation stream refused: not a resource");
            return Err(OAuthError::invalid_client(true).into());
        };
        let Some(slot) = self.revocation_streams.reserve(&resource) else {
            tracing::warn!(%resource, "revocation stream refused: too many open");
            return Err(FlowError::Throttled {
                retry_after: FULL_RETRY_AFTER,
            });
        };
        let streams = &self.revocation_streams;
        // Before the window is read: a page read after it is then seen by this stream.
        let pages = streams.pages();
        let window = self.store.revocation_window().await?;
        let (cursor, ready) = match stream_start(last_event_id, window.horizon, window.latest) {
            // Where it starts, at once: a client cut off before any event still has a point to
            // resume from, and misses nothing revoked in between.
            StreamStart::After(seq) => (seq, VecDeque::from([StreamItem::Progress { seq }])),
            StreamStart::Reset(latest) => (latest, VecDeque::from([StreamItem::Reset { latest }])),
        };
        tracing::debug!(%resource, cursor, "revocation stream opened");
        Ok(RevocationStream {
            store: self.store.clone(),
            resource,
            cursor,
            ready,
            behind: true,
            pages,
            stop: streams.stop.subscribe(),
            last_id_sent: Instant::now(),
            _slot: slot,
        })
    }

    /// Ends every revocation stream of this node (it is stopping), and refuses new ones.
    pub fn stop_revocation_streams(&self) {
        self.revocation_streams.stop.send_replace(true);
    }
}

/// One resource server's stream.
pub struct RevocationStream {
    store: Arc<dyn Store>,
    resource: ResourceUri,
    /// The last event read, whether it was for this resource or not.
    cursor: u64,
    ready: VecDeque<StreamItem>,
    /// Whether the store may hold events after `cursor` that no page will bring.
    behind: bool,
    pages: watch::Receiver<Arc<Page>>,
    stop: watch::Receiver<bool>,
    last_id_sent: Instant,
    _slot: Slot,
}

impl std::fmt::Debug for RevocationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationStream")
            .field("resource", &self.resource)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl RevocationStream {
    /// The next item to send, once there is one; `None` when the stream ends: the node is
    /// stopping, or the store failed (the resource server reconnects, to this node or another,
    /// and resumes).
    pub async fn next(&mut self) -> Option<StreamItem> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                if let StreamItem::Revoked { .. } = item {
                    crate::measure::revocation_event_sent();
                }
                self.last_id_sent = Instant::now();
                return Some(item);
            }
            if *self.stop.borrow() {
                return None;
            }
            if self.behind {
                match read_page(&*self.store, self.cursor).await {
                    Ok(page) => {
                        self.behind = page.is_full();
                        self.take(&page);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, resource = %self.resource, "revocation stream ended");
                        return None;
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.stop.changed() => return None,
                changed = self.pages.changed() => if changed.is_err() {
                    return None;
                },
            }
            // A copy of the pointer: the page is not borrowed across an await.
            let page = self.pages.borrow_and_update().clone();
            if page.after == self.cursor {
                self.take(&page);
            } else if page.through > self.cursor {
                self.behind = true;
            }
        }
    }

    /// Takes the events of `page`, which starts after `cursor`.
    fn take(&mut self, page: &Page) {
        if page.reset {
            self.ready.push_back(StreamItem::Reset {
                latest: page.through,
            });
            self.cursor = page.through;
            return;
        }
        let before = self.ready.len();
        for e in page
            .events
            .iter()
            .filter(|e| e.audience.contains(&self.resource))
        {
            self.ready.push_back(StreamItem::Revoked {
                seq: e.seq,
                token_key: e.token_key,
            });
        }
        let moved = page.through > self.cursor;
        self.cursor = page.through;
        if moved && self.ready.len() == before && self.last_id_sent.elapsed() >= PROGRESS_EVERY {
            self.ready
                .push_back(StreamItem::Progress { seq: page.through });
        }
    }
}

/// The node's streams: their bounds, the reader they share, the signal that ends them.
pub struct RevocationStreams {
    store: Arc<dyn Store>,
    pages: watch::Sender<Arc<Page>>,
    reader: OnceLock<AbortOnDrop>,
    open: Arc<Semaphore>,
    per_resource: Arc<Mutex<HashMap<ResourceUri, usize>>>,
    stop: watch::Sender<bool>,
}

impl RevocationStreams {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            pages: watch::Sender::new(Arc::new(Page::default())),
            reader: OnceLock::new(),
            open: Arc::new(Semaphore::new(STREAMS_PER_NODE)),
            per_resource: Arc::default(),
            stop: watch::Sender::new(false),
        }
    }

    /// A place for one more stream of `resource`, if the bounds leave one and the node is
    /// not stopping.
    fn reserve(&self, resource: &ResourceUri) -> Option<Slot> {
        if *self.stop.borrow() {
            return None;
        }
        let node = self.open.clone().try_acquire_owned().ok()?;
        let mut counts = self
            .per_resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(resource.clone()).or_default();
        if *count >= STREAMS_PER_RESOURCE {
            return None;
        }
        *count += 1;
        crate::measure::stream_subscribers(1.0);
        Some(Slot {
            _node: node,
            resource: resource.clone(),
            counts: self.per_resource.clone(),
        })
    }

    /// The pages the node's reader reads, starting it on first use.
    fn pages(&self) -> watch::Receiver<Arc<Page>> {
        self.reader.get_or_init(|| {
            let reader = read_for_streams(self.store.clone(), self.pages.clone());
            AbortOnDrop(tokio::spawn(reader))
        });
        self.pages.subscribe()
    }
}

/// One stream's place under the bounds, given back when the stream is dropped.
struct Slot {
    _node: OwnedSemaphorePermit,
    resource: ResourceUri,
    counts: Arc<Mutex<HashMap<ResourceUri, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::measure::stream_subscribers(-1.0);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.resource) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.resource);
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The events after one number, up to another.
#[derive(Debug, Default)]
struct Page {
    after: u64,
    /// Where the next page starts: the last event read, or `after` if none.
    through: u64,
    /// Events after `after` were purged unread: a reader there must reset.
    reset: bool,
    events: Vec<RevocationEvent>,
}

impl Page {
    /// Whether more events may follow at once.
    fn is_full(&self) -> bool {
        self.events.len() >= PAGE as usize
    }
}

/// The events after `after`, or a reset if some of them were purged.
async fn read_page(store: &dyn Store, after: u64) -> Result<Page, StoreError> {
    let events = store.revocation_events_after(after, PAGE).await?;
    // Read after the events: a purge that took any of them before that read shows here.
    let window = store.revocation_window().await?;
    if !window.can_resume_after(after) {
        return Ok(Page {
            after,
            through: window.latest,
            reset: true,
            events: Vec::new(),
        });
    }
    let through = events.last().map_or(after, |e| e.seq);
    Ok(Page {
        after,
        through,
        reset: false,
        events,
    })
}

/// The node's reader: after each wake-up of the store's feed, reads every new page once and
/// hands it to the streams.
async fn read_for_streams(store: Arc<dyn Store>, pages: watch::Sender<Arc<Page>>) {
    let mut feed = store.subscribe_revocations();
    let mut cursor = None;
    loop {
        // Marked seen before the read: an event appended during it wakes the next one.
        feed.borrow_and_update();
        let read = read_all(&*store, &pages, &mut cursor).await;
        if let Err(e) = read {
            tracing::warn!(error = %e, "revocation events not read; retrying");
            tokio::time::sleep(RETRY_AFTER).await;
            continue;
        }
        if feed.changed().await.is_err() {
            return;
        }
    }
}

/// Reads and hands over pages until one comes back short. The first read starts from the
/// last event: streams read what came before themselves.
async fn read_all(
    store: &dyn Store,
    pages: &watch::Sender<Arc<Page>>,
    cursor: &mut Option<u64>,
) -> Result<(), StoreError> {
    let mut after = match *cursor {
        Some(after) => after,
        None => store.revocation_window().await?.latest,
    };
    *cursor = Some(after);
    loop {
        let page = read_page(store, after).await?;
        let full = page.is_full();
        after = page.through;
        *cursor = Some(after);
        if page.reset || !page.events.is_empty() {
            pages.send_replace(Arc::new(page));
        }
        if !full {
            return Ok(());
        }
    }
}
