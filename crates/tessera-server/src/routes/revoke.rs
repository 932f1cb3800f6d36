//! `POST /revoke` (RFC 7009).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use tessera_core::OAuthError;
use tessera_core::clock::UnixTime;
use tessera_core::token::{TokenHash, TokenKind, TokenRecord};
use tessera_store::StoreError;

use crate::client_auth::{Allowed, authenticate};
use crate::error::{WebError, no_store};
use crate::extract::{AuthorizationHeader, OAuthForm};
use crate::state::AppState;

/// Revokes a token the calling client owns. Unknown tokens and other clients' tokens are
/// answered 200 as well (RFC 7009 §2.2), so the endpoint cannot be used to probe tokens.
/// Revoking a refresh token revokes its whole family, the access tokens issued from the same
/// grant included (RFC 7009 §2.1).
pub async fn revoke(
    State(state): State<AppState>,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let client = authenticate(&state, authorization.as_deref(), &form, Allowed::AnyClient).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("missing token"))?;
    let hash = TokenHash::of(token);
    let now = state.now();
    match state.store.find_token(&hash).await? {
        Some(record) if record.client_id == client.id => {
            revoke_reach(&state, &record, now).await?;
            tracing::debug!(client_id = %client.id, kind = ?record.kind, "token revoked");
        }
        Some(_) => {
            tracing::warn!(client_id = %client.id, "refused to revoke another client's token")
        }
        None => {}
    }
    Ok((StatusCode::OK, no_store()))
}

/// Revokes what `record` reaches; returns how many tokens that revoked. A refresh token takes
/// its family (the access tokens minted with it and its successors) along; an access token,
/// or a refresh token stored without a family (none is minted so), goes alone (RFC 7009 §2.1
/// allows either).
pub(crate) async fn revoke_reach(
    state: &AppState,
    record: &TokenRecord,
    now: UnixTime,
) -> Result<u64, StoreError> {
    match (&record.family_id, record.kind) {
        (Some(family_id), TokenKind::Refresh) => state.store.revoke_family(family_id, now).await,
        _ => state
            .store
            .revoke_token(&record.hash, now)
            .await
            .map(u64::from),
    }
}
