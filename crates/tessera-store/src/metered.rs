//! A [`Store`] around another that records each operation's latency and failures through
//! the `metrics` facade, so neither backend knows about metrics and both are measured alike.
//!
//! The server wraps its store in one only when metrics are on: the wrapper's cost (a boxed
//! future, two clock reads and a histogram sample per operation) is then paid by those who
//! asked for it.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Counter, Histogram};
use tessera_core::admin::AdminTokenRecord;
use tessera_core::audit::{AuditEvent, AuditFilter, AuditRecord};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::registration::{InitialAccessTokenRecord, Registration};
use tessera_core::resource::{Resource, ResourceUri};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenKey, TokenRecord};
use tessera_core::user::User;
use tokio::sync::watch;

use tessera_core::oidc::Profile;

use crate::{
    ClientOidc, FamilyOwner, PoolUsage, Redemption, RevocationEvent, RevocationWindow, Session,
    Store, StoreError, StoredSigningKey, TokenFamily,
};

/// Seconds an operation took, by `operation` (the [`Store`] method's name).
pub const OPERATION_SECONDS: &str = "tessera_store_operation_duration_seconds";
/// Operations that failed, by `operation`.
pub const ERRORS: &str = "tessera_store_errors_total";

/// Gives the installed recorder the help text and unit of the wrapper's metrics.
pub fn describe() {
    metrics::describe_histogram!(
        OPERATION_SECONDS,
        metrics::Unit::Seconds,
        "Store operations' latency, by Store method"
    );
    metrics::describe_counter!(ERRORS, "Store operations that failed, by Store method");
}

/// One operation's meters: handles registered with the recorder once, so that recording is
/// an atomic add and a histogram sample rather than a registry lookup each time.
struct OperationMeters {
    seconds: Histogram,
    errors: Counter,
}

impl OperationMeters {
    fn new(operation: &'static str) -> Self {
        Self {
            seconds: metrics::histogram!(OPERATION_SECONDS, "operation" => operation),
            errors: metrics::counter!(ERRORS, "operation" => operation),
        }
    }
}

/// Records `$call`'s latency and failure under the literal `$op`. Each call site keeps its
/// meters in a static made on its first call: a [`Metered`] store exists only once the
/// process's recorder is installed, so no handle goes to the no-op one.
macro_rules! timed {
    ($op:literal, $call:expr) => {{
        static METERS: OnceLock<OperationMeters> = OnceLock::new();
        let meters = METERS.get_or_init(|| OperationMeters::new($op));
        let started = Instant::now();
        let result = $call.await;
        meters.seconds.record(started.elapsed().as_secs_f64());
        if result.is_err() {
            meters.errors.increment(1);
        }
        result
    }};
}

/// The store `inner`, measured.
pub struct Metered {
    inner: Arc<dyn Store>,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(Self { inner })
    }
}

#[async_trait]
impl Store for Metered {
    async fn migrate(&self) -> Result<(), StoreError> {
        timed!("migrate", self.inner.migrate())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        timed!("ping", self.inner.ping())
    }

    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        timed!("create_client", self.inner.create_client(client))
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        timed!("get_client", self.inner.get_client(client_id))
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        timed!("list_clients", self.inner.list_clients())
    }

    async fn delete_client(&self, client_id: &str, now: UnixTime) -> Result<bool, StoreError> {
        timed!("delete_client", self.inner.delete_client(client_id, now))
    }

    async fn revoke_client_tokens(
        &self,
        client_id: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        timed!(
            "revoke_client_tokens",
            self.inner.revoke_client_tokens(client_id, now)
        )
    }

    async fn create_registration(&self, registration: &Registration) -> Result<(), StoreError> {
        timed!(
            "create_registration",
            self.inner.create_registration(registration)
        )
    }

    async fn find_registration(&self, client_id: &str) -> Result<Option<Registration>, StoreError> {
        timed!("find_registration", self.inner.find_registration(client_id))
    }

    async fn put_document_client(&self, client: &Client) -> Result<bool, StoreError> {
        timed!(
            "put_document_client",
            self.inner.put_document_client(client)
        )
    }

    async fn update_registration(&self, client: &Client) -> Result<bool, StoreError> {
        timed!(
            "update_registration",
            self.inner.update_registration(client)
        )
    }

    async fn create_initial_access_token(
        &self,
        token: &InitialAccessTokenRecord,
    ) -> Result<(), StoreError> {
        timed!(
            "create_initial_access_token",
            self.inner.create_initial_access_token(token)
        )
    }

    async fn initial_access_token_is_live(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        timed!(
            "initial_access_token_is_live",
            self.inner.initial_access_token_is_live(hash, now)
        )
    }

    async fn create_resource(
        &self,
        resource: &Resource,
        client: &Client,
    ) -> Result<(), StoreError> {
        timed!(
            "create_resource",
            self.inner.create_resource(resource, client)
        )
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, StoreError> {
        timed!("list_resources", self.inner.list_resources())
    }

    async fn delete_resource(&self, uri: &ResourceUri, now: UnixTime) -> Result<bool, StoreError> {
        timed!("delete_resource", self.inner.delete_resource(uri, now))
    }

    async fn create_user(&self, user: &User) -> Result<(), StoreError> {
        timed!("create_user", self.inner.create_user(user))
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        timed!(
            "get_user_by_username",
            self.inner.get_user_by_username(username)
        )
    }

    async fn delete_user(&self, username: &str, now: UnixTime) -> Result<bool, StoreError> {
        timed!("delete_user", self.inner.delete_user(username, now))
    }

    async fn revoke_user_tokens(
        &self,
        username: &str,
        now: UnixTime,
    ) -> Result<Option<u64>, StoreError> {
        timed!(
            "revoke_user_tokens",
            self.inner.revoke_user_tokens(username, now)
        )
    }

    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        timed!(
            "set_password",
            self.inner.set_password(username, password_hash, now)
        )
    }

    async fn insert_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        timed!("insert_tokens", self.inner.insert_tokens(tokens))
    }

    async fn find_token(&self, hash: &TokenKey) -> Result<Option<TokenRecord>, StoreError> {
        timed!("find_token", self.inner.find_token(hash))
    }

    async fn revoke_token(&self, hash: &TokenKey, now: UnixTime) -> Result<bool, StoreError> {
        timed!("revoke_token", self.inner.revoke_token(hash, now))
    }

    async fn revoke_family(&self, family_id: &str, now: UnixTime) -> Result<u64, StoreError> {
        timed!("revoke_family", self.inner.revoke_family(family_id, now))
    }

    async fn rotate_refresh_token(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        successors: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        timed!(
            "rotate_refresh_token",
            self.inner.rotate_refresh_token(hash, now, successors)
        )
    }

    async fn insert_code(&self, code: &AuthorizationCodeRecord) -> Result<(), StoreError> {
        timed!("insert_code", self.inner.insert_code(code))
    }

    async fn find_code(
        &self,
        hash: &TokenKey,
    ) -> Result<Option<AuthorizationCodeRecord>, StoreError> {
        timed!("find_code", self.inner.find_code(hash))
    }

    async fn redeem_code(
        &self,
        hash: &TokenKey,
        now: UnixTime,
        tokens: &[TokenRecord],
    ) -> Result<Redemption, StoreError> {
        timed!("redeem_code", self.inner.redeem_code(hash, now, tokens))
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        timed!("create_session", self.inner.create_session(session))
    }

    async fn find_session_user(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<User>, StoreError> {
        timed!("find_session_user", self.inner.find_session_user(hash, now))
    }

    async fn delete_session(&self, hash: &TokenKey) -> Result<(), StoreError> {
        timed!("delete_session", self.inner.delete_session(hash))
    }

    async fn session_signed_in_at(
        &self,
        hash: &TokenKey,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        timed!(
            "session_signed_in_at",
            self.inner.session_signed_in_at(hash, now)
        )
    }

    async fn get_profile(&self, user_id: &str) -> Result<Option<(String, Profile)>, StoreError> {
        timed!("get_profile", self.inner.get_profile(user_id))
    }

    async fn set_profile(&self, username: &str, profile: &Profile) -> Result<bool, StoreError> {
        timed!("set_profile", self.inner.set_profile(username, profile))
    }

    async fn get_client_oidc(&self, client_id: &str) -> Result<Option<ClientOidc>, StoreError> {
        timed!("get_client_oidc", self.inner.get_client_oidc(client_id))
    }

    async fn put_client_oidc(&self, client_id: &str, oidc: &ClientOidc) -> Result<(), StoreError> {
        timed!(
            "put_client_oidc",
            self.inner.put_client_oidc(client_id, oidc)
        )
    }

    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<(), StoreError> {
        timed!("insert_signing_key", self.inner.insert_signing_key(key))
    }

    async fn list_signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        timed!("list_signing_keys", self.inner.list_signing_keys())
    }

    async fn rotate_signing_keys(
        &self,
        new: &[StoredSigningKey],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        timed!(
            "rotate_signing_keys",
            self.inner.rotate_signing_keys(new, now)
        )
    }

    async fn prune_signing_keys(&self, retired_before: UnixTime) -> Result<u64, StoreError> {
        timed!(
            "prune_signing_keys",
            self.inner.prune_signing_keys(retired_before)
        )
    }

    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Scope>, StoreError> {
        timed!("get_consent", self.inner.get_consent(user_id, client_id))
    }

    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scope: &Scope,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        timed!(
            "put_consent",
            self.inner.put_consent(user_id, client_id, scope, now)
        )
    }

    async fn purge_expired(&self, now: UnixTime, batch: u32) -> Result<u64, StoreError> {
        timed!("purge_expired", self.inner.purge_expired(now, batch))
    }

    async fn revocation_events_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<RevocationEvent>, StoreError> {
        timed!(
            "revocation_events_after",
            self.inner.revocation_events_after(after, limit)
        )
    }

    async fn revocation_window(&self) -> Result<RevocationWindow, StoreError> {
        timed!("revocation_window", self.inner.revocation_window())
    }

    async fn purge_revocation_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        timed!(
            "purge_revocation_events",
            self.inner.purge_revocation_events(older_than, batch)
        )
    }

    async fn append_audit_event(&self, event: &AuditEvent) -> Result<u64, StoreError> {
        timed!("append_audit_event", self.inner.append_audit_event(event))
    }

    async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        timed!("audit_events", self.inner.audit_events(filter))
    }

    async fn purge_audit_events(
        &self,
        older_than: UnixTime,
        batch: u32,
    ) -> Result<u64, StoreError> {
        timed!(
            "purge_audit_events",
            self.inner.purge_audit_events(older_than, batch)
        )
    }

    fn subscribe_revocations(&self) -> watch::Receiver<u64> {
        self.inner.subscribe_revocations()
    }

    async fn create_admin_token(&self, token: &AdminTokenRecord) -> Result<(), StoreError> {
        timed!("create_admin_token", self.inner.create_admin_token(token))
    }

    async fn find_admin_token(
        &self,
        key: &TokenKey,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        timed!("find_admin_token", self.inner.find_admin_token(key))
    }

    async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRecord>, StoreError> {
        timed!("list_admin_tokens", self.inner.list_admin_tokens())
    }

    async fn revoke_admin_token(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        timed!("revoke_admin_token", self.inner.revoke_admin_token(id, now))
    }

    async fn clients_after(&self, after: &str, limit: u32) -> Result<Vec<Client>, StoreError> {
        timed!("clients_after", self.inner.clients_after(after, limit))
    }

    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        timed!("update_client", self.inner.update_client(client))
    }

    async fn resources_after(&self, after: &str, limit: u32) -> Result<Vec<Resource>, StoreError> {
        timed!("resources_after", self.inner.resources_after(after, limit))
    }

    async fn get_resource(&self, uri: &ResourceUri) -> Result<Option<Resource>, StoreError> {
        timed!("get_resource", self.inner.get_resource(uri))
    }

    async fn update_resource(&self, resource: &Resource) -> Result<bool, StoreError> {
        timed!("update_resource", self.inner.update_resource(resource))
    }

    async fn users_after(
        &self,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(User, Profile)>, StoreError> {
        timed!("users_after", self.inner.users_after(after, limit))
    }

    async fn active_families(
        &self,
        owner: &FamilyOwner,
        now: UnixTime,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TokenFamily>, StoreError> {
        timed!(
            "active_families",
            self.inner.active_families(owner, now, after, limit)
        )
    }

    async fn end_user_sessions(&self, username: &str) -> Result<u64, StoreError> {
        timed!("end_user_sessions", self.inner.end_user_sessions(username))
    }

    fn pool_usage(&self) -> Option<PoolUsage> {
        self.inner.pool_usage()
    }
}
