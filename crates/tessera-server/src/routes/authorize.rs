//! `GET|POST /authorize` (RFC 6749 §4.1.1): validate, sign in, ask consent, issue a code.
//!
//! A POST carrying `decision` is the consent form; any other POST is an authorization
//! request sent as a form (RFC 6749 §3.1). Every step re-validates the whole request, so the
//! consent form's hidden fields are worth no more than a new authorization request.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_core::OAuthError;
use tessera_core::authorize::{
    AuthorizationRequest, AuthorizeError, UnverifiedRequest, error_redirect, needs_consent,
    redirect_with,
};
use tessera_core::client::Client;
use tessera_core::form::{self, FormParams};
use tessera_core::grant::{AuthorizationCodeRecord, CODE_LIFETIME};
use tessera_core::token::{RawToken, TokenKind, new_family_id};
use tessera_core::user::User;

use crate::browser::{csrf_ok, csrf_token, session_user};
use crate::error::WebError;
use crate::extract::form_body;
use crate::pages::{ConsentPage, LoginPage, error_page, origin_of, page, security_headers};
use crate::state::AppState;

pub async fn authorize_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let raw = query.unwrap_or_default();
    authorization(&state, &headers, raw.as_bytes(), StatusCode::FOUND)
        .await
        .unwrap_or_else(browser_error)
}

pub async fn authorize_post(State(state): State<AppState>, req: Request) -> Response {
    let headers = req.headers().clone();
    let body = match form_body(req).await {
        Ok(body) => body,
        Err(e) => return browser_error(e),
    };
    let decision = form::pairs(&body).ok().and_then(|pairs| {
        FormParams::from_decoded(pairs).ok().map(|p| {
            (
                p.get("decision").map(str::to_owned),
                p.get("csrf_token").map(str::to_owned),
            )
        })
    });
    let result = match decision {
        Some((Some(decision), csrf)) => {
            consent(&state, &headers, &body, &decision, csrf.as_deref()).await
        }
        _ => authorization(&state, &headers, &body, StatusCode::SEE_OTHER).await,
    };
    result.unwrap_or_else(browser_error)
}

/// A request validated against its client, or the response that ends it here.
async fn validated(
    state: &AppState,
    raw: &[u8],
    status: StatusCode,
) -> Result<Result<(Arc<Client>, AuthorizationRequest), Response>, WebError> {
    let unverified = match UnverifiedRequest::parse(raw) {
        Ok(u) => u,
        Err(e) => return Ok(Err(refusal(state, e, status))),
    };
    let Some(client) = state.client(&unverified.client_id).await? else {
        return Ok(Err(error_page(
            StatusCode::BAD_REQUEST,
            "Unknown application",
            "The application that sent you here is not registered with this server.",
        )));
    };
    Ok(match unverified.validate(&client, state.config.pkce) {
        Ok(request) => Ok((client, request)),
        Err(e) => Err(refusal(state, e, status)),
    })
}

async fn authorization(
    state: &AppState,
    headers: &HeaderMap,
    raw: &[u8],
    status: StatusCode,
) -> Result<Response, WebError> {
    let (client, request) = match validated(state, raw, status).await? {
        Ok(v) => v,
        Err(response) => return Ok(response),
    };
    let Some(user) = session_user(state, headers).await? else {
        let return_to = format!("/authorize?{}", String::from_utf8_lossy(raw));
        return login_page(state, headers, &client, &request, &return_to);
    };
    let granted = state.store.get_consent(&user.id, &client.id).await?;
    if needs_consent(&client, &request.scope, granted.as_ref()) {
        return consent_page(state, headers, &client, &request, &user);
    }
    issue_code(state, &client, &request, &user, status).await
}

async fn consent(
    state: &AppState,
    headers: &HeaderMap,
    raw: &[u8],
    decision: &str,
    csrf: Option<&str>,
) -> Result<Response, WebError> {
    if !csrf_ok(state, headers, csrf) {
        return Ok(csrf_failure());
    }
    let (client, request) = match validated(state, raw, StatusCode::SEE_OTHER).await? {
        Ok(v) => v,
        Err(response) => return Ok(response),
    };
    let Some(user) = session_user(state, headers).await? else {
        let query = request_query(&client, &request);
        return login_page(
            state,
            headers,
            &client,
            &request,
            &format!("/authorize?{query}"),
        );
    };
    match decision {
        "approve" => {
            let previous = state.store.get_consent(&user.id, &client.id).await?;
            let scope = match previous {
                Some(p) => p.union(&request.scope),
                None => request.scope.clone(),
            };
            state
                .store
                .put_consent(&user.id, &client.id, &scope, state.now())
                .await?;
            tracing::info!(event = "consent_granted", user = %user.username.as_str(), client_id = %client.id, scope = %request.scope);
            issue_code(state, &client, &request, &user, StatusCode::SEE_OTHER).await
        }
        "deny" => {
            tracing::info!(event = "consent_denied", user = %user.username.as_str(), client_id = %client.id);
            let error = OAuthError::AccessDenied("the user denied the request".into());
            Ok(redirect(
                StatusCode::SEE_OTHER,
                &error_redirect(
                    &request.redirect_uri,
                    &error,
                    request.state.as_deref(),
                    &state.issuer,
                ),
            ))
        }
        _ => Ok(error_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The form's decision must be approve or deny.",
        )),
    }
}

async fn issue_code(
    state: &AppState,
    client: &Client,
    request: &AuthorizationRequest,
    user: &User,
    status: StatusCode,
) -> Result<Response, WebError> {
    let now = state.now();
    let code = RawToken::generate(TokenKind::AuthorizationCode).map_err(WebError::internal)?;
    state
        .store
        .insert_code(&AuthorizationCodeRecord {
            hash: code.hash(),
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect_uri.as_str().to_owned(),
            redirect_uri_given: request.redirect_uri_given,
            scope: request.scope.clone(),
            code_challenge: request
                .code_challenge
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            issued_at: now,
            expires_at: now.saturating_add(CODE_LIFETIME),
            redeemed_at: None,
            family_id: new_family_id().map_err(WebError::internal)?,
        })
        .await?;
    let mut params = vec![("code", code.expose())];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", &state.issuer));
    tracing::debug!(event = "code_issued", user = %user.username.as_str(), client_id = %client.id);
    Ok(redirect(
        status,
        &redirect_with(&request.redirect_uri, &params),
    ))
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    client: &Client,
    request: &AuthorizationRequest,
    return_to: &str,
) -> Result<Response, WebError> {
    let (csrf, set_cookie) = csrf_token(state, headers)?;
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
    let (csrf, set_cookie) = csrf_token(state, headers)?;
    let scope = request.scope.to_string();
    let mut fields = vec![
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("scope", scope.as_str()),
    ];
    if request.redirect_uri_given {
        fields.push(("redirect_uri", request.redirect_uri.as_str()));
    }
    if let Some(s) = &request.state {
        fields.push(("state", s));
    }
    if let Some(c) = &request.code_challenge {
        fields.push(("code_challenge", c.as_str()));
        fields.push(("code_challenge_method", "S256"));
    }
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
            username: user.username.as_str(),
            scopes: request.scope.iter().collect(),
            csrf_token: &csrf,
            fields,
            redirect_host: &host,
        },
        origin.as_deref(),
    );
    Ok((set_cookie, body).into_response())
}

/// The query string of a validated request, to resume it after signing in again.
fn request_query(client: &Client, request: &AuthorizationRequest) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code");
    q.append_pair("client_id", &client.id);
    q.append_pair("scope", &request.scope.to_string());
    if request.redirect_uri_given {
        q.append_pair("redirect_uri", request.redirect_uri.as_str());
    }
    if let Some(s) = &request.state {
        q.append_pair("state", s);
    }
    if let Some(c) = &request.code_challenge {
        q.append_pair("code_challenge", c.as_str());
        q.append_pair("code_challenge_method", "S256");
    }
    q.finish()
}

fn refusal(state: &AppState, e: AuthorizeError, status: StatusCode) -> Response {
    match e {
        AuthorizeError::Show(message) => error_page(
            StatusCode::BAD_REQUEST,
            "Invalid authorization request",
            &message,
        ),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            state: client_state,
        } => redirect(
            status,
            &error_redirect(
                &redirect_uri,
                &error,
                client_state.as_deref(),
                &state.issuer,
            ),
        ),
    }
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

pub fn csrf_failure() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form expired or was sent from another site. Go back, reload the page and try again.",
    )
}

/// Browser-facing failures are pages, not JSON.
pub fn browser_error(e: WebError) -> Response {
    match e {
        WebError::PayloadTooLarge => error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form is too large.",
        ),
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
            tracing::error!(error = %other, "authorization endpoint failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server met an internal error. Please try again.",
            )
        }
    }
}
