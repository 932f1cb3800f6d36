//! Clients named by the https URL of their metadata document
//! (draft-ietf-oauth-client-id-metadata-document), at the authorization endpoint.
//!
//! The key design decision: the document is fetched through a [`ClientMetadataSource`] that
//! the HTTP layer provides (this crate knows no HTTP), and what it says becomes a row of
//! `clients` like any other client's, refreshed at each fetch, because codes and tokens name
//! their client in the store. So only `/authorize` ever fetches: the token endpoint, the
//! revocation endpoint and the login page find the row the authorization request left.
//!
//! What a URL resolved to (a client, or why not) is kept per node in a bounded cache: a
//! client for [`DOCUMENT_TTL`], a refusal for [`REFUSAL_TTL`], so a flood naming one bad
//! URL costs one fetch per 10 s; concurrent requests for one URL share one fetch, and at
//! most [`MOST_FETCHES`] fetches run at once (beyond that, `temporarily_unavailable`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;
use moka::future::Cache;
use tessera_core::audit::{Actor, AuditEvent, AuditKind};
use tessera_core::client::Client;
use tessera_core::client_metadata::{ClientIdUrl, client_from_document, names_document};
use tokio::sync::Semaphore;

use crate::Flows;
use crate::error::FlowError;
use crate::logged::loggable;

/// How long a client read from its document is used before the document is fetched again.
pub const DOCUMENT_TTL: Duration = Duration::from_secs(300);
/// How long a URL whose document could not be used is refused without fetching it again.
pub const REFUSAL_TTL: Duration = Duration::from_secs(10);
/// The most URLs remembered per node.
pub const MOST_DOCUMENTS: u64 = 1_000;
/// The most documents fetched at once per node.
pub const MOST_FETCHES: usize = 16;

/// Why a document could not be fetched; the text is shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataFetchError {
    /// The URL's host is, or resolves only to, an address that may not be reached
    /// (loopback, private, link-local, ...).
    #[error("its host is not a public address")]
    Forbidden,
    #[error("it is larger than 5 KB")]
    TooLarge,
    #[error("its server did not answer in time")]
    Timeout,
    /// Any answer but 200, redirects included: they are not followed.
    #[error("its server answered with HTTP status {0} (redirects are not followed)")]
    Status(u16),
    #[error("it could not be fetched ({0})")]
    Unreachable(String),
}

/// Fetches the document a `client_id` URL names: the bytes of a 200 answer, at most
/// [`tessera_core::client_metadata::MAX_DOCUMENT_BYTES`] of them.
#[async_trait]
pub trait ClientMetadataSource: Send + Sync {
    async fn fetch(&self, url: &ClientIdUrl) -> Result<Vec<u8>, MetadataFetchError>;
}

/// The source and the memory of what each URL resolved to.
pub struct ClientMetadataDocuments {
    source: Arc<dyn ClientMetadataSource>,
    resolved: Cache<String, Resolved>,
    fetching: Semaphore,
}

/// What a URL resolved to.
#[derive(Debug, Clone)]
enum Resolved {
    Client(Arc<Client>),
    Refused(Arc<str>),
}

/// A client for [`DOCUMENT_TTL`], a refusal for [`REFUSAL_TTL`].
struct ByOutcome;

impl Expiry<String, Resolved> for ByOutcome {
    fn expire_after_create(&self, _: &String, value: &Resolved, _: Instant) -> Option<Duration> {
        Some(match value {
            Resolved::Client(_) => DOCUMENT_TTL,
            Resolved::Refused(_) => REFUSAL_TTL,
        })
    }
}

impl ClientMetadataDocuments {
    pub fn new(source: Arc<dyn ClientMetadataSource>) -> Self {
        Self {
            source,
            resolved: Cache::builder()
                .max_capacity(MOST_DOCUMENTS)
                .expire_after(ByOutcome)
                .build(),
            fetching: Semaphore::new(MOST_FETCHES),
        }
    }
}

/// What a `client_id` names at the authorization endpoint.
#[derive(Debug)]
pub enum ClientLookup {
    Found(Arc<Client>),
    /// Registered nowhere.
    Unknown,
    /// A URL whose document cannot be used, and why (for the person).
    Refused(String),
}

impl Flows {
    /// The client an authorization request names: a registered one from the store, or one
    /// described by the metadata document its URL names, fetched (or remembered) now.
    pub async fn authorizing_client(&self, client_id: &str) -> Result<ClientLookup, FlowError> {
        if !names_document(client_id) {
            return Ok(match self.clients.client(client_id).await? {
                Some(client) => ClientLookup::Found(client),
                None => ClientLookup::Unknown,
            });
        }
        let Some(documents) = &self.documents else {
            return Ok(ClientLookup::Refused(
                "This server does not accept client metadata documents: the application must \
                 use a client_id registered here."
                    .into(),
            ));
        };
        let url = match ClientIdUrl::parse(client_id) {
            Ok(url) => url,
            Err(e) => return Ok(ClientLookup::Refused(capitalised(&e.to_string()))),
        };
        let resolved = self.resolved_document(documents, &url).await?;
        if let Resolved::Refused(why) = resolved {
            return Ok(ClientLookup::Refused(why.to_string()));
        }
        // The row may have been deleted since the document was read (`client delete`): the
        // store decides, so a deleted client is read again from its document, not used.
        if let Some(client) = self.clients.client(url.as_str()).await? {
            return Ok(ClientLookup::Found(client));
        }
        documents.resolved.invalidate(url.as_str()).await;
        Ok(match self.resolved_document(documents, &url).await? {
            Resolved::Client(client) => ClientLookup::Found(client),
            Resolved::Refused(why) => ClientLookup::Refused(why.to_string()),
        })
    }

    /// What `url` resolves to, remembered or fetched now (one fetch for concurrent callers).
    async fn resolved_document(
        &self,
        documents: &ClientMetadataDocuments,
        url: &ClientIdUrl,
    ) -> Result<Resolved, FlowError> {
        documents
            .resolved
            .try_get_with(
                url.as_str().to_owned(),
                self.resolve_document(documents, url),
            )
            .await
            .map_err(|shared| Arc::try_unwrap(shared).unwrap_or_else(FlowError::internal))
    }

    /// Fetches and reads the document, and stores the client it describes. A failure of
    /// the store is an error (not remembered); a bad document is a refusal (remembered).
    async fn resolve_document(
        &self,
        documents: &ClientMetadataDocuments,
        url: &ClientIdUrl,
    ) -> Result<Resolved, FlowError> {
        let refused = |why: String| {
            tracing::info!(
                event = "client_metadata_document_refused",
                client_id = %loggable(url.as_str()),
                why = %why,
            );
            Ok(Resolved::Refused(
                format!(
                    "The application's client metadata document at {url} cannot be used: {why}."
                )
                .into(),
            ))
        };
        let Ok(_permit) = documents.fetching.try_acquire() else {
            return Err(crate::hashing::Busy.into());
        };
        let document = match documents.source.fetch(url).await {
            Ok(document) => document,
            Err(e) => return refused(e.to_string()),
        };
        let offered = self.resources.offered_scope().await?;
        let client = match client_from_document(url, &document, &offered, self.now()) {
            Ok(client) => client,
            Err(e) => return refused(e.to_string()),
        };
        if !self.store.put_document_client(&client).await? {
            return refused("its URL is the client_id of a client registered here".into());
        }
        // The token endpoint reads the client from the store: it must see this version.
        self.clients.forget(client.id.as_str()).await;
        tracing::info!(event = "client_metadata_document_read", client_id = %client.id);
        // Once per node and document's time in the cache: a registration nobody vetted.
        let event = AuditEvent::new(self.now(), AuditKind::ClientRegistered, Actor::Anonymous)
            .client(client.id.as_str())
            .with("via", "metadata_document");
        crate::audit::record(&*self.store, event).await;
        Ok(Resolved::Client(Arc::new(client)))
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}
