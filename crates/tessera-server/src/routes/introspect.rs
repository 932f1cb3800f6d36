//! `POST /introspect` (RFC 7662).

use axum::extract::State;
use axum::response::IntoResponse;
use tessera_core::OAuthError;
use tessera_core::introspection::introspect as decide;
use tessera_core::token::TokenHash;

use crate::client_auth::{Allowed, authenticate};
use crate::error::{NoStoreJson, WebError};
use crate::extract::{AuthorizationHeader, OAuthForm};
use crate::state::AppState;

/// Any confidential client may introspect (a resource server is one). A store failure is a
/// 503, never `active: false`: saying "inactive" when we cannot know would be a lie a
/// resource server might cache.
pub async fn introspect(
    State(state): State<AppState>,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let caller = authenticate(
        &state,
        authorization.as_deref(),
        &form,
        Allowed::ConfidentialOnly,
    )
    .await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("missing token"))?;
    // `token_type_hint` is only a hint (RFC 7662 §2.1): one lookup by hash finds any kind.
    let record = state.store.find_token(&TokenHash::of(token)).await?;
    let answer = decide(record.as_ref(), &caller.id, &state.issuer, state.now());
    Ok(NoStoreJson(answer))
}
