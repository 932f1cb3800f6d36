//! `POST /token` (RFC 6749 §3.2): client_credentials, authorization_code, refresh_token.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::error::{NoStoreJson, WebError};
use crate::extract::{AuthorizationHeader, OAuthForm, PeerIp};
use crate::state::AppState;

pub async fn token(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    let response = state
        .flows
        .token(authorization.as_deref(), &form, ip)
        .await?;
    Ok(NoStoreJson(response))
}
