//! Tessera's grant flows: each OAuth step sequenced over the store, with no HTTP.
//!
//! The key design decision: a flow is a function over the store, the clock and typed inputs
//! that returns a typed outcome. `tessera-core` decides (is this code good, may this client
//! have that scope); a flow finds the records, asks core, writes the result and reacts to
//! what the store says (a replayed code, a reused refresh token). The HTTP layer extracts a
//! request, calls one flow and maps its outcome, so every grant is testable without a
//! socket, on both databases.
//!
//! Layout:
//! - [`Flows`]: the node's flows over one store, as the server calls them.
//! - [`client_auth`]: the one home of client authentication and its caches.
//! - [`client_metadata`]: clients named by the URL of their metadata document, fetched
//!   through a [`ClientMetadataSource`] the HTTP layer provides.
//! - [`token`]: client_credentials, the authorization-code exchange, refresh rotation.
//! - [`resources`]: the registered resource servers, and the audience of a new grant.
//! - [`revoke`]: RFC 7009 revocation, its reach decided by `tessera_core::revocation`.
//! - [`introspect`]: RFC 7662 introspection.
//! - [`revocation_stream`]: revocations pushed to the resource servers that cache tokens.
//! - [`authorize`]: the authorization request, consent and code issuance.
//! - [`keys`]: ID-token signing keys, sealed under the key-encryption key, shared by the nodes.
//! - [`oidc`]: OpenID Connect: the ID token of a code exchange, userinfo.
//! - [`login`]: signing a person in and out, with [`throttle`] against guessing.
//! - [`register`]: clients registering themselves (RFC 7591) and managing that (RFC 7592).
//! - [`audit`]: the audit trail, written after each action it records; a failure is logged.
//! - [`logged`]: attacker-chosen identifiers, truncated and escaped for the log.
//! - `measure`: the counters, gauges and histograms the flows record (`metrics` facade).
//! - [`admin`]: the admin API's operations on clients, resources, users and their tokens.
//! - [`error`]: why a flow failed, as [`FlowError`].

pub mod admin;
pub mod audit;
pub mod authorize;
pub mod client_auth;
pub mod client_metadata;
pub mod error;
pub mod hashing;
pub mod introspect;
pub mod keys;
pub mod logged;
pub mod login;
mod measure;
pub mod oidc;
pub mod register;
pub mod resources;
pub mod revocation_stream;
pub mod revoke;
pub mod throttle;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use tessera_core::authorize::PkcePolicy;
use tessera_core::clock::{Clock, UnixTime};
use tessera_core::grant::Lifetimes;
use tessera_core::oidc::KeyEncryptionKey;
use tessera_core::registration::RegistrationPolicy;
use tessera_store::Store;

pub use client_auth::{Allowed, ClientAuthenticator};
pub use client_metadata::{ClientMetadataSource, MetadataFetchError};
pub use error::FlowError;
pub use measure::describe as describe_metrics;

/// What the flows of one node need to know.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The issuer URL without a trailing slash.
    pub issuer: String,
    pub lifetimes: Lifetimes,
    pub pkce: PkcePolicy,
    pub clock: Clock,
    /// How long a browser session lasts, in seconds.
    pub session_ttl: i64,
    /// How long a client's registration may be reused without reading the store again.
    pub client_cache_ttl: Duration,
    /// Who may register a client at `/register` (RFC 7591).
    pub registration: RegistrationPolicy,
    /// Opens the ID-token signing keys; without it and without keys, OpenID Connect is off.
    pub key_encryption_key: Option<KeyEncryptionKey>,
    /// How often the signing keys are read again, so every node follows a rotation.
    pub key_reload_interval: Duration,
}

/// The flows of one node over one store. Cheap to clone: one shared allocation.
#[derive(Clone)]
pub struct Flows(Arc<Shared>);

pub struct Shared {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
    pub clients: ClientAuthenticator,
    pub resources: resources::Resources,
    pub throttle: throttle::Throttle,
    /// Client metadata documents, when this node accepts them.
    pub documents: Option<client_metadata::ClientMetadataDocuments>,
    pub revocation_streams: revocation_stream::RevocationStreams,
    pub keys: keys::SigningKeys,
    pub(crate) meters: measure::EndpointMeters,
}

impl std::ops::Deref for Flows {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Flows {
    /// Flows that accept no client metadata documents.
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        Self::with_documents(store, settings, None)
    }

    /// Flows that accept client metadata documents, fetched from `documents`, if given.
    pub fn with_documents(
        store: Arc<dyn Store>,
        mut settings: Settings,
        documents: Option<Arc<dyn ClientMetadataSource>>,
    ) -> Self {
        settings.issuer = settings.issuer.trim_end_matches('/').to_owned();
        let throttle = throttle::Throttle::default();
        Self(Arc::new(Shared {
            clients: ClientAuthenticator::new(
                store.clone(),
                settings.client_cache_ttl,
                throttle.clone(),
            ),
            resources: resources::Resources::new(store.clone(), settings.client_cache_ttl),
            revocation_streams: revocation_stream::RevocationStreams::new(store.clone()),
            keys: keys::SigningKeys::new(
                store.clone(),
                settings.key_encryption_key.clone(),
                settings.key_reload_interval,
            ),
            store,
            settings,
            throttle,
            documents: documents.map(client_metadata::ClientMetadataDocuments::new),
            meters: measure::EndpointMeters::register(),
        }))
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    pub fn now(&self) -> UnixTime {
        self.settings.clock.now()
    }
}
