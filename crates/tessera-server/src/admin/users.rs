//! `/admin/v1/users`: people, their passwords, tokens and sessions.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_core::oidc::Profile;
use tessera_core::secret::Secret;
use tessera_flow::admin::Operator;
use tessera_flow::admin::{NewUser as NewUserRecord, ProfileChange};
use utoipa::ToSchema;

use crate::admin::api::{
    AdminJson, AdminPath, AdminQuery, Ended, FamilyPage, PageQuery, Revoked, UserPage, UserView,
};
use crate::error::{NoStoreJson, WebError};
use crate::state::AppState;

/// A user to create, as `tessera user create` does.
#[derive(Deserialize, ToSchema)]
pub struct NewUser {
    /// No whitespace or control characters.
    #[schema(min_length = 1, max_length = 64)]
    pub username: String,
    #[schema(min_length = 8)]
    pub password: String,
    #[schema(max_length = 200)]
    pub name: Option<String>,
    #[schema(max_length = 200)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
}

/// What to change of a profile; what is absent or null stays, an empty text removes it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UserUpdate {
    #[schema(max_length = 200)]
    pub name: Option<String>,
    /// A new address is unverified unless `email_verified` says otherwise.
    #[schema(max_length = 200)]
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

/// A new password.
#[derive(Deserialize, ToSchema)]
pub struct NewPassword {
    #[schema(min_length = 8)]
    pub password: String,
}

#[utoipa::path(get,
    operation_id = "list_users", path = "/admin/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, description = "A page of users", body = UserPage)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Result<Response, WebError> {
    let page = state
        .flows
        .admin(&operator)
        .list_users(&page.into())
        .await?;
    Ok(NoStoreJson(UserPage::from(page)).into_response())
}

#[utoipa::path(post,
    operation_id = "create_user", path = "/admin/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "The user", body = UserView)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminJson(new): AdminJson<NewUser>,
) -> Result<Response, WebError> {
    let record = NewUserRecord {
        username: new.username,
        password: Secret::new(new.password),
        profile: Profile {
            name: new.name.filter(|n| !n.is_empty()),
            email: new.email.filter(|e| !e.is_empty()),
            email_verified: new.email_verified,
        },
    };
    let user = state.flows.admin(&operator).create_user(record).await?;
    Ok((StatusCode::CREATED, NoStoreJson(UserView::from(user))).into_response())
}

#[utoipa::path(get,
    operation_id = "read_user", path = "/admin/v1/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    responses((status = 200, description = "The user", body = UserView)))]
pub async fn read(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
) -> Result<Response, WebError> {
    let user = state.flows.admin(&operator).user(&username).await?;
    Ok(NoStoreJson(UserView::from(user)).into_response())
}

#[utoipa::path(patch,
    operation_id = "update_user", path = "/admin/v1/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    request_body = UserUpdate,
    responses((status = 200, description = "The user as changed", body = UserView)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
    AdminJson(change): AdminJson<UserUpdate>,
) -> Result<Response, WebError> {
    let change = ProfileChange {
        name: change.name,
        email: change.email,
        email_verified: change.email_verified,
    };
    let user = state
        .flows
        .admin(&operator)
        .update_user(&username, change)
        .await?;
    Ok(NoStoreJson(UserView::from(user)).into_response())
}

#[utoipa::path(delete,
    operation_id = "delete_user", path = "/admin/v1/users/{username}", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    responses((status = 204, description = "Deleted, with their tokens and sessions")))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
) -> Result<Response, WebError> {
    state.flows.admin(&operator).delete_user(&username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(put,
    operation_id = "set_user_password", path = "/admin/v1/users/{username}/password", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    request_body = NewPassword,
    responses((status = 204, description = "Replaced; their sessions ended and tokens revoked")))]
pub async fn set_password(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
    AdminJson(new): AdminJson<NewPassword>,
) -> Result<Response, WebError> {
    let password = Secret::new(new.password);
    state
        .flows
        .admin(&operator)
        .set_password(&username, password)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get,
    operation_id = "list_user_token_families", path = "/admin/v1/users/{username}/tokens", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded"),
        PageQuery),
    responses((status = 200, description = "A page of the user's families with active tokens",
        body = FamilyPage)))]
pub async fn families(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
    AdminQuery(page): AdminQuery<PageQuery>,
) -> Result<Response, WebError> {
    let page = state
        .flows
        .admin(&operator)
        .user_families(&username, &page.into())
        .await?;
    Ok(NoStoreJson(FamilyPage::from(page)).into_response())
}

#[utoipa::path(delete,
    operation_id = "revoke_user_tokens", path = "/admin/v1/users/{username}/tokens", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    responses((status = 200, description = "Every live token of the user revoked",
        body = Revoked)))]
pub async fn revoke_tokens(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
) -> Result<Response, WebError> {
    let revoked = state
        .flows
        .admin(&operator)
        .revoke_user_tokens(&username)
        .await?;
    Ok(NoStoreJson(Revoked { revoked }).into_response())
}

#[utoipa::path(delete,
    operation_id = "end_user_sessions", path = "/admin/v1/users/{username}/sessions", tag = "users",
    params(("username" = String, Path, description = "The username, percent-encoded")),
    responses((status = 200, description = "Every sign-in session of the user ended",
        body = Ended)))]
pub async fn end_sessions(
    State(state): State<AppState>,
    Extension(operator): Extension<Operator>,
    AdminPath(username): AdminPath<String>,
) -> Result<Response, WebError> {
    let ended = state
        .flows
        .admin(&operator)
        .end_user_sessions(&username)
        .await?;
    Ok(NoStoreJson(Ended { ended }).into_response())
}
