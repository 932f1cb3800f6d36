//! `/logout`: signing out of Tessera, and RP-initiated logout (OpenID Connect RP-Initiated
//! Logout 1.0) as the `end_session_endpoint`. A signed-in person always confirms with a
//! CSRF-protected POST, so a link on another site cannot sign anyone out.

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::form::FormParams;
use tessera_flow::oidc::LogoutCheck;

use crate::error::{WebError, browser_error, csrf_failure};
use crate::extract::form_body;
use crate::pages::{MessagePage, error_page, origin_of, page};
use crate::state::AppState;

pub async fn logout_get(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let params = FormParams::parse(query.unwrap_or_default().as_bytes())
            .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        let (redirect, fields) = match state.flows.check_logout(&params).await? {
            LogoutCheck::Valid { redirect, fields } => (redirect, fields),
            LogoutCheck::Refused(why) => return Ok(refused(&why)),
        };
        let session = state.cookies.session(&headers);
        let Some(user) = state.flows.session_user(session.as_ref()).await? else {
            // Nobody to sign out: straight back to the client, or the signed-out page.
            return Ok(done(redirect));
        };
        let (csrf, set_cookie) = state.cookies.csrf_token(&headers)?;
        let message = format!(
            "You are signed in as {}. Sign out of Tessera?",
            user.username.as_str()
        );
        let origin = redirect.as_deref().and_then(origin_of);
        let body = page(
            StatusCode::OK,
            &MessagePage {
                title: "Sign out",
                message: &message,
                is_error: false,
                logout_csrf: Some(&csrf),
                logout_fields: &fields,
            },
            origin.as_deref(),
        );
        Ok::<_, WebError>((set_cookie, body).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}

pub async fn logout_post(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let result = async {
        let form = FormParams::parse(&form_body(req).await?)
            .map_err(|e| OAuthError::invalid_request(e.to_string()))?;
        if !state.cookies.csrf_ok(&headers, form.get("csrf_token")) {
            return Ok(csrf_failure());
        }
        let redirect = match state.flows.check_logout(&form).await? {
            LogoutCheck::Valid { redirect, .. } => redirect,
            LogoutCheck::Refused(why) => return Ok(refused(&why)),
        };
        let session = state.cookies.session(&headers);
        state.flows.sign_out(session.as_ref()).await?;
        let cleared = state.cookies.clear_session();
        Ok::<_, WebError>((cleared, done(redirect)).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}

fn refused(why: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Sign-out request refused", why)
}

/// The registered post-logout URI (a 303), or the signed-out page.
fn done(redirect: Option<String>) -> Response {
    match redirect.and_then(|r| HeaderValue::try_from(r).ok()) {
        Some(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        None => page(
            StatusCode::OK,
            &MessagePage {
                title: "Signed out",
                message: "You are signed out of Tessera.",
                is_error: false,
                logout_csrf: None,
                logout_fields: &[],
            },
            None,
        ),
    }
}
