//! [`WebError`]: the single mapping from failures to HTTP answers.
//!
//! OAuth errors become RFC 6749 §5.2 JSON with `Cache-Control: no-store`; store outages
//! become 503 `temporarily_unavailable` (never a guess such as `active: false`); anything
//! unexpected becomes a 500 whose body says nothing about internals, logged here once.
//! Browser-facing endpoints answer the same failures with an HTML page instead
//! ([`browser_error`]); the admin API answers RFC 9457 problem details ([`problem`]).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_core::OAuthError;
use tessera_flow::FlowError;
use tessera_flow::admin::AdminError;
use tessera_store::StoreError;

use crate::pages::error_page;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Too many failed attempts from this caller: 429 with `Retry-After`.
    #[error("throttled for {retry_after} s")]
    Throttled { retry_after: i64 },
    #[error("internal error: {0}")]
    Internal(String),
    /// A request to a bearer-protected endpoint without any token: 401 with a bare challenge,
    /// no error code (RFC 6750 §3.1).
    #[error("a bearer token is required")]
    BearerRequired,
    /// An admin API failure: an RFC 9457 problem ([`problem`]).
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// An admin API request that could not be read (bad JSON, a wrong content type, a body
    /// too large, a bad path or query): an RFC 9457 problem with this status.
    #[error("{detail}")]
    AdminRequest { status: StatusCode, detail: String },
}

impl WebError {
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self::Internal(what.to_string())
    }
}

impl From<FlowError> for WebError {
    fn from(e: FlowError) -> Self {
        match e {
            FlowError::OAuth(e) => Self::OAuth(e),
            FlowError::Store(e) => Self::Store(e),
            FlowError::Throttled { retry_after } => Self::Throttled { retry_after },
            // The hashing queue is full: a moment's wait, as for a database outage.
            FlowError::Busy(_) => Self::OAuth(OAuthError::TemporarilyUnavailable),
            FlowError::Internal(e) => Self::Internal(e),
        }
    }
}

/// 429 with `Retry-After`. The body uses `temporarily_unavailable`, the RFC 6749 code for
/// "try again later"; the status says why.
fn throttled(retry_after: i64) -> Response {
    let e = OAuthError::TemporarilyUnavailable;
    let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, &e);
    if let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// A browser-facing failure: a page, not JSON.
pub fn browser_error(e: impl Into<WebError>) -> Response {
    match e.into() {
        WebError::PayloadTooLarge => error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form is too large.",
        ),
        WebError::OAuth(OAuthError::TemporarilyUnavailable) => {
            let mut page = error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The server is busy right now. Please try again in a moment.",
            );
            page.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            page
        }
        WebError::OAuth(e) => {
            error_page(StatusCode::BAD_REQUEST, "Invalid request", e.description())
        }
        WebError::Store(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "database unavailable");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Temporarily unavailable",
                "The server cannot reach its database right now. Please try again in a moment.",
            )
        }
        other => {
            tracing::error!(error = %other, "browser request failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server met an internal error. Please try again.",
            )
        }
    }
}

/// A form whose CSRF token does not belong to the browser that sent it.
pub fn csrf_failure() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form expired or was sent from another site. Go back, reload the page and try again.",
    )
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    error_description: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let oauth = match self {
            WebError::OAuth(e) => e,
            WebError::PayloadTooLarge => {
                let e = OAuthError::invalid_request("the request body is too large");
                return json_error(StatusCode::PAYLOAD_TOO_LARGE, &e);
            }
            // The client was deleted between its authentication and the write.
            WebError::Store(StoreError::MissingReference) => OAuthError::invalid_client(false),
            WebError::Store(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "database unavailable");
                OAuthError::TemporarilyUnavailable
            }
            WebError::Store(e) => {
                tracing::error!(error = %e, "store error");
                OAuthError::ServerError
            }
            WebError::Throttled { retry_after } => return throttled(retry_after),
            WebError::BearerRequired => return bearer_required(),
            WebError::Admin(e) => return admin_problem(e),
            WebError::AdminRequest { status, detail } => return problem(status, &detail),
            WebError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                OAuthError::ServerError
            }
        };
        json_error(status_of(&oauth), &oauth)
    }
}

/// The media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem detail, the body of every admin API error.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem; `about:blank`: the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, for people.
    pub detail: String,
}

/// An RFC 9457 answer: `application/problem+json`, never cached.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    let body = Problem {
        kind: "about:blank".into(),
        title: status.canonical_reason().unwrap_or("Error").into(),
        status: status.as_u16(),
        detail: detail.into(),
    };
    let mut response = (status, NoStoreJson(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// An admin failure as a problem: internals are logged here and never sent.
fn admin_problem(e: AdminError) -> Response {
    let (status, detail) = match &e {
        AdminError::Unauthorized => (StatusCode::UNAUTHORIZED, e.to_string()),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, e.to_string()),
        AdminError::Conflict(_) => (StatusCode::CONFLICT, e.to_string()),
        AdminError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        AdminError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        AdminError::Store(e) if e.is_unavailable() => {
            tracing::warn!(error = %e, "database unavailable");
            let detail = "the database is unavailable; retry shortly";
            (StatusCode::SERVICE_UNAVAILABLE, detail.to_owned())
        }
        AdminError::Store(e) => {
            tracing::error!(error = %e, "store error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            )
        }
        AdminError::Internal(e) => {
            tracing::error!(error = %e, "internal error");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error".to_owned(),
            )
        }
    };
    let mut response = problem(status, &detail);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tessera-admin\""),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

fn bearer_required() -> Response {
    let body = serde_json::json!({"error_description": "a bearer token is required"});
    let mut response = (StatusCode::UNAUTHORIZED, NoStoreJson(body)).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tessera\""),
    );
    response
}

/// The HTTP status each OAuth error code is sent with.
pub fn status_of(e: &OAuthError) -> StatusCode {
    match e {
        OAuthError::InvalidClient { .. } | OAuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
        OAuthError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn json_error(status: StatusCode, e: &OAuthError) -> Response {
    let body = ErrorBody {
        error: e.code(),
        error_description: e.description(),
    };
    let mut response = (status, NoStoreJson(body)).into_response();
    if matches!(e, OAuthError::InvalidClient { basic: true, .. }) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"tessera\", charset=\"UTF-8\""),
        );
    }
    if matches!(e, OAuthError::InvalidToken(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tessera\", error=\"invalid_token\""),
        );
    }
    if matches!(e, OAuthError::InsufficientScope(_)) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tessera\", error=\"insufficient_scope\""),
        );
    }
    if matches!(e, OAuthError::TemporarilyUnavailable) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// A JSON answer with [`no_store`]'s headers, in one allocation: `axum::Json` starts from
/// 128 bytes and grows, and a token response is larger than that.
pub struct NoStoreJson<T>(pub T);

/// Room for the largest common answer (a token response with a refresh token and a scope).
const JSON_CAPACITY: usize = 512;

impl<T: Serialize> IntoResponse for NoStoreJson<T> {
    fn into_response(self) -> Response {
        let mut body = Vec::with_capacity(JSON_CAPACITY);
        if let Err(e) = serde_json::to_writer(&mut body, &self.0) {
            return WebError::internal(format!("encoding a JSON answer: {e}")).into_response();
        }
        let mut response = Response::new(Body::from(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in no_store() {
            headers.insert(name, value);
        }
        response
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache`, required on responses carrying tokens
/// (RFC 6749 §5.1) and sensible on every OAuth JSON answer.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}
