//! `POST /login`, `GET|POST /logout` and the landing page `GET /`.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::authorize::UnverifiedRequest;
use tessera_core::form::FormParams;
use tessera_core::secret::Secret;

use crate::browser::{csrf_ok, csrf_token, end_session, session_user, start_session};
use crate::client_auth::verify_blocking;
use crate::error::WebError;
use crate::extract::{PeerIp, form_body};
use crate::pages::{LoginPage, MessagePage, origin_of, page, security_headers};
use crate::routes::authorize::{browser_error, csrf_failure};
use crate::state::AppState;
use crate::throttle::Verdict;

pub async fn login_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    login_form(&state, &headers, StatusCode::OK, None, "/", "")
        .await
        .unwrap_or_else(browser_error)
}

pub async fn login_post(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let result = async {
        let form = FormParams::parse(&form_body(req).await?)
            .map_err(|e| tessera_core::OAuthError::invalid_request(e.to_string()))?;
        login(&state, &headers, ip, &form).await
    };
    result.await.unwrap_or_else(browser_error)
}

async fn login(
    state: &AppState,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    form: &FormParams,
) -> Result<Response, WebError> {
    let return_to = safe_return_to(form.get("return_to"));
    if !csrf_ok(state, headers, form.get("csrf_token")) {
        return Ok(csrf_failure());
    }
    let username = form.get("username").unwrap_or_default();
    let password = Secret::new(form.get("password").unwrap_or_default());
    let mut keys = vec![format!("user:{username}")];
    if let Some(ip) = ip {
        keys.push(format!("ip:{ip}"));
    }
    let now = state.now();
    match state.login_throttle.check(&keys, now) {
        Verdict::Refuse(seconds) => {
            tracing::warn!(event = "login_throttled", username, ?ip);
            let message =
                format!("Too many failed sign-in attempts. Try again in {seconds} seconds.");
            return login_form(
                state,
                headers,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&message),
                return_to,
                username,
            )
            .await;
        }
        Verdict::Slow(delay) => tokio::time::sleep(delay).await,
        Verdict::Allow => {}
    }
    let user = state.store.get_user_by_username(username).await?;
    let verified =
        verify_blocking(user.as_ref().map(|u| u.password_hash.clone()), password).await?;
    match user {
        Some(user) if verified => {
            state.login_throttle.clear(&format!("user:{username}"));
            tracing::info!(event = "login_succeeded", username, ?ip);
            let cookie = start_session(state, &user).await?;
            let mut response_headers = security_headers(None);
            response_headers.extend(cookie);
            if let Ok(location) = header::HeaderValue::from_str(return_to) {
                response_headers.insert(header::LOCATION, location);
            }
            Ok((StatusCode::SEE_OTHER, response_headers).into_response())
        }
        _ => {
            state.login_throttle.record_failure(&keys, now);
            tracing::warn!(event = "login_failed", username, ?ip);
            login_form(
                state,
                headers,
                StatusCode::UNAUTHORIZED,
                Some("Invalid username or password."),
                return_to,
                username,
            )
            .await
        }
    }
}

/// Only a local path back into the authorization flow (or the landing page) is followed
/// after login, so the form cannot be turned into an open redirect.
fn safe_return_to(value: Option<&str>) -> &str {
    match value {
        Some(v) if v.starts_with("/authorize?") && !v.contains(['\r', '\n']) => v,
        _ => "/",
    }
}

async fn login_form(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
    return_to: &str,
    username: &str,
) -> Result<Response, WebError> {
    let (csrf, set_cookie) = csrf_token(state, headers)?;
    // When resuming a flow, name the client again and allow the flow's final redirect.
    let query = return_to.strip_prefix("/authorize?").unwrap_or_default();
    let (client, origin) = match UnverifiedRequest::parse(query.as_bytes()) {
        Ok(u) => match state.client(&u.client_id).await? {
            Some(c) => {
                let origin = u
                    .validate(&c, state.config.pkce)
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
            error,
            csrf_token: &csrf,
            return_to,
            username,
        },
        origin.as_deref(),
    );
    Ok((set_cookie, body).into_response())
}

pub async fn logout_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let user = session_user(&state, &headers).await?;
        let (csrf, set_cookie) = csrf_token(&state, &headers)?;
        let body = match &user {
            Some(u) => {
                let message = format!("You are signed in as {}.", u.username.as_str());
                page(
                    StatusCode::OK,
                    &MessagePage {
                        title: "Sign out",
                        message: &message,
                        is_error: false,
                        logout_csrf: Some(&csrf),
                    },
                    None,
                )
            }
            None => signed_out_page(),
        };
        Ok::<_, WebError>((set_cookie, body).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}

pub async fn logout_post(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let result = async {
        let form = FormParams::parse(&form_body(req).await?)
            .map_err(|e| tessera_core::OAuthError::invalid_request(e.to_string()))?;
        if !csrf_ok(&state, &headers, form.get("csrf_token")) {
            return Ok(csrf_failure());
        }
        if let Some(user) = session_user(&state, &headers).await? {
            tracing::info!(event = "logout", username = user.username.as_str());
        }
        let cleared = end_session(&state, &headers).await?;
        Ok::<_, WebError>((cleared, signed_out_page()).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}

fn signed_out_page() -> Response {
    page(
        StatusCode::OK,
        &MessagePage {
            title: "Signed out",
            message: "You are signed out of Tessera.",
            is_error: false,
            logout_csrf: None,
        },
        None,
    )
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let user = session_user(&state, &headers).await?;
        let (csrf, set_cookie) = csrf_token(&state, &headers)?;
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
            },
            None,
        );
        Ok::<_, WebError>((set_cookie, body).into_response())
    };
    result.await.unwrap_or_else(browser_error)
}
