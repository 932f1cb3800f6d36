//! `GET|POST /login`, `GET|POST /logout` and the landing page `GET /`.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::authorize::UnverifiedRequest;
use tessera_core::form::FormParams;
use tessera_core::secret::Secret;
use tessera_flow::login::SignIn;

use crate::error::{WebError, browser_error, csrf_failure};
use crate::extract::{PeerIp, form_body};
use crate::pages::{LoginPage, MessagePage, origin_of, page, security_headers};
use crate::state::AppState;

pub async fn login_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let form = LoginForm::default();
    login_form(&state, &headers, StatusCode::OK, &form)
        .await
        .unwrap_or_else(browser_error)
}

pub async fn login_post(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    login(&state, &headers, ip, req)
        .await
        .unwrap_or_else(browser_error)
}

async fn login(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<IpAddr>,
    req: Request,
) -> Result<Response, WebError> {
    let form = parse_form(req).await?;
    if !state.cookies.csrf_ok(headers, form.get("csrf_token")) {
        return Ok(csrf_failure());
    }
    let mut answer = LoginForm {
        return_to: safe_return_to(form.get("return_to")),
        username: form.get("username").unwrap_or_default(),
        error: None,
    };
    let password = Secret::new(form.get("password").unwrap_or_default());
    let presented = state.cookies.session(headers);
    let outcome = state
        .flows
        .sign_in(answer.username, password, ip, presented.as_ref())
        .await?;
    let (status, message) = match outcome {
        SignIn::SignedIn { session } => {
            let mut response_headers = security_headers(None);
            response_headers.extend(state.cookies.set_session(&session));
            if let Ok(location) = header::HeaderValue::from_str(answer.return_to) {
                response_headers.insert(header::LOCATION, location);
            }
            return Ok((StatusCode::SEE_OTHER, response_headers).into_response());
        }
        SignIn::Throttled { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-in attempts. Try again in {retry_after} seconds."),
        ),
        SignIn::Failed => (
            StatusCode::UNAUTHORIZED,
            "Invalid username or password.".into(),
        ),
    };
    answer.error = Some(&message);
    login_form(state, headers, status, &answer).await
}

async fn parse_form(req: Request) -> Result<FormParams, WebError> {
    FormParams::parse(&form_body(req).await?)
        .map_err(|e| OAuthError::invalid_request(e.to_string()).into())
}

/// Only a local path back into the authorization flow (or the landing page) is followed
/// after login, so the form cannot be turned into an open redirect.
fn safe_return_to(value: Option<&str>) -> &str {
    match value {
        Some(v) if v.starts_with("/authorize?") && !v.contains(['\r', '\n']) => v,
        _ => "/",
    }
}

/// What the login form shows again.
struct LoginForm<'a> {
    return_to: &'a str,
    username: &'a str,
    error: Option<&'a str>,
}

impl Default for LoginForm<'_> {
    fn default() -> Self {
        Self {
            return_to: "/",
            username: "",
            error: None,
        }
    }
}

async fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: &LoginForm<'_>,
) -> Result<Response, WebError> {
    let (csrf, set_cookie) = state.cookies.csrf_token(headers)?;
    // When resuming a flow, name the client again and allow the flow's final redirect.
    let query = form
        .return_to
        .strip_prefix("/authorize?")
        .unwrap_or_default();
    let (client, origin) = match UnverifiedRequest::parse(query.as_bytes()) {
        Ok(u) => match state.flows.clients.client(&u.client_id).await? {
            Some(c) => {
                let origin = u
                    .validate(&c, state.flows.settings.pkce)
                    .ok()
                    .and_then(|r| origin_of(r.redirect_uri.as_str()));
                (Some(c), origin)
            }
            None => (None, None),
        },
        Err(_) => (None, None),
    };
    let body = page(
        status,
        &LoginPage {
            client_name: client.as_ref().map(|c| c.name.as_str()),
            error: form.error,
            csrf_token: &csrf,
            return_to: form.return_to,
            username: form.username,
        },
        origin.as_deref(),
    );
    Ok((set_cookie, body).into_response())
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let session = state.cookies.session(&headers);
        let user = state.flows.session_user(session.as_ref()).await?;
        let (csrf, set_cookie) = state.cookies.csrf_token(&headers)?;
        let message = match &user {
            Some(u) => format!("You are signed in as {}.", u.username.as_str()),
            None => {
                "This is an OAuth 2.0 authorization server. Applications send you here to sign in."
                    .to_owned()
            }
        };
        let body = page(
            StatusCode::OK,
            &MessagePage {
                title: "Tessera",
                message: &message,
                is_error: false,
                logout_csrf: user.as_ref().map(|_| csrf.as_str()),
                logout_fields: &[],
            },
            None,
        );
        Ok::<_, WebError>((set_cookie, body).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}
