//! `/admin/v1/resources`: resource servers (RFC 8707), named in paths by their identifier,
//! percent-encoded (`https%3A%2F%2Fapi.example%2F`).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_flow::admin::Operator;
use tessera_flow::admin::ResourceChange;
use utoipa::ToSchema;

use crate::admin::api::{AdminJson, AdminPath, AdminQuery, PageQuery, ResourcePage, ResourceView};
use crate::error::{NoStoreJson, WebError};
use crate::state::AppState;

/// A resource server to register, as `tessera resource create` does.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewResource {
    /// Its identifier: an absolute URI without a fragment, as clients send it in `resource`.
    #[schema(max_length = 2048, format = "uri")]
    pub resource: String,
    /// A name for people; the identifier by default.
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// The scopes it defines, space-separated.
    #[serde(default)]
    pub scope: String,
}

/// What to change of a resource server; what is absent or null stays.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResourceUpdate {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    pub scope: Option<String>,
}

#[utoipa::path(get,
    operation_id = "list_resources", path = "/admin/v1/resources", tag = "resources", params(PageQuery),
    responses((status = 200, description = "A page of resource servers", body = ResourcePage)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Result<Response, WebError> {
    let page = state
        .flows
        .admin(&operator)
        .list_resources(&page.into())
        .await?;
    Ok(NoStoreJson(ResourcePage::from(page)).into_response())
}

#[utoipa::path(post,
    operation_id = "create_resource", path = "/admin/v1/resources", tag = "resources",
    request_body = NewResource,
    responses((status = 201, description = "The resource server, with its client's secret \
        (shown once)", body = ResourceView)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminJson(new): AdminJson<NewResource>,
) -> Result<Response, WebError> {
    let (resource, secret) = state
        .flows
        .admin(&operator)
        .create_resource(&new.resource, new.name.as_deref(), &new.scope)
        .await?;
    let mut view = ResourceView::from(resource);
    view.client_secret = Some(secret.expose().to_owned());
    Ok((StatusCode::CREATED, NoStoreJson(view)).into_response())
}

#[utoipa::path(get,
    operation_id = "read_resource", path = "/admin/v1/resources/{resource}", tag = "resources",
    params(("resource" = String, Path, description = "The identifier, percent-encoded")),
    responses((status = 200, description = "The resource server", body = ResourceView)))]
pub async fn read(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(uri): AdminPath<String>,
) -> Result<Response, WebError> {
    let resource = state.flows.admin(&operator).resource(&uri).await?;
    Ok(NoStoreJson(ResourceView::from(resource)).into_response())
}

#[utoipa::path(patch,
    operation_id = "update_resource", path = "/admin/v1/resources/{resource}", tag = "resources",
    params(("resource" = String, Path, description = "The identifier, percent-encoded")),
    request_body = ResourceUpdate,
    responses((status = 200, description = "The resource server as changed",
        body = ResourceView)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(uri): AdminPath<String>,
    AdminJson(change): AdminJson<ResourceUpdate>,
) -> Result<Response, WebError> {
    let change = ResourceChange {
        name: change.name,
        scope: change.scope,
    };
    let resource = state
        .flows
        .admin(&operator)
        .update_resource(&uri, change)
        .await?;
    Ok(NoStoreJson(ResourceView::from(resource)).into_response())
}

#[utoipa::path(delete,
    operation_id = "delete_resource", path = "/admin/v1/resources/{resource}", tag = "resources",
    params(("resource" = String, Path, description = "The identifier, percent-encoded")),
    responses((status = 204, description = "Deleted, with its client")))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(uri): AdminPath<String>,
) -> Result<Response, WebError> {
    state.flows.admin(&operator).delete_resource(&uri).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
