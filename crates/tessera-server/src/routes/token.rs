//! `POST /token` (RFC 6749 §3.2): client_credentials, authorization_code, refresh_token.

use axum::extract::State;
use axum::response::IntoResponse;
use tessera_core::OAuthError;
use tessera_core::client::{Client, GrantType};
use tessera_core::grant::{
    Minted, RefreshCheck, TokenRequest, TokenResponse, TokenSubject, check_code, check_refresh,
    ensure_grant_allowed, granted_scope, mint_tokens,
};
use tessera_core::scope::Scope;
use tessera_core::token::{TokenHash, TokenRecord};
use tessera_store::Redemption;

use crate::client_auth::{Allowed, authenticate};
use crate::error::{NoStoreJson, WebError};
use crate::extract::{AuthorizationHeader, OAuthForm};
use crate::state::AppState;

pub async fn token(
    State(state): State<AppState>,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let client = authenticate(&state, authorization.as_deref(), &form, Allowed::AnyClient).await?;
    let request = TokenRequest::parse(&form)?;
    let grant = request.grant_type();
    ensure_grant_allowed(&client, grant)?;
    let response = match request {
        TokenRequest::ClientCredentials { scope } => {
            let scope = granted_scope(&client, scope.as_ref())?;
            client_credentials(&state, &client, scope).await?
        }
        TokenRequest::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => {
            authorization_code(
                &state,
                &client,
                &code,
                redirect_uri.as_deref(),
                code_verifier.as_deref(),
            )
            .await?
        }
        TokenRequest::RefreshToken {
            refresh_token,
            scope,
        } => refresh(&state, &client, &refresh_token, scope.as_ref()).await?,
    };
    // Routine, once per token: DEBUG, so the log's volume follows security events (sign-ins,
    // failures, reuse), not traffic (docs/BENCHMARKS-LOG.md: 6% of a token's CPU at INFO).
    tracing::debug!(client_id = %client.id, grant = grant.as_str(), "token issued");
    Ok(NoStoreJson(response))
}

fn mint(
    state: &AppState,
    client: &Client,
    user_id: Option<&str>,
    scope: Scope,
    family_id: Option<&str>,
) -> Result<Minted, WebError> {
    let subject = TokenSubject {
        client_id: &client.id,
        user_id,
        scope,
        family_id,
    };
    // Refresh tokens only for users, and only for clients registered for the grant.
    let with_refresh = user_id.is_some() && client.allows_grant(GrantType::RefreshToken);
    mint_tokens(&subject, state.config.lifetimes, with_refresh, state.now())
        .map_err(WebError::internal)
}

/// An access token for the client itself; no refresh token (RFC 6749 §4.4.3).
async fn client_credentials(
    state: &AppState,
    client: &Client,
    scope: Scope,
) -> Result<TokenResponse, WebError> {
    let minted = mint(state, client, None, scope, None)?;
    state.store.insert_tokens(&minted.records).await?;
    Ok(minted.response)
}

/// Exchanges a code once. A second exchange means the code leaked: RFC 6749 §4.1.2 says the
/// server SHOULD revoke the tokens issued from it, so the whole family goes.
async fn authorization_code(
    state: &AppState,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<TokenResponse, WebError> {
    let hash = TokenHash::of(code);
    let now = state.now();
    let unknown = || OAuthError::InvalidGrant("unknown, expired or used authorization code".into());
    let record = state.store.find_code(&hash).await?.ok_or_else(unknown)?;
    if record.redeemed_at.is_some() && record.client_id == client.id {
        return Err(replayed_code(state, &record.family_id, now).await);
    }
    check_code(&record, client, redirect_uri, code_verifier, now)?;
    let minted = mint(
        state,
        client,
        Some(&record.user_id),
        record.scope.clone(),
        Some(&record.family_id),
    )?;
    match state.store.redeem_code(&hash, now, &minted.records).await? {
        Redemption::Redeemed => Ok(minted.response),
        Redemption::AlreadyRedeemed { family_id } => {
            Err(replayed_code(state, &family_id, now).await)
        }
        Redemption::NotFound => Err(unknown().into()),
    }
}

async fn replayed_code(state: &AppState, family_id: &str, now: i64) -> WebError {
    match state.store.revoke_family(family_id, now).await {
        Ok(n) => {
            tracing::warn!(
                event = "code_replayed",
                revoked = n,
                "authorization code used twice; its tokens are revoked"
            );
            OAuthError::InvalidGrant("unknown, expired or used authorization code".into()).into()
        }
        Err(e) => e.into(),
    }
}

/// Rotates a refresh token. Presenting a rotated one again means it was stolen (or the
/// legitimate client lost a race with the thief): the whole family is revoked (RFC 9700
/// §4.14.2), so neither party keeps access.
async fn refresh(
    state: &AppState,
    client: &Client,
    refresh_token: &str,
    requested: Option<&Scope>,
) -> Result<TokenResponse, WebError> {
    let hash = TokenHash::of(refresh_token);
    let now = state.now();
    let record = state
        .store
        .find_token(&hash)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("unknown refresh token".into()))?;
    let scope = match check_refresh(&record, client, requested, now)? {
        RefreshCheck::Rotate { scope } => scope,
        RefreshCheck::Reused => return Err(reused_refresh(state, &record, now).await),
    };
    let minted = mint(
        state,
        client,
        record.subject.as_deref(),
        scope,
        record.family_id.as_deref(),
    )?;
    if state
        .store
        .rotate_refresh_token(&hash, now, &minted.records)
        .await?
    {
        Ok(minted.response)
    } else {
        Err(reused_refresh(state, &record, now).await)
    }
}

async fn reused_refresh(state: &AppState, record: &TokenRecord, now: i64) -> WebError {
    match super::revoke::revoke_reach(state, record, now).await {
        Ok(n) => {
            tracing::warn!(
                event = "refresh_token_reused",
                revoked = n,
                "rotated refresh token presented again; family revoked"
            );
            OAuthError::InvalidGrant(
                "the refresh token was already used; all tokens of this grant are revoked".into(),
            )
            .into()
        }
        Err(e) => e.into(),
    }
}
