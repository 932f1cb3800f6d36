//! What a node needs to know. Every field has a `TESSERA_*` setting in the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tessera_core::authorize::PkcePolicy;
use tessera_core::clock::Clock;
use tessera_core::grant::Lifetimes;
use tessera_core::oidc::KeyEncryptionKey;
use tessera_core::registration::RegistrationPolicy;

/// How long audit events are kept unless said otherwise: 90 days.
pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(90 * 86_400);

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The issuer URL (RFC 8414). `None`: `http://` and the bound address.
    pub issuer: Option<String>,
    pub lifetimes: Lifetimes,
    /// How often the janitor purges expired and revoked tokens.
    pub janitor_interval: Duration,
    /// How long revocation events are kept; the janitor purges older ones.
    pub revocation_event_retention: Duration,
    /// How often an idle revocation stream sends a comment, so that proxies keep it open.
    pub revocation_heartbeat: Duration,
    /// How long audit events are kept; the janitor purges older ones.
    pub audit_retention: Duration,
    pub clock: Clock,
    /// Whether confidential clients must use PKCE too (public clients always must).
    pub pkce: PkcePolicy,
    /// How long a browser session at the server lasts, in seconds.
    pub session_ttl: i64,
    /// How long a node may reuse a client's registration read from the store (zero: read it
    /// on every request). A client deleted or changed by the CLI takes effect on every node
    /// within this time; in exchange most requests skip one database round trip.
    pub client_cache_ttl: Duration,
    /// How long a client has to send a request's headers, from the connection's accept or
    /// from the first byte of a later request on it; past it the connection is closed.
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// How many connections are served at once; further ones wait in the listen backlog
    /// until one closes. Lowered at start to fit the open-file limit (see [`crate::Server`]).
    pub max_connections: usize,
    /// Proxies whose `X-Forwarded-For` names the caller (see [`crate::proxy`]); empty: the
    /// socket's peer is the caller.
    pub trusted_proxies: Vec<crate::proxy::Cidr>,
    /// Who may register a client at `/register` (RFC 7591): nobody by default.
    pub registration: RegistrationPolicy,
    /// Whether a `client_id` may be the https URL of a client metadata document, fetched
    /// at `/authorize` (draft-ietf-oauth-client-id-metadata-document).
    pub client_metadata_documents: bool,
    /// Fetch documents from loopback addresses too: for local development and tests only.
    pub allow_loopback_client_metadata: bool,
    /// PEM certificates trusted besides the system's roots when fetching documents.
    pub client_metadata_ca_file: Option<PathBuf>,
    /// Opens the ID-token signing keys stored in the database (see `tessera_flow::keys`).
    pub key_encryption_key: Option<KeyEncryptionKey>,
    /// How often a node reads the signing keys again (to follow a rotation).
    pub key_reload_interval: Duration,
    /// Where `GET /metrics` (Prometheus) is served, on a listener of its own; `None`: no
    /// metrics are recorded at all (see [`crate::prometheus`]).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the admin API (and its `/openapi.json`) is served, on a listener of its own;
    /// `None`: nowhere.
    pub admin_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: None,
            lifetimes: Lifetimes::default(),
            janitor_interval: Duration::from_secs(60),
            revocation_event_retention: Duration::from_secs(3600),
            revocation_heartbeat: Duration::from_secs(15),
            audit_retention: DEFAULT_AUDIT_RETENTION,
            clock: Clock::system(),
            pkce: PkcePolicy::default(),
            session_ttl: 8 * 3600,
            client_cache_ttl: Duration::from_secs(2),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
            registration: RegistrationPolicy::Off,
            client_metadata_documents: false,
            allow_loopback_client_metadata: false,
            client_metadata_ca_file: None,
            key_encryption_key: None,
            key_reload_interval: tessera_flow::keys::RELOAD_INTERVAL,
            metrics_listen: None,
            admin_listen: None,
        }
    }
}
