//! Extractors for OAuth requests: the strict form body and the `Authorization` header.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use tessera_core::OAuthError;
use tessera_core::form::FormParams;
use tessera_core::registration::{BODY_LIMIT, ClientMetadata};

use crate::error::WebError;
use crate::state::AppState;

/// Form bodies larger than this are refused with 413. OAuth requests are a few hundred bytes.
pub const FORM_BODY_LIMIT: usize = 64 * 1024;

/// A strictly parsed `application/x-www-form-urlencoded` body (see [`FormParams`]).
pub struct OAuthForm(pub FormParams);

impl<S: Send + Sync> FromRequest<S> for OAuthForm {
    type Rejection = WebError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, WebError> {
        let body = form_body(req).await?;
        FormParams::parse(&body)
            .map(OAuthForm)
            .map_err(|e| OAuthError::invalid_request(e.to_string()).into())
    }
}

/// The raw body of a form POST, after checking its media type and size.
pub async fn form_body(req: Request) -> Result<Bytes, WebError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        )
        .into());
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > FORM_BODY_LIMIT as u64) {
        return Err(WebError::PayloadTooLarge);
    }
    axum::body::to_bytes(req.into_body(), FORM_BODY_LIMIT)
        .await
        .map_err(|_| WebError::PayloadTooLarge)
}

/// Client metadata (RFC 7591 §2) from a JSON body of at most
/// [`tessera_core::registration::BODY_LIMIT`] bytes. Unknown fields are ignored; a body that
/// is not a JSON object of the known fields' types is `invalid_client_metadata`.
pub struct ClientMetadataJson(pub ClientMetadata);

impl<S: Send + Sync> FromRequest<S> for ClientMetadataJson {
    type Rejection = WebError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, WebError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("application/json") {
            return Err(OAuthError::invalid_request("the body must be application/json").into());
        }
        let body = axum::body::to_bytes(req.into_body(), BODY_LIMIT)
            .await
            .map_err(|_| WebError::PayloadTooLarge)?;
        serde_json::from_slice(&body)
            .map(ClientMetadataJson)
            .map_err(|e| {
                OAuthError::InvalidClientMetadata(format!(
                    "the body is not valid client metadata: {e}"
                ))
                .into()
            })
    }
}

/// The caller's IP address: the socket's peer, or what a trusted proxy says it saw
/// ([`crate::proxy::caller`]).
pub struct PeerIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let trusted = &state.config.trusted_proxies;
        Ok(Self(peer.map(|peer| {
            if trusted.is_empty() {
                peer
            } else {
                crate::proxy::caller(peer, &parts.headers, trusted)
            }
        })))
    }
}

/// The raw `Authorization` header, if there is exactly one.
pub struct AuthorizationHeader(pub Option<Vec<u8>>);

impl<S: Send + Sync> FromRequestParts<S> for AuthorizationHeader {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebError> {
        let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
        let first = values.next().map(|v| v.as_bytes().to_vec());
        if values.next().is_some() {
            return Err(OAuthError::invalid_request("more than one Authorization header").into());
        }
        Ok(Self(first))
    }
}

/// Where a revocation stream resumes (`tessera_core::revocation`): the `Last-Event-ID`
/// header an `EventSource` sends when it reconnects, or else a `last_event_id` query
/// parameter, for clients that cannot set the header on their first request.
pub struct LastEventId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, WebError> {
        let mut values = parts.headers.get_all("last-event-id").iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request("more than one Last-Event-ID header").into());
        }
        if let Some(value) = first {
            let id = value
                .to_str()
                .map_err(|_| OAuthError::invalid_request("Last-Event-ID is not text"))?;
            return Ok(Self(Some(id.to_owned())));
        }
        let query = parts.uri.query().unwrap_or_default();
        let params = FormParams::parse(query.as_bytes())
            .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        Ok(Self(params.get("last_event_id").map(str::to_owned)))
    }
}

/// The access token of an RFC 6750 request: the `Authorization: Bearer` header (§2.1), or
/// on a form POST the `access_token` field (§2.2); both at once is `invalid_request` (§2).
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequest<S> for BearerToken {
    type Rejection = WebError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, WebError> {
        let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
        let header_token = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(value), None) => Some(bearer_of(value.as_bytes())?),
            (Some(_), Some(_)) => {
                return Err(
                    OAuthError::invalid_request("more than one Authorization header").into(),
                );
            }
        };
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if req.method() != axum::http::Method::POST || !is_form {
            return Ok(Self(header_token));
        }
        let body = form_body(req).await?;
        let form =
            FormParams::parse(&body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        match (header_token, form.get("access_token")) {
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(
                "the access token is in both the header and the body",
            )
            .into()),
            (Some(token), None) => Ok(Self(Some(token))),
            (None, body_token) => Ok(Self(body_token.map(str::to_owned))),
        }
    }
}

/// The token of a `Bearer` credential (RFC 6750 §2.1: the scheme is case-insensitive).
fn bearer_of(value: &[u8]) -> Result<String, WebError> {
    let invalid = || OAuthError::InvalidToken("the Authorization header is not Bearer".into());
    let text = std::str::from_utf8(value).map_err(|_| invalid())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(invalid)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(invalid().into());
    }
    Ok(token.to_owned())
}
