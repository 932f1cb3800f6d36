//! What a node needs to know. Every field has a `TESSERA_*` setting in the binary.

use std::net::SocketAddr;
use std::time::Duration;

use tessera_core::authorize::PkcePolicy;
use tessera_core::clock::Clock;
use tessera_core::grant::Lifetimes;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The issuer URL (RFC 8414). `None`: `http://` and the bound address.
    pub issuer: Option<String>,
    pub lifetimes: Lifetimes,
    /// How often the janitor purges expired and revoked tokens.
    pub janitor_interval: Duration,
    pub clock: Clock,
    /// Whether confidential clients must use PKCE too (public clients always must).
    pub pkce: PkcePolicy,
    /// How long a browser session at the server lasts, in seconds.
    pub session_ttl: i64,
    /// How long a node may reuse a client's registration read from the store (zero: read it
    /// on every request). A client deleted or changed by the CLI takes effect on every node
    /// within this time; in exchange most requests skip one database round trip.
    pub client_cache_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            issuer: None,
            lifetimes: Lifetimes::default(),
            janitor_interval: Duration::from_secs(60),
            clock: Clock::system(),
            pkce: PkcePolicy::default(),
            session_ttl: 8 * 3600,
            client_cache_ttl: Duration::from_secs(2),
        }
    }
}
