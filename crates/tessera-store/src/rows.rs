//! Row shapes shared by both backends, and their conversion to core types.
//!
//! The SQL text below is valid in both dialects (`$n` placeholders, `RETURNING`), so each
//! backend reuses it and spells out only what differs.

use tessera_core::client::{Client, GrantType, RedirectUri, TokenEndpointAuthMethod};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenHash, TokenKind, TokenRecord};

use crate::StoreError;

pub const INSERT_CLIENT: &str = "INSERT INTO clients \
    (client_id, name, secret_hash, auth_method, grant_types, scope, redirect_uris, skip_consent, created_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub const SELECT_CLIENT: &str = "SELECT client_id, name, secret_hash, auth_method, grant_types, \
    scope, redirect_uris, skip_consent, created_at FROM clients WHERE client_id = $1";
pub const LIST_CLIENTS: &str = "SELECT client_id, name, secret_hash, auth_method, grant_types, \
    scope, redirect_uris, skip_consent, created_at FROM clients ORDER BY created_at, client_id";
pub const DELETE_CLIENT: &str = "DELETE FROM clients WHERE client_id = $1";
pub const INSERT_TOKEN: &str = "INSERT INTO tokens \
    (hash, kind, client_id, subject, scope, issued_at, expires_at, revoked_at, family_id) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub const SELECT_TOKEN: &str = "SELECT hash, kind, client_id, subject, scope, issued_at, \
    expires_at, revoked_at, family_id FROM tokens WHERE hash = $1";
pub const REVOKE_TOKEN: &str =
    "UPDATE tokens SET revoked_at = $2 WHERE hash = $1 AND revoked_at IS NULL";
pub const REVOKE_FAMILY: &str =
    "UPDATE tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL";

#[derive(sqlx::FromRow)]
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
            .map(RedirectUri::parse)
            .collect::<Result<_, _>>()?;
        Ok(Client {
            auth_method: TokenEndpointAuthMethod::parse(&row.auth_method)
                .ok_or_else(|| corrupt("auth method"))?,
            scope: Scope::parse(&row.scope).map_err(|_| corrupt("scope"))?,
            grant_types,
            redirect_uris,
            id: row.client_id,
            name: row.name,
            secret_hash: row.secret_hash,
            skip_consent: row.skip_consent,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub struct TokenRow {
    pub hash: Vec<u8>,
    pub kind: i16,
    pub client_id: String,
    pub subject: Option<String>,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub family_id: String,
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
            hash: TokenHash::from_slice(&row.hash).ok_or_else(|| corrupt("hash length"))?,
            kind,
            scope: Scope::parse(&row.scope).map_err(|_| corrupt("scope"))?,
            client_id: row.client_id,
            subject: row.subject,
            issued_at: row.issued_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
            family_id: row.family_id,
        })
    }
}
