//! `POST /revoke` (RFC 7009).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

use crate::error::{WebError, no_store};
use crate::extract::{AuthorizationHeader, OAuthForm, PeerIp};
use crate::state::AppState;

/// Every revocation a client may ask is answered 200, whether the token was its own,
/// another client's or unknown (RFC 7009 §2.2), so the endpoint cannot probe for tokens.
pub async fn revoke(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    AuthorizationHeader(authorization): AuthorizationHeader,
    OAuthForm(form): OAuthForm,
) -> Result<impl IntoResponse, WebError> {
    state
        .flows
        .revoke(authorization.as_deref(), &form, ip)
        .await?;
    Ok((StatusCode::OK, no_store()))
}
