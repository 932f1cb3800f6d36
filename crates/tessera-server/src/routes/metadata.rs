//! `GET /.well-known/oauth-authorization-server` (RFC 8414) and
//! `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0): one document.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use tessera_core::metadata::server_metadata;
use tessera_core::scope::Scope;

use crate::error::WebError;
use crate::state::AppState;

pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";

/// `scopes_supported` is the union of the registered clients' scopes, so it is always true.
pub async fn metadata(State(state): State<AppState>) -> Result<impl IntoResponse, WebError> {
    let scopes = state
        .store
        .list_clients()
        .await?
        .iter()
        .fold(Scope::default(), |all, c| all.union(&c.scope));
    let scopes = scopes.iter().map(str::to_owned).collect();
    let registration = state.config.registration.is_on();
    let documents = state.config.client_metadata_documents;
    let openid = state.flows.openid_enabled().await?;
    Ok(Json(server_metadata(
        state.issuer(),
        scopes,
        registration,
        documents,
        openid,
    )))
}
