//! `POST /register` (RFC 7591) and `GET`, `PUT`, `DELETE /register/{client_id}` (RFC 7592).
//! Routed only when registration is not off (see `routes::router`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::error::{NoStoreJson, WebError, no_store};
use crate::extract::{AuthorizationHeader, ClientMetadataJson, PeerIp};
use crate::state::AppState;

pub async fn register(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    AuthorizationHeader(authorization): AuthorizationHeader,
    ClientMetadataJson(metadata): ClientMetadataJson,
) -> Result<impl IntoResponse, WebError> {
    let information = state
        .flows
        .register(authorization.as_deref(), &metadata, ip)
        .await?;
    Ok((StatusCode::CREATED, NoStoreJson(information)))
}

pub async fn read(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    AuthorizationHeader(authorization): AuthorizationHeader,
) -> Result<impl IntoResponse, WebError> {
    let information = state
        .flows
        .read_registration(&client_id, authorization.as_deref())
        .await?;
    Ok(NoStoreJson(information))
}

pub async fn update(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    AuthorizationHeader(authorization): AuthorizationHeader,
    ClientMetadataJson(metadata): ClientMetadataJson,
) -> Result<impl IntoResponse, WebError> {
    let information = state
        .flows
        .update_registration(&client_id, authorization.as_deref(), &metadata)
        .await?;
    Ok(NoStoreJson(information))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(client_id): Path<String>,
    AuthorizationHeader(authorization): AuthorizationHeader,
) -> Result<impl IntoResponse, WebError> {
    state
        .flows
        .delete_registration(&client_id, authorization.as_deref())
        .await?;
    Ok((StatusCode::NO_CONTENT, no_store()))
}
