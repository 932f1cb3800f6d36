//! Tessera's storage: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//!
//! The key design decision: one trait, two concrete implementations with their own
//! migrations, and no dialect branching anywhere else. Callers hold an `Arc<dyn Store>` and
//! never learn which database is behind it; a shared conformance suite (`tests/it`) runs the
//! same assertions against both. The store keeps no policy: it records and finds; what may be
//! issued or revoked is decided in `tessera-core` and orchestrated by the server.
//!
//! Secrets never reach this crate in clear: tokens arrive as their SHA-256 ([`TokenKey`]),
//! client secrets as Argon2id PHC strings, ID-token signing keys sealed under a
//! key-encryption key this crate never sees ([`StoredSigningKey`]).
//!
//! Layout:
//! - [`Store`], [`StoreError`]: the contract.
//! - [`sqlite`]: the embedded default (WAL, `synchronous=FULL`, so acknowledged writes survive
//!   power loss).
//! - [`postgres`]: for several nodes on one database; migrations take an advisory lock.
//! - [`testing`]: fresh throw-away databases for tests and benchmarks.
//! - [`metered`]: a [`Store`] around another that times each operation and counts failures.
//! - [`RevocationEvent`]s: each revocation of a live access token, appended in the
//!   revocation's own transaction, in one order across nodes, for the resource servers that
//!   cache tokens; `feed` wakes their readers.
//! - The audit trail: events appended, read by filter in id order, purged by age.

mod error;
mod feed;
pub mod metered;
mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;
pub mod testing;

use std::sync::Arc;

use async_trait::async_trait;
use tessera_core::admin::AdminTokenRecord;
use tessera_core::audit::{AuditEvent, AuditFilter, AuditRecord};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::ids::{ClientId, FamilyId, UserId};
use tessera_core::oidc::Profile;
use tessera_core::registration::{InitialAccessTokenRecord, Registration};
use tessera_core::resource::{Audience, Resource, ResourceUri};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenKey, TokenRecord};
use tessera_core::user::User;
use tokio::sync::watch;

pub use error::StoreError;

/// Everything Tessera persists. Implementations must be safe to share between tasks and,
/// for PostgreSQL, between processes on the same database.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Brings the schema up to date. Safe to call from several processes at once.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores a new client; [`StoreError::Conflict`] if the id exists.
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
    /// All clients, oldest first.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Deletes a client and, with it, every token, code and consent of it. The access tokens
    /// still live at `now` get revocation events.
    async fn delete_client(&self, client_id: &str, now: UnixTime) -> Result<bool, StoreError>;
    /// Revokes every live token issued to the client, at `now`. Returns how many, or `None`
    /// if there is no such client.
    async fn revoke_client_tokens(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError>;

    /// Stores a self-registered client (RFC 7591) with the key of its registration access
    /// token; [`StoreError::Conflict`] if the id exists.
    async fn create_registration(&self, registration: &Registration) -> Result<(), StoreError>;
    /// The self-registered client under `client_id`, with its token key; `None` for a client
    /// an operator registered, as for one that does not exist.
    async fn find_registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError>;
    /// Stores, or refreshes, a client described by its metadata document (a public,
    /// self-registered client without a registration access token): an existing one gets
    /// the new name, grant types, scope and redirect URIs and keeps its creation time.
    /// Returns `false`, changing nothing, if the id belongs to a client registered otherwise.
    async fn put_document_client(&self, client: &Client) -> Result<bool, StoreError>;
    /// Replaces a self-registered client's metadata (name, auth method, grant types, scope,
    /// redirect URIs; never its id, secret or token). Returns whether such a client existed.
    async fn update_registration(&self, client: &Client) -> Result<bool, StoreError>;
    /// Stores an initial access token (RFC 7591 §3) under its key.
    async fn create_initial_access_token(
        &self,
        token: &InitialAccessTokenRecord,
    ) -> Result<(), StoreError>;
    /// Whether an initial access token is stored under `hash` and unexpired at `now`.
    async fn initial_access_token_is_live(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Registers a resource server together with the client it authenticates as, both or
    /// neither; [`StoreError::Conflict`] if the identifier is taken.
    async fn create_resource(&self, resource: &Resource, client: &Client)
    -> Result<(), StoreError>;
    /// All resource servers, oldest first.
    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError>;
    /// Deletes a resource server and its client (as [`Store::delete_client`]). Tokens for it
    /// stay, useless to anyone but the clients they were issued to, until they expire.
    async fn delete_resource(&self, uri: &ResourceUri, now: UnixTime) -> Result<bool, StoreError>;

    /// Stores a new user; [`StoreError::Conflict`] if the username is taken.
    async fn create_user(&self, user: &User) -> Result<(), StoreError>;
    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// Deletes a user with their tokens, codes, sessions and consents. The access tokens
    /// still live at `now` get revocation events.
    async fn delete_user(&self, username: &str, now: UnixTime) -> Result<bool, StoreError>;
    /// Revokes every live token issued for the user, at `now`; their sessions stay. Returns
    /// how many, or `None` if there is no such user.
    async fn revoke_user_tokens(
        &self,
        username: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError>;
    /// Replaces a password hash, ends the user's sessions and revokes every token issued for
    /// the user at `now`: a password change is how an operator throws a thief out.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Stores tokens atomically: all of them (an access and a refresh token) or none.
    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError>;
    /// The token under `hash`, with its subject's username.
    async fn find_token(&self, hash: &TokenKey) -> Result<Option<TokenRecord>, StoreError>;
    /// Marks one token revoked at `now`, unless it already is. Returns whether a row changed.
    async fn revoke_token(&self, hash: &TokenKey, now: UnixTime) -> Result<bool, StoreError>;
    /// Revokes every live token of a family. Returns how many rows changed.
    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError>;
    /// Marks the refresh token rotated and stores its successors, in one transaction.
    /// Returns `false` (and stores nothing) if it was already rotated or revoked: of two
    /// concurrent rotations exactly one wins.
    async fn rotate_refresh_token(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        successors: &[TokenRecord],
    ) -> Result<bool, StoreError>;

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError>;
    async fn find_code(
        &self,
        hash: &TokenKey,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError>;
    /// Marks the code redeemed and stores the tokens it is exchanged for, in one transaction.
    /// Of two concurrent redemptions exactly one gets [`Redemption::Redeemed`].
    async fn redeem_code(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        tokens: &[TokenRecord],
    ) -> Result<Redemption, StoreError>;

    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;
    /// The user of a session that is live at `now`.
    async fn find_session_user(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<User>, StoreError>;
    async fn delete_session(&self, hash: &TokenKey) -> Result<(), StoreError>;
    /// When the session under `hash`, live at `now`, began: its person's last sign-in.
    async fn session_signed_in_at(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError>;

    /// A user's username and profile (the OpenID Connect claims), by user id.
    async fn get_profile(&self, user_id: &str) -> Result<Option<(String, Profile)>, StoreError>;
    /// Replaces a user's profile. Returns whether such a user exists.
    async fn set_profile(&self, username: &str, profile: &Profile) -> Result<bool, StoreError>;

    /// A client's OpenID Connect settings; `None` if it has none (or does not exist).
    async fn get_client_oidc(&self, client_id: &str) -> Result<Option<ClientOidc>, StoreError>;
    /// Stores (replacing) a client's OpenID Connect settings; [`StoreError::MissingReference`]
    /// if there is no such client.
    async fn put_client_oidc(&self, client_id: &str, oidc: &ClientOidc) -> Result<(), StoreError>;

    /// Stores a new ID-token signing key; [`StoreError::Conflict`] if its `kid` exists.
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError>;
    /// Every signing key, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError>;
    /// Marks every current key retired at `now` and stores `new` keys, in one transaction:
    /// every node then signs with the new ones, and publishes both.
    async fn rotate_signing_keys(
        &self,
        new: &[StoredSigningKey],
        now: UnixTime,
    ) -> Result<(), StoreError>;
    /// Deletes the keys retired at or before `retired_before`. Returns how many went.
    async fn prune_signing_keys(&self, retired_before: UnixTime) -> Result<u64, StoreError>;

    /// The scope a user has approved for a client, if any.
    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Scope>, StoreError>;
    /// Records (replacing) the scope a user has approved for a client.
    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
        now: UnixTime,
    ) -> Result<(), StoreError>;

    /// Deletes up to `batch` rows of each kind of dead thing: tokens expired at `now`, revoked
    /// tokens, expired codes, expired sessions, expired initial access tokens. Returns the
    /// largest count of one kind, so a caller repeats while it equals `batch`. Small batches
    /// keep transactions short.
    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError>;

    /// Up to `limit` revocation events numbered after `after`, in order. Every method that
    /// revokes or deletes a live access token appends its event in the same transaction.
    async fn revocation_events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<RevocationEvent>, StoreError>;
    /// Which events are still kept. Asked after [`Store::revocation_events_after`], it tells
    /// whether what that returned may lack purged events (see [`RevocationWindow`]).
    async fn revocation_window(&self) -> Result<RevocationWindow, StoreError>;
    /// Deletes up to `batch` of the oldest events, all created at or before `older_than`,
    /// and moves the horizon past them. Returns how many went.
    async fn purge_revocation_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError>;
    /// The number of the last revocation event this node knows of, changed whenever events
    /// are appended: by this node at once, by other processes within about a second. A wake-up
    /// only: readers read what is new with [`Store::revocation_events_after`].
    fn subscribe_revocations(&self) -> watch::Receiver<u64>;

    /// Appends `event` to the audit trail; returns its id. A statement of its own, after
    /// the action it records: the callers decide what a failure here means.
    async fn append_audit_event(&self, event: &AuditEvent) -> Result<u64, StoreError>;
    /// The audit events `filter` asks for, oldest first (in id order). A reader pages on
    /// with `filter.after` set to the last id it got. On PostgreSQL ids are taken in the order
    /// of asking and committed a moment later, so a page read while events are appended may
    /// miss one committed just after it with a smaller id; a reader after the fact misses
    /// nothing.
    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes up to `batch` of the audit events recorded before `older_than`. Returns how
    /// many went, so a caller repeats while it equals `batch`.
    async fn purge_audit_events(&self, older_than: UnixTime, batch: u32)
    -> Result<u64, StoreError>;
    /// Stores a new admin token; [`StoreError::Conflict`] if its id or key exists.
    async fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError>;
    /// The admin token under `key`, live or not.
    async fn find_admin_token(
        &self,
        key: &TokenKey,
    ) -> Result<Option<AdminTokenRecord>, StoreError>;
    /// Every admin token, revoked and expired ones too, oldest first.
    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError>;
    /// Marks the admin token `id` revoked at `now`. Returns whether one was live (unrevoked).
    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Up to `limit` clients whose ids come after `after` ("" for the first page), by id.
    async fn clients_after(&self, after: &str, limit: u32) -> Result<Vec<Client>, StoreError>;
    /// An operator's change of a client: its name, grant types, scope, redirect URIs and
    /// whether it skips consent (never its id, secret or kind). Returns whether it exists.
    async fn update_client(&self, client: &Client) -> Result<bool, StoreError>;
    /// Up to `limit` resource servers whose identifiers come after `after`, by identifier.
    async fn resources_after(&self, after: &str, limit: u32) -> Result<Vec<Resource>, StoreError>;
    async fn get_resource(&self, uri: &ResourceUri) -> Result<Option<Resource>, StoreError>;
    /// Replaces a resource server's name and scope. Returns whether it exists.
    async fn update_resource(&self, resource: &Resource) -> Result<bool, StoreError>;
    /// Up to `limit` users whose usernames come after `after`, by username, with profiles.
    async fn users_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(User, Profile)>, StoreError>;
    /// Up to `limit` of the families with tokens still active at `now` (neither revoked nor
    /// rotated nor expired) of a user or a client, by family id, after `after`.
    /// client_credentials tokens belong to no family and are not among them.
    async fn active_families(
        &self,
        owner: &FamilyOwner,
        now: UnixTime,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TokenFamily>, StoreError>;
    /// Ends every sign-in session of a user (their tokens stay). Returns how many.
    async fn end_user_sessions(&self, username: &str) -> Result<u64, StoreError>;

    /// The connection pools' use, for metrics: `None` for a store without a pool (SQLite's
    /// readers and writer are fixed threads, always there).
    fn pool_usage(&self) -> Option<PoolUsage> {
        None
    }
}

/// Whose token families [`Store::active_families`] lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FamilyOwner {
    User { username: String },
    Client { client_id: String },
}

/// A grant's tokens that are still active: what an operator sees of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFamily {
    pub family_id: FamilyId,
    pub client_id: ClientId,
    pub subject: Option<UserId>,
    /// When the oldest of its active tokens was issued.
    pub issued_at: UnixTime,
    /// When the last of its active tokens expires.
    pub expires_at: UnixTime,
    /// How many of its tokens are active.
    pub tokens: u64,
}

/// How many connections a store's pools hold, and how many of them are idle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    pub size: u32,
    pub idle: u32,
}

/// A live access token's revocation, as the resource servers caching it learn of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Its place in the one order of all events: a later commit has a larger number, though
    /// numbers may skip.
    pub seq: u64,
    /// The token's key, which a holder of the token computes with `TokenKey::of`.
    pub token_key: TokenKey,
    /// The resources the token was for.
    pub audience: Audience,
    pub created_at: UnixTime,
}

/// The revocation events still kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationWindow {
    /// The last event purged (0 before any): a reader that has seen only events before it
    /// may have missed some.
    pub horizon: u64,
    /// The last event appended, or the horizon if none is kept.
    pub latest: u64,
}

impl RevocationWindow {
    /// Whether a reader that has seen every event up to `seen` misses nothing by reading on
    /// after it.
    pub fn can_resume_after(&self, seen: u64) -> bool {
        tessera_core::revocation::can_resume(seen, self.horizon, self.latest)
    }
}

/// The outcome of [`Store::redeem_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    Redeemed,
    /// The code was redeemed before: a replay. The family is that of the first exchange.
    AlreadyRedeemed {
        family_id: String,
    },
    NotFound,
}

/// A browser session: the SHA-256 of its cookie value and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub hash: TokenKey,
    pub user_id: UserId,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A client's OpenID Connect registration (OIDC Registration §2, RP-Initiated Logout §3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOidc {
    /// `ES256` or `RS256`; `None`: the server's default.
    pub id_token_signed_response_alg: Option<String>,
    /// Where the client may send people after signing out, each matched byte for byte.
    pub post_logout_redirect_uris: Vec<String>,
}

/// An ID-token signing key as stored: the private key only encrypted under the
/// key-encryption key, which the store never sees.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// The public key as a JWK (JSON text), as the JWKS publishes it.
    pub public_jwk: String,
    /// Nonce and ciphertext of the PKCS#8 private key (ChaCha20-Poly1305).
    pub encrypted_private_key: Vec<u8>,
    pub created_at: UnixTime,
    /// When a newer key took over signing; it is published until its ID tokens expired.
    pub retired_at: Option<UnixTime>,
}

impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// Opens the store a URL names: `sqlite://PATH` (created if missing) or `postgres://...`.
pub async fn connect(database_url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(database_url).await?))
    } else {
        Err(StoreError::Config(format!(
            "unsupported database URL `{}`: use sqlite://PATH or postgres://...",
            redact_url(database_url)
        )))
    }
}

/// A database URL with any password replaced, fit for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = url.get(scheme_end + 3..at).unwrap_or_default();
            let user = userinfo.split(':').next().unwrap_or_default();
            format!(
                "{}{}:***{}",
                url.get(..scheme_end + 3).unwrap_or_default(),
                user,
                url.get(at..).unwrap_or_default()
            )
        }
        _ => url.to_owned(),
    }
}
