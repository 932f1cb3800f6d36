//! Row shapes shared by both backends, and their conversion to core types.
//!
//! The SQL text below is valid in both dialects (`$n` placeholders, `RETURNING`), so each
//! backend reuses it and spells out only what differs.

use tessera_core::admin::AdminTokenRecord;
use tessera_core::audit::{Actor, AuditEvent, AuditFilter, AuditKind, AuditRecord};
use tessera_core::client::{Client, GrantType, RedirectUri, TokenEndpointAuthMethod};
use tessera_core::clock::UnixTime;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::oidc::Profile;
use tessera_core::registration::Registration;
use tessera_core::resource::{Audience, Resource, ResourceUri};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenKey, TokenKind, TokenRecord};
use tessera_core::user::{User, Username};

use crate::{
    ClientOidc, RevocationEvent, RevocationWindow, StoreError, StoredSigningKey, TokenFamily,
};

pub const INSERT_CLIENT: &str = "INSERT INTO clients \
    (client_id, name, secret_hash, auth_method, grant_types, scope, redirect_uris, skip_consent, \
    created_at, self_registered, registration_token) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub const SELECT_CLIENT: &str = "SELECT c.client_id, c.name, c.secret_hash, c.auth_method, \
    c.grant_types, c.scope, c.redirect_uris, c.skip_consent, c.created_at, r.uri AS resource, \
    c.self_registered \
    FROM clients c LEFT JOIN resources r ON r.client_id = c.client_id WHERE c.client_id = $1";
pub const LIST_CLIENTS: &str = "SELECT c.client_id, c.name, c.secret_hash, c.auth_method, \
    c.grant_types, c.scope, c.redirect_uris, c.skip_consent, c.created_at, r.uri AS resource, \
    c.self_registered \
    FROM clients c LEFT JOIN resources r ON r.client_id = c.client_id \
    ORDER BY c.created_at, c.client_id";
/// A self-registered client with the key of its registration access token.
pub const SELECT_REGISTRATION: &str = "SELECT c.client_id, c.name, c.secret_hash, \
    c.auth_method, c.grant_types, c.scope, c.redirect_uris, c.skip_consent, c.created_at, \
    r.uri AS resource, c.self_registered, c.registration_token \
    FROM clients c LEFT JOIN resources r ON r.client_id = c.client_id \
    WHERE c.client_id = $1 AND c.registration_token IS NOT NULL";
pub const UPDATE_REGISTRATION: &str = "UPDATE clients SET name = $2, auth_method = $3, \
    grant_types = $4, scope = $5, redirect_uris = $6 \
    WHERE client_id = $1 AND registration_token IS NOT NULL";
/// A client described by a metadata document: inserted, or refreshed if the row is one too.
pub const PUT_DOCUMENT_CLIENT: &str = "INSERT INTO clients \
    (client_id, name, secret_hash, auth_method, grant_types, scope, redirect_uris, skip_consent, \
    created_at, self_registered, registration_token) \
    VALUES ($1, $2, NULL, 'none', $3, $4, $5, $6, $7, $8, NULL) \
    ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
    grant_types = excluded.grant_types, scope = excluded.scope, \
    redirect_uris = excluded.redirect_uris \
    WHERE clients.self_registered AND clients.registration_token IS NULL \
    AND clients.secret_hash IS NULL";
pub const INSERT_INITIAL_ACCESS_TOKEN: &str =
    "INSERT INTO initial_access_tokens (hash, created_at, expires_at) VALUES ($1, $2, $3)";
pub const INITIAL_ACCESS_TOKEN_LIVE: &str =
    "SELECT COUNT(*) FROM initial_access_tokens WHERE hash = $1 AND expires_at > $2";
pub const INSERT_RESOURCE: &str =
    "INSERT INTO resources (uri, client_id, name, scope, created_at) VALUES ($1, $2, $3, $4, $5)";
pub const LIST_RESOURCES: &str =
    "SELECT uri, client_id, name, scope, created_at FROM resources ORDER BY created_at, uri";
pub const RESOURCE_CLIENT: &str = "SELECT client_id FROM resources WHERE uri = $1";
pub const DELETE_CLIENT: &str = "DELETE FROM clients WHERE client_id = $1";
pub const INSERT_TOKEN: &str = "INSERT INTO tokens \
    (hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, rotated_at, family_id, \
    audience) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub const SELECT_TOKEN: &str = "SELECT t.hash, t.kind, t.client_id, t.subject, t.scope, \
    t.issued_at, t.expires_at, t.revoked_at, t.rotated_at, t.family_id, t.audience, u.username \
    FROM tokens t LEFT JOIN users u ON u.id = t.subject WHERE t.hash = $1";
pub const ROTATE_REFRESH: &str = "UPDATE tokens SET rotated_at = $2 WHERE hash = $1 AND kind = 1 \
    AND rotated_at IS NULL AND revoked_at IS NULL";
pub const INSERT_USER: &str =
    "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4)";
pub const SELECT_USER_BY_NAME: &str =
    "SELECT id, username, password_hash, created_at FROM users WHERE username = $1";
pub const DELETE_USER_TOKENS: &str = "DELETE FROM tokens \
    WHERE subject = (SELECT id FROM users WHERE username = $1) \
    RETURNING hash, audience, kind = 0 AND revoked_at IS NULL AND expires_at > $2 AS live";
pub const DELETE_USER: &str = "DELETE FROM users WHERE username = $1";
pub const SET_PASSWORD: &str = "UPDATE users SET password_hash = $2 WHERE username = $1";
pub const REVOKE_USER_TOKENS: &str = "UPDATE tokens SET revoked_at = $2 \
    WHERE subject = (SELECT id FROM users WHERE username = $1) AND revoked_at IS NULL \
    RETURNING hash, audience, kind = 0 AND expires_at > $2 AS live";
pub const USER_EXISTS: &str = "SELECT COUNT(*) FROM users WHERE username = $1";
pub const DELETE_USER_SESSIONS: &str =
    "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE username = $1)";
pub const INSERT_CODE: &str = "INSERT INTO authorization_codes (hash, client_id, user_id, \
    redirect_uri, redirect_uri_given, scope, code_challenge, issued_at, expires_at, redeemed_at, \
    family_id, audience, nonce, auth_time) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
pub const SELECT_CODE: &str = "SELECT hash, client_id, user_id, redirect_uri, redirect_uri_given, \
    scope, code_challenge, issued_at, expires_at, redeemed_at, family_id, audience, nonce, \
    auth_time FROM authorization_codes WHERE hash = $1";
pub const SELECT_SESSION_SIGNED_IN: &str =
    "SELECT created_at FROM sessions WHERE hash = $1 AND expires_at > $2";
pub const SELECT_PROFILE: &str =
    "SELECT username, name, email, email_verified FROM users WHERE id = $1";
pub const UPDATE_PROFILE: &str =
    "UPDATE users SET name = $2, email = $3, email_verified = $4 WHERE username = $1";
pub const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys (kid, alg, public_jwk, \
    encrypted_private_key, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub const SELECT_SIGNING_KEYS: &str = "SELECT kid, alg, public_jwk, encrypted_private_key, \
    created_at, retired_at FROM signing_keys ORDER BY created_at, kid";
pub const RETIRE_SIGNING_KEYS: &str =
    "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL";
pub const SELECT_CLIENT_OIDC: &str = "SELECT id_token_signed_response_alg, \
    post_logout_redirect_uris FROM client_oidc WHERE client_id = $1";
pub const UPSERT_CLIENT_OIDC: &str = "INSERT INTO client_oidc (client_id, \
    id_token_signed_response_alg, post_logout_redirect_uris) VALUES ($1, $2, $3) \
    ON CONFLICT (client_id) DO UPDATE SET \
    id_token_signed_response_alg = excluded.id_token_signed_response_alg, \
    post_logout_redirect_uris = excluded.post_logout_redirect_uris";
pub const DELETE_RETIRED_KEYS: &str =
    "DELETE FROM signing_keys WHERE retired_at IS NOT NULL AND retired_at <= $1";
pub const REDEEM_CODE: &str = "UPDATE authorization_codes SET redeemed_at = $2 \
    WHERE hash = $1 AND redeemed_at IS NULL";
pub const CODE_FAMILY: &str = "SELECT family_id FROM authorization_codes WHERE hash = $1";
pub const INSERT_SESSION: &str =
    "INSERT INTO sessions (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)";
pub const SELECT_SESSION_USER: &str = "SELECT u.id, u.username, u.password_hash, u.created_at \
    FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.hash = $1 AND s.expires_at > $2";
pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE hash = $1";
pub const SELECT_CONSENT: &str = "SELECT scope FROM consents WHERE user_id = $1 AND client_id = $2";
pub const UPSERT_CONSENT: &str = "INSERT INTO consents (user_id, client_id, scope, granted_at) \
    VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, client_id) \
    DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at";

// Every statement that ends tokens has the key as `$1`, the time as `$2`, and returns each
// token's key and audience and whether it was a live access token: the tokens a resource
// server may hold in its cache, so the ones that get a revocation event.
pub const REVOKE_TOKEN: &str = "UPDATE tokens SET revoked_at = $2 \
    WHERE hash = $1 AND revoked_at IS NULL \
    RETURNING hash, audience, kind = 0 AND expires_at > $2 AS live";
pub const REVOKE_FAMILY: &str = "UPDATE tokens SET revoked_at = $2 \
    WHERE family_id = $1 AND revoked_at IS NULL \
    RETURNING hash, audience, kind = 0 AND expires_at > $2 AS live";
pub const REVOKE_CLIENT_TOKENS: &str = "UPDATE tokens SET revoked_at = $2 \
    WHERE client_id = $1 AND revoked_at IS NULL \
    RETURNING hash, audience, kind = 0 AND expires_at > $2 AS live";
pub const DELETE_CLIENT_TOKENS: &str = "DELETE FROM tokens WHERE client_id = $1 \
    RETURNING hash, audience, kind = 0 AND revoked_at IS NULL AND expires_at > $2 AS live";
pub const CLIENT_EXISTS: &str = "SELECT COUNT(*) FROM clients WHERE client_id = $1";

pub const REVOCATION_EVENTS_AFTER: &str = "SELECT seq, token_key, audience, created_at \
    FROM revocation_events WHERE seq > $1 ORDER BY seq LIMIT $2";
/// The horizon and the last event, read in one statement so that they agree.
pub const REVOCATION_WINDOW: &str = "SELECT h.purged_through, \
    (SELECT COALESCE(MAX(seq), 0) FROM revocation_events) FROM revocation_event_horizon h";
/// The last event of the next batch to purge: the oldest events, in the order of their
/// numbers, so that what stays is always every event after the horizon.
pub const LAST_PURGEABLE_EVENT: &str = "SELECT MAX(seq) FROM (SELECT seq FROM revocation_events \
    WHERE created_at <= $1 ORDER BY seq LIMIT $2) AS oldest";
pub const PURGE_REVOCATION_EVENTS: &str = "DELETE FROM revocation_events WHERE seq <= $1";
pub const RAISE_REVOCATION_HORIZON: &str =
    "UPDATE revocation_event_horizon SET purged_through = $1 WHERE purged_through < $1";

pub const INSERT_AUDIT_EVENT: &str = "INSERT INTO audit_events \
    (at, kind, actor, username, client_id, address, detail) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id";

/// The statement reading the events `filter` asks for, oldest first. Its parameters: the
/// cursor, the time (`i64::MIN` if not given), the limit, then the username and the client
/// id if given. Conditions are left out rather than written `$n IS NULL OR ...`, which
/// keeps SQLite's planner from the indexes.
pub fn select_audit_events(filter: &AuditFilter) -> String {
    let mut sql = String::from(
        "SELECT id, at, kind, actor, username, client_id, address, detail FROM audit_events \
         WHERE id > $1 AND at >= $2",
    );
    let mut next = 4;
    for (given, column) in [
        (filter.user.is_some(), "username"),
        (filter.client_id.is_some(), "client_id"),
    ] {
        if given {
            sql.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    sql.push_str(" ORDER BY id LIMIT $3");
    sql
}
// The admin API (issue 28): admin tokens, pages of clients, resources and users in the
// order of their key (a page starts after the last key of the one before), token families.
pub const INSERT_ADMIN_TOKEN: &str = "INSERT INTO admin_tokens \
    (id, token_key, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5)";
pub const SELECT_ADMIN_TOKEN: &str = "SELECT id, token_key, created_at, expires_at, revoked_at \
    FROM admin_tokens WHERE token_key = $1";
pub const LIST_ADMIN_TOKENS: &str = "SELECT id, token_key, created_at, expires_at, revoked_at \
    FROM admin_tokens ORDER BY created_at, id";
pub const REVOKE_ADMIN_TOKEN: &str =
    "UPDATE admin_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
pub const CLIENTS_AFTER: &str = "SELECT c.client_id, c.name, c.secret_hash, c.auth_method, \
    c.grant_types, c.scope, c.redirect_uris, c.skip_consent, c.created_at, r.uri AS resource, \
    c.self_registered \
    FROM clients c LEFT JOIN resources r ON r.client_id = c.client_id \
    WHERE c.client_id > $1 ORDER BY c.client_id LIMIT $2";
/// An operator's change of a client: what registration decided, never its id or secret.
pub const UPDATE_CLIENT: &str = "UPDATE clients SET name = $2, grant_types = $3, scope = $4, \
    redirect_uris = $5, skip_consent = $6 WHERE client_id = $1";
pub const RESOURCES_AFTER: &str = "SELECT uri, client_id, name, scope, created_at \
    FROM resources WHERE uri > $1 ORDER BY uri LIMIT $2";
pub const SELECT_RESOURCE: &str =
    "SELECT uri, client_id, name, scope, created_at FROM resources WHERE uri = $1";
pub const UPDATE_RESOURCE: &str = "UPDATE resources SET name = $2, scope = $3 WHERE uri = $1";
pub const USERS_AFTER: &str = "SELECT id, username, password_hash, created_at, name, email, \
    email_verified FROM users WHERE username > $1 ORDER BY username LIMIT $2";
/// `$1` the owner, `$2` now, `$3` the last family of the page before, `$4` the page size.
pub const USER_FAMILIES: &str = "SELECT family_id, client_id, subject, \
    MIN(issued_at) AS issued_at, MAX(expires_at) AS expires_at, COUNT(*) AS tokens \
    FROM tokens WHERE subject = (SELECT id FROM users WHERE username = $1) \
    AND family_id IS NOT NULL AND family_id > $3 \
    AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $2 \
    GROUP BY family_id, client_id, subject ORDER BY family_id LIMIT $4";
pub const CLIENT_FAMILIES: &str = "SELECT family_id, client_id, subject, \
    MIN(issued_at) AS issued_at, MAX(expires_at) AS expires_at, COUNT(*) AS tokens \
    FROM tokens WHERE client_id = $1 \
    AND family_id IS NOT NULL AND family_id > $3 \
    AND revoked_at IS NULL AND rotated_at IS NULL AND expires_at > $2 \
    GROUP BY family_id, client_id, subject ORDER BY family_id LIMIT $4";

/// A registration read back: the client and its token key.
pub fn registration(client: ClientRow, token: &[u8]) -> Result<Registration, StoreError> {
    let client = Client::try_from(client)?;
    let access_token = TokenKey::from_slice(token)
        .ok_or_else(|| StoreError::Corrupt(format!("client {}: registration token", client.id)))?;
    Ok(Registration {
        client,
        access_token,
    })
}

/// Whether a lookup key can exist at all. PostgreSQL text cannot hold NUL, and refuses a
/// query containing one with an error; such a key names nothing, on either backend.
pub fn storable(key: &str) -> bool {
    !key.contains('\0')
}

/// Whether the user and client an audit filter names can exist (see [`storable`]).
pub fn audit_filter_storable(filter: &AuditFilter) -> bool {
    [&filter.user, &filter.client_id]
        .into_iter()
        .flatten()
        .all(|key| storable(key))
}

/// A stored consent's scope, checked.
pub fn consent_scope(stored: Option<String>) -> Result<Option<Scope>, StoreError> {
    stored
        .map(|s| Scope::parse(&s).map_err(|_| StoreError::Corrupt("consent scope".into())))
        .transpose()
}

pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub auth_method: String,
    pub grant_types: String,
    pub scope: String,
    pub redirect_uris: String,
    pub skip_consent: bool,
    pub created_at: i64,
    pub resource: Option<String>,
    pub self_registered: bool,
}

/// The columns of a client, in `INSERT_CLIENT` order.
pub struct ClientColumns {
    pub grant_types: String,
    pub redirect_uris: String,
    pub scope: String,
}

impl ClientColumns {
    pub fn of(client: &Client) -> Self {
        Self {
            grant_types: join(client.grant_types.iter().map(|g| g.as_str())),
            redirect_uris: join(client.redirect_uris.iter().map(RedirectUri::as_str)),
            scope: client.scope.to_string(),
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(" ")
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;

    fn try_from(row: ClientRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("client {}: {what}", row.client_id));
        let grant_types = row
            .grant_types
            .split_whitespace()
            .map(|g| GrantType::parse(g).ok_or_else(|| corrupt("grant type")))
            .collect::<Result<_, _>>()?;
        let redirect_uris = row
            .redirect_uris
            .split_whitespace()
            .map(RedirectUri::stored)
            .collect();
        Ok(Client {
            auth_method: TokenEndpointAuthMethod::parse(&row.auth_method)
                .ok_or_else(|| corrupt("auth method"))?,
            scope: Scope::parse(&row.scope).map_err(|_| corrupt("scope"))?,
            grant_types,
            redirect_uris,
            id: row.client_id.into(),
            name: row.name,
            secret_hash: row.secret_hash,
            skip_consent: row.skip_consent,
            created_at: UnixTime::from_secs(row.created_at),
            resource: row.resource.as_deref().map(ResourceUri::stored),
            self_registered: row.self_registered,
        })
    }
}

pub struct TokenRow {
    pub hash: Vec<u8>,
    pub kind: i16,
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub rotated_at: Option<i64>,
    pub family_id: Option<String>,
    pub audience: String,
    pub username: Option<String>,
}

pub fn kind_code(kind: TokenKind) -> i16 {
    match kind {
        TokenKind::Access => 0,
        TokenKind::Refresh => 1,
        TokenKind::AuthorizationCode => 2,
    }
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("token row: {what}"));
        let kind = match row.kind {
            0 => TokenKind::Access,
            1 => TokenKind::Refresh,
            2 => TokenKind::AuthorizationCode,
            _ => return Err(corrupt("kind")),
        };
        Ok(TokenRecord {
            hash: TokenKey::from_slice(&row.hash).ok_or_else(|| corrupt("hash length"))?,
            kind,
            scope: Scope::parse(&row.scope).map_err(|_| corrupt("scope"))?,
            client_id: row.client_id.into(),
            subject: row.subject.map(Into::into),
            issued_at: UnixTime::from_secs(row.issued_at),
            expires_at: UnixTime::from_secs(row.expires_at),
            revoked_at: row.revoked_at.map(UnixTime::from_secs),
            rotated_at: row.rotated_at.map(UnixTime::from_secs),
            family_id: row.family_id.map(Into::into),
            audience: Audience::stored(&row.audience),
            username: row.username,
        })
    }
}

/// What a statement that ends tokens did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ended {
    /// Tokens revoked or deleted.
    pub count: u64,
    /// The last revocation event appended, if any.
    pub latest_event: Option<u64>,
}

/// The window as `REVOCATION_WINDOW` reads it.
pub fn window(horizon: i64, latest: i64) -> RevocationWindow {
    let horizon = seq_of(horizon);
    RevocationWindow {
        horizon,
        latest: seq_of(latest).max(horizon),
    }
}

pub struct RevocationEventRow {
    pub seq: i64,
    pub token_key: Vec<u8>,
    pub audience: String,
    pub created_at: i64,
}

impl TryFrom<RevocationEventRow> for RevocationEvent {
    type Error = StoreError;

    fn try_from(row: RevocationEventRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("revocation event: {what}"));
        Ok(RevocationEvent {
            seq: u64::try_from(row.seq).map_err(|_| corrupt("number"))?,
            token_key: TokenKey::from_slice(&row.token_key).ok_or_else(|| corrupt("key length"))?,
            audience: Audience::stored(&row.audience),
            created_at: UnixTime::from_secs(row.created_at),
        })
    }
}

/// An event number as stored: they start at 1 and never reach `i64::MAX`.
pub fn seq_of(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

/// An event number as a bound in a query.
pub fn stored_seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

pub struct AuditEventRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub address: Option<String>,
    pub detail: String,
}

impl AuditEventRow {
    /// What an event's actor, detail and address are stored as: text, as both dialects keep it.
    pub fn columns(event: &AuditEvent) -> (String, String, Option<String>) {
        (
            event.actor.to_string(),
            event.detail_text(),
            event.address.map(|a| a.to_string()),
        )
    }
}

impl TryFrom<AuditEventRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditEventRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("audit event {}: {what}", row.id));
        let address = match &row.address {
            Some(a) => Some(a.parse().map_err(|_| corrupt("address"))?),
            None => None,
        };
        Ok(AuditRecord {
            id: u64::try_from(row.id).map_err(|_| corrupt("id"))?,
            event: AuditEvent {
                at: UnixTime::from_secs(row.at),
                kind: AuditKind::parse(&row.kind).ok_or_else(|| corrupt("kind"))?,
                actor: Actor::parse(&row.actor).ok_or_else(|| corrupt("actor"))?,
                detail: AuditEvent::detail_from_text(&row.detail)
                    .ok_or_else(|| corrupt("detail"))?,
                user: row.username,
                client_id: row.client_id,
                address,
            },
        })
    }
}

pub struct ResourceRow {
    pub uri: String,
    pub client_id: String,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
}

impl TryFrom<ResourceRow> for Resource {
    type Error = StoreError;

    fn try_from(row: ResourceRow) -> Result<Self, StoreError> {
        Ok(Resource {
            scope: Scope::parse(&row.scope)
                .map_err(|_| StoreError::Corrupt(format!("resource {}: scope", row.uri)))?,
            uri: ResourceUri::stored(&row.uri),
            client_id: row.client_id.into(),
            name: row.name,
            created_at: UnixTime::from_secs(row.created_at),
        })
    }
}

pub struct UserRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            username: Username::parse(&row.username)
                .map_err(|_| StoreError::Corrupt(format!("user {}: username", row.id)))?,
            id: row.id.into(),
            password_hash: row.password_hash,
            created_at: UnixTime::from_secs(row.created_at),
        })
    }
}

pub struct CodeRow {
    pub hash: Vec<u8>,
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    pub family_id: String,
    pub audience: String,
    pub nonce: Option<String>,
    pub auth_time: Option<i64>,
}

impl TryFrom<CodeRow> for AuthorizationCodeRecord {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("code row: {what}"));
        Ok(AuthorizationCodeRecord {
            hash: TokenKey::from_slice(&row.hash).ok_or_else(|| corrupt("hash length"))?,
            scope: Scope::parse(&row.scope).map_err(|_| corrupt("scope"))?,
            client_id: row.client_id.into(),
            user_id: row.user_id.into(),
            redirect_uri: row.redirect_uri,
            redirect_uri_given: row.redirect_uri_given,
            code_challenge: row.code_challenge,
            issued_at: UnixTime::from_secs(row.issued_at),
            expires_at: UnixTime::from_secs(row.expires_at),
            redeemed_at: row.redeemed_at.map(UnixTime::from_secs),
            family_id: row.family_id.into(),
            audience: Audience::stored(&row.audience),
            nonce: row.nonce,
            auth_time: row.auth_time.map(UnixTime::from_secs),
        })
    }
}

pub struct ProfileRow {
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

impl From<ProfileRow> for (String, Profile) {
    fn from(row: ProfileRow) -> Self {
        let profile = Profile {
            name: row.name,
            email: row.email,
            email_verified: row.email_verified,
        };
        (row.username, profile)
    }
}

/// A client's OpenID Connect settings as stored.
pub fn client_oidc(alg: Option<String>, uris: &str) -> ClientOidc {
    ClientOidc {
        id_token_signed_response_alg: alg,
        post_logout_redirect_uris: uris
            .split(' ')
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub public_jwk: String,
    pub encrypted_private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl From<SigningKeyRow> for StoredSigningKey {
    fn from(row: SigningKeyRow) -> Self {
        StoredSigningKey {
            kid: row.kid,
            alg: row.alg,
            public_jwk: row.public_jwk,
            encrypted_private_key: row.encrypted_private_key,
            created_at: UnixTime::from_secs(row.created_at),
            retired_at: row.retired_at.map(UnixTime::from_secs),
        }
    }
}

pub struct AdminTokenRow {
    pub id: String,
    pub token_key: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl TryFrom<AdminTokenRow> for AdminTokenRecord {
    type Error = StoreError;

    fn try_from(row: AdminTokenRow) -> Result<Self, StoreError> {
        Ok(AdminTokenRecord {
            key: TokenKey::from_slice(&row.token_key)
                .ok_or_else(|| StoreError::Corrupt(format!("admin token {}: key", row.id)))?,
            id: row.id,
            created_at: UnixTime::from_secs(row.created_at),
            expires_at: row.expires_at.map(UnixTime::from_secs),
            revoked_at: row.revoked_at.map(UnixTime::from_secs),
        })
    }
}

pub struct UserProfileRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub created_at: i64,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

impl TryFrom<UserProfileRow> for (User, Profile) {
    type Error = StoreError;

    fn try_from(row: UserProfileRow) -> Result<Self, StoreError> {
        let profile = Profile {
            name: row.name,
            email: row.email,
            email_verified: row.email_verified,
        };
        let user = User::try_from(UserRow {
            id: row.id,
            username: row.username,
            password_hash: row.password_hash,
            created_at: row.created_at,
        })?;
        Ok((user, profile))
    }
}

pub struct FamilyRow {
    pub family_id: String,
    pub client_id: String,
    pub subject: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub tokens: i64,
}

impl From<FamilyRow> for TokenFamily {
    fn from(row: FamilyRow) -> Self {
        TokenFamily {
            family_id: row.family_id.into(),
            client_id: row.client_id.into(),
            subject: row.subject.map(Into::into),
            issued_at: UnixTime::from_secs(row.issued_at),
            expires_at: UnixTime::from_secs(row.expires_at),
            tokens: u64::try_from(row.tokens).unwrap_or(0),
        }
    }
}

/// PostgreSQL's rows, by column name (SQLite's are read by position, in `sqlite`).
mod from_postgres {
    use sqlx::postgres::PgRow;
    use sqlx::{FromRow, Row};

    use super::{
        AdminTokenRow, AuditEventRow, ClientRow, CodeRow, FamilyRow, ProfileRow, ResourceRow,
        RevocationEventRow, SigningKeyRow, TokenRow, UserProfileRow, UserRow,
    };

    /// `FromRow` for each row type, every field read from the column of its own name.
    macro_rules! from_columns {
        ($($row:ident { $($field:ident),+ $(,)? })+) => {$(
            impl FromRow<'_, PgRow> for $row {
                fn from_row(r: &PgRow) -> sqlx::Result<Self> {
                    Ok(Self { $($field: r.try_get(stringify!($field))?,)+ })
                }
            }
        )+};
    }

    from_columns! {
        ClientRow {
            client_id, name, secret_hash, auth_method, grant_types, scope, redirect_uris,
            skip_consent, created_at, resource, self_registered,
        }
        TokenRow {
            hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at,
            rotated_at, family_id, audience, username,
        }
        ResourceRow { uri, client_id, name, scope, created_at }
        RevocationEventRow { seq, token_key, audience, created_at }
        UserRow { id, username, password_hash, created_at }
        CodeRow {
            hash, client_id, user_id, redirect_uri, redirect_uri_given, scope, code_challenge,
            issued_at, expires_at, redeemed_at, family_id, audience, nonce, auth_time,
        }
        ProfileRow { username, name, email, email_verified }
        AuditEventRow { id, at, kind, actor, username, client_id, address, detail }
        SigningKeyRow { kid, alg, public_jwk, encrypted_private_key, created_at, retired_at }
        AdminTokenRow { id, token_key, created_at, expires_at, revoked_at }
        UserProfileRow { id, username, password_hash, created_at, name, email, email_verified }
        FamilyRow { family_id, client_id, subject, issued_at, expires_at, tokens }
    }
}
