//! The tower layer that guards routes, the extractor that hands the token to handlers, and
//! the RFC 6750 §3 answers for everything else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use serde_json::json;
use tower::{Layer, Service};

use crate::bearer::{Bearer, bearer_token};
use crate::info::{ScopeRequirement, TokenInfo};
use crate::validator::TokenValidator;

/// A validator and the realm named in challenges. Cheap to clone; make one per application
/// and derive a [`RequireScope`] layer per route or router.
#[derive(Clone)]
pub struct Guard {
    validator: Arc<dyn TokenValidator>,
    realm: Arc<str>,
}

impl Guard {
    pub fn new(validator: impl TokenValidator, realm: impl Into<String>) -> Self {
        Self {
            validator: Arc::new(validator),
            realm: sanitize(&realm.into()).into(),
        }
    }

    /// A layer letting through tokens that grant `scope`.
    pub fn require(&self, scope: &str) -> RequireScope {
        self.require_all(&[scope])
    }

    /// A layer letting through tokens that grant every one of `scopes`.
    pub fn require_all(&self, scopes: &[&str]) -> RequireScope {
        self.layer(ScopeRequirement::All(
            scopes.iter().map(|s| s.to_string()).collect(),
        ))
    }

    /// A layer letting through tokens that grant at least one of `scopes`.
    pub fn require_any(&self, scopes: &[&str]) -> RequireScope {
        self.layer(ScopeRequirement::Any(
            scopes.iter().map(|s| s.to_string()).collect(),
        ))
    }

    fn layer(&self, requirement: ScopeRequirement) -> RequireScope {
        RequireScope {
            guard: self.clone(),
            requirement: Arc::new(requirement),
        }
    }

    /// Checks a request's headers against `requirement`; the layer's logic, usable directly.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        requirement: &ScopeRequirement,
    ) -> Result<TokenInfo, Rejection> {
        let token = match bearer_token(headers) {
            Bearer::Missing => return Err(self.reject(Refusal::MissingToken)),
            Bearer::Malformed => return Err(self.reject(Refusal::MalformedRequest)),
            Bearer::Token(t) => t,
        };
        match self.validator.validate(token.expose()).await {
            Ok(Some(info)) if requirement.is_met_by(&info.scope) => Ok(info),
            Ok(Some(_)) => Err(self.reject(Refusal::InsufficientScope(requirement.to_string()))),
            Ok(None) => Err(self.reject(Refusal::InvalidToken)),
            Err(e) => {
                tracing::warn!(error = %e, "token validation failed; refusing with 503");
                Err(self.reject(Refusal::Unavailable))
            }
        }
    }

    fn reject(&self, refusal: Refusal) -> Rejection {
        Rejection {
            refusal,
            realm: self.realm.clone(),
        }
    }
}

/// Quoted-string values may not contain `"` or `\`; realms are operator-chosen, so strip them.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No bearer token: 401 with a bare challenge (RFC 6750 §3.1: no error code).
    MissingToken,
    /// 400 `invalid_request`.
    MalformedRequest,
    /// 401 `invalid_token`: unknown, expired, revoked, or not an access token.
    InvalidToken,
    /// 403 `insufficient_scope`, with the scope needed.
    InsufficientScope(String),
    /// 503: the authorization server could not say. Never a guess either way.
    Unavailable,
}

/// A refusal, ready to become the response.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub refusal: Refusal,
    realm: Arc<str>,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let realm = &self.realm;
        let (status, challenge, error, description) = match &self.refusal {
            Refusal::MissingToken => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer realm=\"{realm}\"")),
                None,
                "a bearer token is required",
            ),
            Refusal::MalformedRequest => (
                StatusCode::BAD_REQUEST,
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"malformed Authorization header\""
                )),
                Some("invalid_request"),
                "malformed Authorization header",
            ),
            Refusal::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\""
                )),
                Some("invalid_token"),
                "the access token is invalid, expired or revoked",
            ),
            Refusal::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                Some(format!(
                    "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{scope}\""
                )),
                Some("insufficient_scope"),
                "the access token does not grant the scope this resource needs",
            ),
            Refusal::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some("temporarily_unavailable"),
                "the token cannot be checked right now; retry later",
            ),
        };
        let body = match error {
            Some(e) => json!({"error": e, "error_description": description}),
            None => json!({"error_description": description}),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if self.refusal == Refusal::Unavailable {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A tower layer that lets a request through only with a token meeting its requirement; the
/// [`TokenInfo`] is put in the request's extensions for the [`Token`] extractor.
#[derive(Clone)]
pub struct RequireScope {
    guard: Guard,
    requirement: Arc<ScopeRequirement>,
}

impl<S> Layer<S> for RequireScope {
    type Service = RequireScopeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScopeService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequireScopeService<S> {
    inner: S,
    layer: RequireScope,
}

impl<S, B> Service<Request<B>> for RequireScopeService<S>
where
    S: Service<Request<B>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            match layer.guard.check(req.headers(), &layer.requirement).await {
                Ok(info) => {
                    req.extensions_mut().insert(info);
                    inner.call(req).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

/// The validated token of a guarded request. Using it on a route without a
/// [`RequireScope`] layer is a programming error, answered with a 500.
pub struct Token(pub TokenInfo);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        match parts.extensions.get::<TokenInfo>() {
            Some(info) => Ok(Token(info.clone())),
            None => {
                tracing::error!("Token extractor used on a route without a RequireScope layer");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}
