//! `POST /token` (RFC 6749 §3.2).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use tessera_core::client::Client;
use tessera_core::grant::{TokenRequest, TokenResponse, ensure_grant_allowed, granted_scope};
use tessera_core::scope::Scope;
use tessera_core::token::{RawToken, TokenKind, TokenRecord, new_family_id};

use crate::client_auth::{Allowed, authenticate};
use crate::error::{WebError, no_store};
use crate::extract::{AuthorizationHeader, OAuthForm};
use crate::state::AppState;

pub async fn token(
    State(state): State<AppState>,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let client = authenticate(&state, authorization.as_deref(), &form, Allowed::AnyClient).await?;
    let request = TokenRequest::parse(&form)?;
    ensure_grant_allowed(&client, request.grant_type())?;
    let response = match request {
        TokenRequest::ClientCredentials { scope } => {
            let scope = granted_scope(&client, scope.as_ref())?;
            issue_access_token(&state, &client, scope).await?
        }
    };
    tracing::info!(client_id = %client.id, grant = "client_credentials", "token issued");
    Ok((no_store(), Json(response)))
}

/// Issues an access token for the client itself (no refresh token: RFC 6749 §4.4.3).
async fn issue_access_token(
    state: &AppState,
    client: &Client,
    scope: Scope,
) -> Result<TokenResponse, WebError> {
    let now = state.now();
    let ttl = state.config.lifetimes.access;
    let token = RawToken::generate(TokenKind::Access).map_err(WebError::internal)?;
    let record = TokenRecord {
        hash: token.hash(),
        kind: TokenKind::Access,
        client_id: client.id.clone(),
        subject: None,
        scope: scope.clone(),
        issued_at: now,
        expires_at: now.saturating_add(ttl),
        revoked_at: None,
        family_id: new_family_id().map_err(WebError::internal)?,
    };
    state.store.insert_tokens(&[record]).await?;
    Ok(TokenResponse {
        access_token: token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: ttl,
        refresh_token: None,
        scope: scope.to_string(),
    })
}
