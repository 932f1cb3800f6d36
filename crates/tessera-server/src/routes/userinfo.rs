//! `GET` and `POST /userinfo` (OpenID Connect Core §5.3), with the opaque access token.

use axum::extract::State;
use axum::response::IntoResponse;

use crate::error::{NoStoreJson, WebError};
use crate::extract::BearerToken;
use crate::state::AppState;

pub async fn userinfo_get(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
) -> Result<impl IntoResponse, WebError> {
    let token = token.ok_or(WebError::BearerRequired)?;
    Ok(NoStoreJson(state.flows.userinfo(Some(&token)).await?))
}

pub async fn userinfo_post(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
) -> Result<impl IntoResponse, WebError> {
    let token = token.ok_or(WebError::BearerRequired)?;
    Ok(NoStoreJson(state.flows.userinfo(Some(&token)).await?))
}
