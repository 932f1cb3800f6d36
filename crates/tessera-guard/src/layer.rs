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
use tessera_core::resource::ResourceUri;
use tower::{Layer, Service};

use crate::bearer::{AccessToken, Bearer, bearer_token};
use crate::info::{ScopeRequirement, TokenInfo};
use crate::metadata::ProtectedResource;
use crate::validator::{TokenValidator, Validation};

/// A validator and the realm named in challenges, and optionally the resource the guard
/// protects. Cheap to clone; make one per application and derive a [`RequireScope`] layer per
/// route or router.
#[derive(Clone)]
pub struct Guard {
    validator: Arc<dyn TokenValidator>,
    realm: Arc<str>,
    bound: Option<Arc<Bound>>,
}

/// What a guard bound to a resource adds to its checks and its challenges.
struct Bound {
    resource: ProtectedResource,
    /// The `resource_metadata` challenge parameter's value, ready to quote.
    metadata_url: Arc<str>,
}

impl Guard {
    pub fn new(validator: impl TokenValidator, realm: impl Into<String>) -> Self {
        Self {
            validator: Arc::new(validator),
            realm: sanitize(&realm.into()).into(),
            bound: None,
        }
    }

    /// Binds the guard to `resource`: a token whose audience does not name it is refused as
    /// `invalid_token`, whichever validator said it was active, and every 401 points at its
    /// metadata (RFC 9728 §5.1). Serve that with [`ProtectedResource::metadata_routes`].
    pub fn for_resource(mut self, resource: ProtectedResource) -> Self {
        let metadata_url = sanitize(resource.metadata_url()).into();
        self.bound = Some(Arc::new(Bound {
            resource,
            metadata_url,
        }));
        self
    }

    /// The resource this guard is bound to, if any.
    pub fn resource(&self) -> Option<&ProtectedResource> {
        self.bound.as_deref().map(|b| &b.resource)
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
            inner: Arc::new((self.clone(), requirement)),
        }
    }

    /// Checks a request's headers against `requirement`; the layer's logic, usable directly.
    pub async fn check(
        &self,
        headers: &HeaderMap,
        requirement: &ScopeRequirement,
    ) -> Result<Arc<TokenInfo>, Rejection> {
        match self.check_now(headers, requirement) {
            Checked::Decided(decision) => decision,
            Checked::Ask(token) => {
                let answer = self.validator.validate(token.expose()).await;
                self.decide(answer, requirement)
            }
        }
    }

    /// The decision, if it needs no waiting: no well-formed token, or an answer at hand.
    fn check_now(&self, headers: &HeaderMap, requirement: &ScopeRequirement) -> Checked {
        let token = match bearer_token(headers) {
            Bearer::Missing => return Checked::Decided(Err(self.reject(Refusal::MissingToken))),
            Bearer::Malformed => {
                return Checked::Decided(Err(self.reject(Refusal::MalformedRequest)));
            }
            Bearer::Token(t) => t,
        };
        match self.validator.validate_now(token.expose()) {
            Some(answer) => Checked::Decided(self.decide(answer, requirement)),
            None => Checked::Ask(token),
        }
    }

    fn decide(
        &self,
        answer: Validation,
        requirement: &ScopeRequirement,
    ) -> Result<Arc<TokenInfo>, Rejection> {
        match answer {
            // A token for another resource is checked before scope: it is not a valid token
            // here, whatever it grants elsewhere (RFC 8707 §2; RFC 9700 §2.3).
            Ok(Some(info)) if !self.is_audience(&info) => {
                tracing::debug!("the token's audience does not include this resource");
                Err(self.reject(Refusal::InvalidToken))
            }
            Ok(Some(info)) if requirement.is_met_by(&info.scope) => Ok(info),
            Ok(Some(_)) => Err(self.reject(Refusal::InsufficientScope(requirement.to_string()))),
            Ok(None) => Err(self.reject(Refusal::InvalidToken)),
            Err(e) => {
                tracing::warn!(error = %e, "token validation failed; refusing with 503");
                Err(self.reject(Refusal::Unavailable))
            }
        }
    }

    /// Whether the token may be presented here: always for an unbound guard; for a bound
    /// one, if an audience value names the resource once both are in canonical form.
    fn is_audience(&self, info: &TokenInfo) -> bool {
        let Some(bound) = &self.bound else {
            return true;
        };
        let ours = bound.resource.resource();
        // Tessera sends canonical identifiers, so the plain comparison settles it without
        // parsing on every request; another server's spelling is canonicalised first.
        info.audience.iter().any(|aud| {
            aud == ours.as_str() || ResourceUri::parse(aud).is_ok_and(|aud| &aud == ours)
        })
    }

    fn reject(&self, refusal: Refusal) -> Rejection {
        Rejection {
            refusal,
            realm: self.realm.clone(),
            resource_metadata: self.bound.as_ref().map(|b| b.metadata_url.clone()),
        }
    }
}

/// What a guard can say of a request before any waiting.
enum Checked {
    Decided(Result<Arc<TokenInfo>, Rejection>),
    /// The validator must be asked about this token.
    Ask(AccessToken),
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
    /// 401 `invalid_token`: unknown, expired, revoked, not an access token, or (for a guard
    /// bound to a resource) meant for another resource.
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
    /// The metadata URL of the guard's resource, named in 401 challenges.
    resource_metadata: Option<Arc<str>>,
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let realm = &self.realm;
        // Each 401 of a bound guard tells the client where to learn which authorization
        // server issues tokens for this resource (RFC 9728 §5.1). The URL went through
        // `sanitize` when the guard was bound.
        let metadata = match &self.resource_metadata {
            Some(url) => format!(", resource_metadata=\"{url}\""),
            None => String::new(),
        };
        let (status, challenge, error, description) = match &self.refusal {
            Refusal::MissingToken => (
                StatusCode::UNAUTHORIZED,
                Some(format!("Bearer realm=\"{realm}\"{metadata}")),
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
                    "Bearer realm=\"{realm}\"{metadata}, error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\""
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
    /// One reference count to move per request, rather than one per field.
    inner: Arc<(Guard, ScopeRequirement)>,
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
        let (guard, requirement) = &*self.layer.inner;
        // A cache hit is decided here, without a future around the validation.
        let token = match guard.check_now(req.headers(), requirement) {
            Checked::Decided(Ok(info)) => {
                req.extensions_mut().insert(info);
                return Box::pin(inner.call(req));
            }
            Checked::Decided(Err(rejection)) => {
                return Box::pin(std::future::ready(Ok(rejection.into_response())));
            }
            Checked::Ask(token) => token,
        };
        let layer = self.layer.inner.clone();
        Box::pin(async move {
            let (guard, requirement) = &*layer;
            let answer = guard.validator.validate(token.expose()).await;
            match guard.decide(answer, requirement) {
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
pub struct Token(pub Arc<TokenInfo>);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        match parts.extensions.get::<Arc<TokenInfo>>() {
            Some(info) => Ok(Token(info.clone())),
            None => {
                tracing::error!("Token extractor used on a route without a RequireScope layer");
                Err(StatusCode::INTERNAL_SERVER_ERROR.into_response())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validator::ValidationError;
    use async_trait::async_trait;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tessera_core::scope::Scope;
    use tower::ServiceExt;

    /// Answers from a fixed table keyed by the token; every active token grants scope `api`
    /// and differs only in its audience.
    struct Fixed;

    #[async_trait]
    impl TokenValidator for Fixed {
        async fn validate(&self, token: &str) -> Result<Option<Arc<TokenInfo>>, ValidationError> {
            let audience = match token {
                "unknown" => return Ok(None),
                "none" => Vec::new(),
                "local" => vec!["http://127.0.0.1:5001".to_owned()],
                "mcp" => vec!["https://a.example/mcp".to_owned()],
                "other" => vec!["https://b.example/".to_owned()],
                "junk-then-local" => {
                    vec!["not a uri".to_owned(), "HTTP://127.0.0.1:5001/".to_owned()]
                }
                _ => return Err(ValidationError::Other(format!("no fixture {token}"))),
            };
            Ok(Some(Arc::new(TokenInfo {
                subject: Some("alice".into()),
                username: None,
                client_id: Some("c".into()),
                scope: Scope::parse("api").unwrap(),
                expires_at: None,
                issued_at: None,
                audience,
            })))
        }
    }

    const LOCAL_METADATA: &str = "http://127.0.0.1:5001/.well-known/oauth-protected-resource";

    /// Knows `now-<fixture>` tokens at hand only (its `validate` fails for them) and asks
    /// [`Fixed`] for every other.
    struct AtHand;

    #[async_trait]
    impl TokenValidator for AtHand {
        async fn validate(&self, token: &str) -> Result<Option<Arc<TokenInfo>>, ValidationError> {
            if token.starts_with("now-") {
                return Err(ValidationError::Other(
                    "asked to wait for a token at hand".into(),
                ));
            }
            Fixed.validate(token).await
        }

        fn validate_now(&self, token: &str) -> Option<Validation> {
            let fixture = token.strip_prefix("now-")?;
            let answer = at_first_poll(Fixed.validate(fixture));
            Some(answer)
        }
    }

    /// `Fixed` never waits: its future is ready at the first poll.
    fn at_first_poll<T>(future: impl std::future::Future<Output = T>) -> T {
        let mut future = std::pin::pin!(future);
        let mut context = Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut context) {
            Poll::Ready(value) => value,
            Poll::Pending => unreachable!("Fixed does not wait"),
        }
    }

    #[tokio::test]
    async fn an_answer_at_hand_is_used_without_asking_and_decided_alike() {
        let resource =
            ProtectedResource::new("http://127.0.0.1:5001", "http://127.0.0.1:8080").unwrap();
        let guard = Guard::new(AtHand, "api").for_resource(resource);
        assert_eq!(
            check(&guard, Some("now-local")).await,
            (StatusCode::OK, None)
        );
        for token in ["now-other", "now-unknown"] {
            assert_eq!(
                check(&guard, Some(token)).await.0,
                StatusCode::UNAUTHORIZED,
                "{token}"
            );
        }
        // Not at hand: asked, as before.
        assert_eq!(check(&guard, Some("local")).await, (StatusCode::OK, None));
        assert_eq!(
            check(&guard, Some("other")).await.0,
            StatusCode::UNAUTHORIZED
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer now-local"),
        );
        let requirement = ScopeRequirement::All(vec!["api".into()]);
        assert!(guard.check(&headers, &requirement).await.is_ok());
    }

    fn bound(resource: &str) -> Guard {
        let resource = ProtectedResource::new(resource, "http://127.0.0.1:8080").unwrap();
        Guard::new(Fixed, "api").for_resource(resource)
    }

    /// The status and `WWW-Authenticate` of `GET /api` (scope `api`) with `token`, if any.
    async fn check(guard: &Guard, token: Option<&str>) -> (StatusCode, Option<String>) {
        let app: Router = Router::new().route(
            "/api",
            get(|| async { "ok" }).route_layer(guard.require("api")),
        );
        let mut request = Request::get("/api");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned());
        (response.status(), challenge)
    }

    #[tokio::test]
    async fn a_token_for_this_resource_passes_once_both_are_canonical() {
        // The audience says `http://127.0.0.1:5001`, the resource `http://127.0.0.1:5001/`.
        let guard = bound("http://127.0.0.1:5001/");
        assert_eq!(check(&guard, Some("local")).await, (StatusCode::OK, None));
        assert_eq!(
            check(&guard, Some("junk-then-local")).await,
            (StatusCode::OK, None)
        );
        let guard = bound("https://a.example/mcp");
        assert_eq!(check(&guard, Some("mcp")).await, (StatusCode::OK, None));
    }

    #[tokio::test]
    async fn a_token_for_another_resource_is_invalid_token_naming_the_metadata() {
        let guard = bound("http://127.0.0.1:5001");
        let expected = format!(
            "Bearer realm=\"api\", resource_metadata=\"{LOCAL_METADATA}\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\""
        );
        for token in ["other", "none", "mcp", "unknown"] {
            assert_eq!(
                check(&guard, Some(token)).await,
                (StatusCode::UNAUTHORIZED, Some(expected.clone())),
                "{token}"
            );
        }
        // A resource with a path is not the origin it lives on, nor the other way round.
        let guard = bound("https://a.example/");
        assert_eq!(check(&guard, Some("mcp")).await.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_missing_token_challenge_names_the_metadata() {
        let guard = bound("https://a.example/mcp");
        assert_eq!(
            check(&guard, None).await,
            (
                StatusCode::UNAUTHORIZED,
                Some(
                    "Bearer realm=\"api\", resource_metadata=\"https://a.example/.well-known/oauth-protected-resource/mcp\""
                        .to_owned()
                )
            )
        );
        // Only 401s carry it: a malformed header is the client's bug, not a discovery cue.
        let (status, challenge) = check(&guard, Some("a b")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!challenge.unwrap().contains("resource_metadata"));
    }

    #[tokio::test]
    async fn an_unbound_guard_ignores_the_audience() {
        let guard = Guard::new(Fixed, "api");
        assert!(guard.resource().is_none());
        for token in ["none", "other", "local"] {
            assert_eq!(
                check(&guard, Some(token)).await,
                (StatusCode::OK, None),
                "{token}"
            );
        }
        assert_eq!(
            check(&guard, None).await,
            (
                StatusCode::UNAUTHORIZED,
                Some("Bearer realm=\"api\"".to_owned())
            )
        );
        assert_eq!(
            check(&guard, Some("unknown")).await,
            (
                StatusCode::UNAUTHORIZED,
                Some(
                    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\""
                        .to_owned()
                )
            )
        );
    }

    #[tokio::test]
    async fn audience_is_checked_before_scope() {
        let guard = bound("https://a.example/mcp");
        let app: Router = Router::new().route(
            "/admin",
            get(|| async { "ok" }).route_layer(guard.require("admin")),
        );
        let call = |token: &'static str| {
            app.clone().oneshot(
                Request::get("/admin")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Body::empty())
                    .unwrap(),
            )
        };
        assert_eq!(call("mcp").await.unwrap().status(), StatusCode::FORBIDDEN);
        assert_eq!(
            call("other").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
