//! The admin API (issue 28): JSON over HTTP on a listener of its own (`--admin-listen`), for
//! operators to manage clients, resources, users and their tokens without the database, and
//! to read the audit trail, where each change is recorded as done by `admin:<token id>`.
//!
//! Every route but the document requires a live admin token (`tessera admin-token create`),
//! as `Authorization: Bearer tsm_...`; a missing, unknown, expired or revoked one is a 401
//! with `WWW-Authenticate: Bearer`. Handlers extract, call one `tessera_flow::admin`
//! operation and map the result, as the OAuth routes do; every error is an RFC 9457 problem
//! (`application/problem+json`), and every answer is `Cache-Control: no-store`.
//!
//! The OpenAPI 3.1 document at `GET /openapi.json` (no token needed: it holds no data) is
//! generated from the handlers' `#[utoipa::path]` annotations and the types' `ToSchema`
//! derives; [`ApiDoc`] adds the bearer scheme and the problems every operation may answer.
//!
//! Layout: `api` (extractors, the admin-token check, the answers' shapes); `clients`,
//! `resources`, `users`, `audit` (the handlers).

mod api;
mod audit;
mod clients;
mod resources;
mod users;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{PROBLEM_JSON, Problem, WebError, problem};
use crate::observe::RouteNames;
use crate::state::AppState;

/// The largest request body the admin API reads; past it, 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Where the OpenAPI document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";

/// The route templates the admin listener's log lines name: the API, the document, else.
const ROUTES: [&str; 3] = ["/admin/v1", DOCUMENT_PATH, "other"];

fn route_of(path: &str) -> usize {
    if path == DOCUMENT_PATH {
        1
    } else if path.starts_with("/admin/v1/") {
        0
    } else {
        2
    }
}

/// The document's fixed parts; the operations come from the handlers, and [`Modify`] adds
/// the bearer scheme and the problems every operation may answer once they are in.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera admin API",
        description = "Manage clients, resource servers, users and their tokens. Every \
            operation needs an admin token from `tessera admin-token create`. Lists are pages: \
            `limit` (1 to 200, default 50) and the `after` cursor of the page before; an \
            answer's `next` is null on the last page. Errors are RFC 9457 problem details."
    ),
    components(schemas(Problem)),
    security(("admin_token" = []))
)]
pub struct ApiDoc;

/// The problems an operation may answer besides its own success.
const PROBLEMS: [(&str, &str); 7] = [
    ("400", "The path, query or body could not be read"),
    ("401", "No admin token, or one unknown, expired or revoked"),
    ("404", "No such record"),
    (
        "409",
        "The name or identifier is taken, or the record cannot change that way",
    ),
    ("413", "The body is too large"),
    ("415", "The body is not JSON"),
    (
        "422",
        "The request breaks a rule (a redirect URI, a short password, a limit)",
    ),
];

impl Modify for ApiDoc {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An admin token (`tsm_...`)"))
                    .build(),
            ),
        );
        let schema = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(Problem::name()));
        let unavailable = ResponseBuilder::new()
            .description("The database or the password hashing is busy; retry after a second")
            .content(PROBLEM_JSON, Content::new(Some(schema.clone())))
            .build();
        for item in doc.paths.paths.values_mut() {
            for operation in item_operations(item) {
                let responses = &mut operation.responses.responses;
                for (status, description) in PROBLEMS {
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(description)
                                .content(PROBLEM_JSON, Content::new(Some(schema.clone())))
                                .build(),
                        )
                    });
                }
                responses
                    .entry("503".to_owned())
                    .or_insert_with(|| RefOr::T(unavailable.clone()));
            }
        }
    }
}

fn item_operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The admin routes and the document describing them.
fn router(state: AppState) -> Router {
    let (api, document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(clients::list, clients::create))
        .routes(routes!(clients::read, clients::update, clients::delete))
        .routes(routes!(clients::families, clients::revoke_tokens))
        .routes(routes!(resources::list, resources::create))
        .routes(routes!(
            resources::read,
            resources::update,
            resources::delete
        ))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::read, users::update, users::delete))
        .routes(routes!(users::set_password))
        .routes(routes!(users::families, users::revoke_tokens))
        .routes(routes!(users::end_sessions))
        .routes(routes!(audit::list))
        .split_for_parts();
    let mut document = document;
    // After the routes are in: the problems are added to every operation.
    ApiDoc.modify(&mut document);
    let document = match serde_json::to_vec(&document) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "the admin API's document does not encode");
            Vec::new()
        }
    };
    api.route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        api::require_admin,
    ))
    .route(
        DOCUMENT_PATH,
        get(move || {
            let document = document.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document,
                )
            }
        }),
    )
    .fallback(not_found)
    .method_not_allowed_fallback(method_not_allowed)
    .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    .with_state(state)
}

/// The admin API's service, inside the layers every admin request passes through: the
/// request id and log line, a timeout, and a panic as a bare 500 problem.
pub fn app(
    state: AppState,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send + Unpin>
+ Clone
+ Send
+ Sync
+ 'static {
    let names = RouteNames {
        templates: &ROUTES,
        index_of: route_of,
    };
    let hsts = state.issuer().starts_with("https://");
    ServiceBuilder::new()
        .layer(axum::middleware::from_fn(
            move |request: Request, next: axum::middleware::Next| {
                crate::observe::observe(request, next, hsts, names, None)
            },
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }))
        .service(router(state))
}

/// A method the path does not take: 405 (axum adds `Allow`), as a problem.
async fn method_not_allowed() -> Response {
    WebError::AdminRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        detail: "this path does not take that method".into(),
    }
    .into_response()
}

async fn not_found() -> Response {
    WebError::AdminRequest {
        status: StatusCode::NOT_FOUND,
        detail: "no such path".into(),
    }
    .into_response()
}
