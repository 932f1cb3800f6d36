//! `GET|POST /authorize` (RFC 6749 §4.1.1): the pages and redirects of the authorization flow.
//!
//! A POST carrying `decision` is the consent form; any other POST is an authorization
//! request sent as a form (RFC 6749 §3.1). The flow decides the step; this module shows it.

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::authorize::AuthorizationRequest;
use tessera_core::client::Client;
use tessera_core::form::{self, FormParams};
use tessera_core::user::User;
use tessera_flow::authorize::{AuthorizeStep, request_fields};

use crate::error::{WebError, browser_error, csrf_failure};
use crate::extract::form_body;
use crate::pages::{ConsentPage, LoginPage, error_page, origin_of, page, security_headers};
use crate::state::AppState;

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    let session = state.cookies.session(&headers);
    match state
        .flows
        .authorize(raw.as_bytes(), session.as_ref())
        .await
    {
        Ok(step) => show(&state, &headers, step, StatusCode::FOUND),
        Err(e) => browser_error(e),
    }
}

pub async fn authorize_post(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let body = match form_body(req).await {
        Ok(body) => body,
        Err(e) => return browser_error(e),
    };
    let session = state.cookies.session(&headers);
    let step = match consent_answer(&body) {
        Some((decision, csrf)) => {
            if !state.cookies.csrf_ok(&headers, csrf.as_deref()) {
                return csrf_failure();
            }
            state.flows.decide(&body, session.as_ref(), &decision).await
        }
        None => state.flows.authorize(&body, session.as_ref()).await,
    };
    match step {
        Ok(step) => show(&state, &headers, step, StatusCode::SEE_OTHER),
        Err(e) => browser_error(e),
    }
}

/// The consent form's `decision` and `csrf_token`, if the body is a consent form.
fn consent_answer(body: &[u8]) -> Option<(String, Option<String>)> {
    let params = FormParams::from_decoded(form::pairs(body).ok()?).ok()?;
    let decision = params.get("decision")?.to_owned();
    Some((decision, params.get("csrf_token").map(str::to_owned)))
}

/// The answer for a step of the flow; `status` is that of a redirect (302 after a GET, 303
/// after a POST).
fn show(
    state: &AppState,
    headers: &HeaderMap,
    step: AuthorizeStep,
    status: StatusCode,
) -> Response {
    let shown = match step {
        AuthorizeStep::Refused { title, message } => {
            Ok(error_page(StatusCode::BAD_REQUEST, title, &message))
        }
        AuthorizeStep::Redirect(location) => Ok(redirect(status, &location)),
        AuthorizeStep::SignIn {
            client,
            request,
            return_to,
        } => login_page(state, headers, &client, &request, &return_to),
        AuthorizeStep::Consent {
            client,
            request,
            user,
        } => consent_page(state, headers, &client, &request, &user),
    };
    shown.unwrap_or_else(browser_error)
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    request: &AuthorizationRequest,
    return_to: &str,
) -> Result<Response, WebError> {
    let (csrf, set_cookie) = state.cookies.csrf_token(headers)?;
    let origin = origin_of(request.redirect_uri.as_str());
    let body = page(
        StatusCode::OK,
        &LoginPage {
            client_name: Some(&client.name),
            error: None,
            csrf_token: &csrf,
            return_to,
            username: "",
        },
        origin.as_deref(),
    );
    Ok((set_cookie, body).into_response())
}

fn consent_page(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    request: &AuthorizationRequest,
    user: &User,
) -> Result<Response, WebError> {
    let (csrf, set_cookie) = state.cookies.csrf_token(headers)?;
    let fields = request_fields(client, request);
    let origin = origin_of(request.redirect_uri.as_str());
    let host = url::Url::parse(request.redirect_uri.as_str())
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_owned();
            Some(match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_else(|| request.redirect_uri.as_str().to_owned());
    let body = page(
        StatusCode::OK,
        &ConsentPage {
            client_name: &client.name,
            unverified: client.self_registered,
            username: user.username.as_str(),
            scopes: request.scope.iter().collect(),
            csrf_token: &csrf,
            fields: fields.iter().map(|(k, v)| (*k, v.as_ref())).collect(),
            redirect_host: &host,
        },
        origin.as_deref(),
    );
    Ok((set_cookie, body).into_response())
}

fn redirect(status: StatusCode, location: &str) -> Response {
    let mut headers = security_headers(None);
    match header::HeaderValue::from_str(location) {
        Ok(v) => {
            headers.insert(header::LOCATION, v);
            (status, headers).into_response()
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid redirect",
            "The redirect URI cannot be used in an HTTP header.",
        ),
    }
}
