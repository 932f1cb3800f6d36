//! `/admin/v1/clients`: registered clients and their tokens.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_core::client::ClientRegistration;
use tessera_flow::admin::ClientChange;
use tessera_flow::admin::Operator;
use utoipa::ToSchema;

use crate::admin::api::{
    AdminJson, AdminPath, AdminQuery, ClientPage, ClientView, FamilyPage, PageQuery, Revoked,
    SigningAlg,
};
use crate::error::{NoStoreJson, WebError};
use crate::state::AppState;

/// A client to register, under the rules of `tessera client create`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewClient {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// A public client: no secret; authorization code with PKCE only.
    #[serde(default)]
    pub public: bool,
    /// Matched exactly; https, http on loopback, or a private-use scheme.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Default: client_credentials for a confidential client without redirect URIs, else
    /// authorization_code and refresh_token.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// The scopes it may request, space-separated.
    #[serde(default)]
    pub scope: String,
    /// A first-party client: users are not asked for consent.
    #[serde(default)]
    pub skip_consent: bool,
    /// Accept http redirect URIs on hosts other than loopback (test environments only).
    #[serde(default)]
    pub allow_insecure_redirect_uri: bool,
    /// Where it may send people after they sign out; the redirect URI rules apply.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// The algorithm of its ID tokens; absent: ES256.
    pub id_token_signed_response_alg: Option<SigningAlg>,
}

/// What to change of a client; what is absent or null stays.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ClientUpdate {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub skip_consent: Option<bool>,
    #[serde(default)]
    pub allow_insecure_redirect_uri: bool,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<SigningAlg>,
}

#[utoipa::path(get,
    operation_id = "list_clients", path = "/admin/v1/clients", tag = "clients", params(PageQuery),
    responses((status = 200, description = "A page of clients", body = ClientPage)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Result<Response, WebError> {
    let page = state
        .flows
        .admin(&operator)
        .list_clients(&page.into())
        .await?;
    Ok(NoStoreJson(ClientPage::from(page)).into_response())
}

#[utoipa::path(post,
    operation_id = "create_client", path = "/admin/v1/clients", tag = "clients", request_body = NewClient,
    responses((status = 201, description = "The client, with its secret (shown once)",
        body = ClientView)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminJson(new): AdminJson<NewClient>,
) -> Result<Response, WebError> {
    let registration = ClientRegistration {
        name: new.name,
        public: new.public,
        redirect_uris: new.redirect_uris,
        grant_types: new.grant_types,
        scope: new.scope,
        skip_consent: new.skip_consent,
        allow_insecure_http: new.allow_insecure_redirect_uri,
    };
    let admin = state.flows.admin(&operator);
    let (client, secret, oidc) = admin
        .create_client(
            &registration,
            &new.post_logout_redirect_uris,
            new.id_token_signed_response_alg.map(SigningAlg::as_str),
        )
        .await?;
    let mut view = ClientView::from(client);
    view.client_secret = secret.map(|s| s.expose().to_owned());
    view.oidc = Some(oidc.into());
    Ok((StatusCode::CREATED, NoStoreJson(view)).into_response())
}

#[utoipa::path(get,
    operation_id = "read_client", path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "The client", body = ClientView)))]
pub async fn read(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(client_id): AdminPath<String>,
) -> Result<Response, WebError> {
    let admin = state.flows.admin(&operator);
    let client = admin.client(&client_id).await?;
    let mut view = ClientView::from(client);
    view.oidc = Some(admin.client_oidc(&client_id).await?.into());
    Ok(NoStoreJson(view).into_response())
}

#[utoipa::path(patch,
    operation_id = "update_client", path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id")),
    request_body = ClientUpdate,
    responses((status = 200, description = "The client as changed", body = ClientView)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(client_id): AdminPath<String>,
    AdminJson(change): AdminJson<ClientUpdate>,
) -> Result<Response, WebError> {
    let change = ClientChange {
        name: change.name,
        redirect_uris: change.redirect_uris,
        grant_types: change.grant_types,
        scope: change.scope,
        skip_consent: change.skip_consent,
        allow_insecure_redirect_uri: change.allow_insecure_redirect_uri,
        post_logout_redirect_uris: change.post_logout_redirect_uris,
        id_token_signed_response_alg: change
            .id_token_signed_response_alg
            .map(|alg| alg.as_str().to_owned()),
    };
    let (client, oidc) = state
        .flows
        .admin(&operator)
        .update_client(&client_id, change)
        .await?;
    let mut view = ClientView::from(client);
    view.oidc = Some(oidc.into());
    Ok(NoStoreJson(view).into_response())
}

#[utoipa::path(delete,
    operation_id = "delete_client", path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id")),
    responses((status = 204, description = "Deleted, with its tokens")))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(client_id): AdminPath<String>,
) -> Result<Response, WebError> {
    state
        .flows
        .admin(&operator)
        .delete_client(&client_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get,
    operation_id = "list_client_token_families", path = "/admin/v1/clients/{client_id}/tokens", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id"), PageQuery),
    responses((status = 200, description = "A page of the client's families with active \
        tokens (client_credentials tokens have none)", body = FamilyPage)))]
pub async fn families(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(client_id): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Result<Response, WebError> {
    let page = state
        .flows
        .admin(&operator)
        .client_families(&client_id, &page.into())
        .await?;
    Ok(NoStoreJson(FamilyPage::from(page)).into_response())
}

#[utoipa::path(delete,
    operation_id = "revoke_client_tokens", path = "/admin/v1/clients/{client_id}/tokens", tag = "clients",
    params(("client_id" = String, Path, description = "The client's id")),
    responses((status = 200, description = "Every live token of the client revoked",
        body = Revoked)))]
pub async fn revoke_tokens(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(client_id): AdminPath<String>,
) -> Result<Response, WebError> {
    let revoked = state
        .flows
        .admin(&operator)
        .revoke_client_tokens(&client_id)
        .await?;
    Ok(NoStoreJson(Revoked { revoked }).into_response())
}
