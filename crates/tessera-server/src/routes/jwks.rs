//! `GET /jwks`: the JWK Set that verifies ID tokens (RFC 7517 §5), `jwks_uri` in discovery.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;

use crate::error::WebError;
use crate::state::AppState;

/// Public and shared by every node, so caches may keep it a minute: a rotated key is
/// published long before it signs anything a client must verify.
pub async fn jwks(State(state): State<AppState>) -> Result<impl IntoResponse, WebError> {
    let keys = state.flows.key_set().await?;
    let cache = [(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    )];
    Ok((cache, Json(keys.jwks().clone())))
}
