//! `POST /introspect` (RFC 7662).

use axum::extract::State;
use axum::response::IntoResponse;

use crate::error::{NoStoreJson, WebError};
use crate::extract::{AuthorizationHeader, OAuthForm, PeerIp};
use crate::state::AppState;

pub async fn introspect(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let answer = state
        .flows
        .introspect(authorization.as_deref(), &form, ip)
        .await?;
    Ok(NoStoreJson(answer))
}
