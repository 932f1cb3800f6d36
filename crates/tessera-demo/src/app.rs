//! The tutorial's client web app: `/login` sends the browser to Tessera, `/authorize` takes
//! the code back, `/protected` shows who is signed in and what the demo API answers.
//!
//! It is an ordinary OAuth client written with the `oauth2` crate and knows Tessera only by
//! its URLs. Its own sessions (state, PKCE verifier, tokens) are kept in memory, keyed by a
//! random cookie: a demo, so a restart signs everybody out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    IntrospectionUrl, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use serde::Deserialize;

use crate::http_client::{oauth_http, reqwest_client};

/// Where the app finds everything, and who it is.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Tessera's issuer URL (its endpoints are `/authorize`, `/token`, `/introspect`, `/revoke`).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// This app's `/authorize` URL, as registered with Tessera.
    pub redirect_uri: String,
    /// The demo API's base URL.
    pub api_base: String,
    /// The scopes to ask for.
    pub scope: Vec<String>,
}

type OAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointSet>;

#[derive(Clone)]
struct AppState {
    config: Arc<AppConfig>,
    oauth: OAuthClient,
    http: reqwest::Client,
    sessions: moka::sync::Cache<String, Arc<Mutex<Session>>>,
}

#[derive(Default)]
struct Session {
    pending: Option<(String, String)>,
    tokens: Option<Tokens>,
    username: Option<String>,
    notice: Option<String>,
    /// The user revoked their tokens; the page then offers to log in again.
    revoked: bool,
}

#[derive(Clone)]
struct Tokens {
    access: String,
    refresh: Option<String>,
    expires_at: Option<Instant>,
}

const COOKIE: &str = "tessera_demo_session";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("invalid URL in the demo configuration: {0}")]
    Url(#[from] url::ParseError),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The app's routes.
pub fn router(config: AppConfig) -> Result<Router, AppError> {
    let issuer = config.issuer.trim_end_matches('/');
    let oauth = BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_client_secret(ClientSecret::new(config.client_secret.clone()))
        .set_auth_uri(AuthUrl::new(format!("{issuer}/authorize"))?)
        .set_token_uri(TokenUrl::new(format!("{issuer}/token"))?)
        .set_introspection_url(IntrospectionUrl::new(format!("{issuer}/introspect"))?)
        .set_redirect_uri(RedirectUrl::new(config.redirect_uri.clone())?);
    let state = AppState {
        config: Arc::new(config),
        oauth,
        http: reqwest_client()?,
        sessions: moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_idle(Duration::from_secs(3600))
            .build(),
    };
    Ok(Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/authorize", get(authorize))
        .route("/protected", get(protected))
        .route("/revoke", post(revoke))
        .route("/logout", get(logout).post(logout))
        .route("/static/demo.css", get(stylesheet))
        .with_state(state))
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    signed_in: bool,
}

#[derive(Template)]
#[template(path = "protected.html")]
struct ProtectedPage {
    username: String,
    notice: Option<String>,
    calls: Vec<ApiCall>,
    revoked: bool,
}

struct ApiCall {
    path: &'static str,
    status: String,
    body: String,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::X_FRAME_OPTIONS, "DENY"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'",
                ),
            ],
            Html(html),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "demo template failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn message(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &MessagePage { title, message })
}

impl AppState {
    fn session(&self, headers: &HeaderMap) -> Option<Arc<Mutex<Session>>> {
        cookie(headers, COOKIE).and_then(|id| self.sessions.get(id))
    }

    /// The request's session, or a new one with its `Set-Cookie`.
    fn session_or_new(&self, headers: &HeaderMap) -> (Arc<Mutex<Session>>, Option<HeaderValue>) {
        if let Some(s) = self.session(headers) {
            return (s, None);
        }
        let mut bytes = [0u8; 32];
        if getrandom::fill(&mut bytes).is_err() {
            // Without randomness no session can be safe; an unusable one fails closed.
            return (Arc::default(), None);
        }
        let id = URL_SAFE_NO_PAD.encode(bytes);
        let session: Arc<Mutex<Session>> = Arc::default();
        self.sessions.insert(id.clone(), session.clone());
        let cookie =
            HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax")).ok();
        (session, cookie)
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn with_session<T>(session: &Mutex<Session>, f: impl FnOnce(&mut Session) -> T) -> T {
    match session.lock() {
        Ok(mut s) => f(&mut s),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../static/demo.css"),
    )
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = state
        .session(&headers)
        .is_some_and(|s| with_session(&s, |s| s.tokens.is_some() && !s.revoked));
    render(StatusCode::OK, &IndexPage { signed_in })
}

/// Sends the browser to Tessera with a fresh `state` and PKCE challenge.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (session, set_cookie) = state.session_or_new(&headers);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = state.oauth.authorize_url(CsrfToken::new_random);
    for scope in &state.config.scope {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf) = request.set_pkce_challenge(challenge).url();
    with_session(&session, |s| {
        s.pending = Some((csrf.secret().clone(), verifier.secret().clone()));
    });
    let mut response = Redirect::to(url.as_str()).into_response();
    if let Some(c) = set_cookie {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    response
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Takes the code back: checks `state`, exchanges the code with the PKCE verifier.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(session) = state.session(&headers) else {
        return message(
            StatusCode::BAD_REQUEST,
            "No login in progress",
            "Start again from the Log in link.",
        );
    };
    let pending = with_session(&session, |s| s.pending.take());
    let Some((expected_state, verifier)) = pending else {
        return message(
            StatusCode::BAD_REQUEST,
            "No login in progress",
            "Start again from the Log in link.",
        );
    };
    if callback.state.as_deref() != Some(expected_state.as_str()) {
        return message(
            StatusCode::BAD_REQUEST,
            "State mismatch",
            "The response does not belong to the login this browser started.",
        );
    }
    if let Some(error) = callback.error {
        let text = format!(
            "{error}: {}",
            callback.error_description.unwrap_or_default()
        );
        return message(StatusCode::FORBIDDEN, "Login refused", &text);
    }
    let Some(code) = callback.code else {
        return message(
            StatusCode::BAD_REQUEST,
            "No code",
            "The authorization server sent no code.",
        );
    };
    let http = oauth_http(state.http.clone());
    let exchanged = state
        .oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await;
    let token = match exchanged {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "code exchange failed");
            return message(
                StatusCode::BAD_GATEWAY,
                "Code exchange failed",
                &e.to_string(),
            );
        }
    };
    let tokens = Tokens {
        access: token.access_token().secret().clone(),
        refresh: token.refresh_token().map(|r| r.secret().clone()),
        expires_at: token.expires_in().map(|d| Instant::now() + d),
    };
    let username = state
        .oauth
        .introspect(token.access_token())
        .request_async(&http)
        .await
        .ok()
        .and_then(|i| i.username().map(str::to_owned));
    with_session(&session, |s| {
        s.tokens = Some(tokens);
        s.username = username;
        s.notice = None;
        s.revoked = false;
    });
    Redirect::to("/protected").into_response()
}

/// Shows the user and what the API answers to their token, refreshing it when needed.
async fn protected(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = state.session(&headers) else {
        return Redirect::to("/").into_response();
    };
    let (tokens, username, notice, revoked) = with_session(&session, |s| {
        (
            s.tokens.clone(),
            s.username.clone(),
            s.notice.take(),
            s.revoked,
        )
    });
    let Some(mut tokens) = tokens else {
        return Redirect::to("/").into_response();
    };
    let mut notice = notice;
    if tokens
        .expires_at
        .is_some_and(|t| Instant::now() + Duration::from_secs(5) >= t)
        && let Some(refreshed) = refresh(&state, &tokens).await
    {
        tokens = refreshed;
        notice = Some("Your access token had expired; the app refreshed it.".into());
    }
    let mut calls = call_api(&state, &tokens.access).await;
    // A 401 may mean the access token was revoked or expired early: try a refresh once.
    if calls.iter().any(|c| c.status.starts_with("401"))
        && let Some(refreshed) = refresh(&state, &tokens).await
    {
        tokens = refreshed;
        calls = call_api(&state, &tokens.access).await;
        notice = Some("The API refused the access token; the app refreshed it.".into());
    }
    with_session(&session, |s| s.tokens = Some(tokens.clone()));
    render(
        StatusCode::OK,
        &ProtectedPage {
            username: username.unwrap_or_else(|| "(unknown)".into()),
            notice,
            calls,
            revoked,
        },
    )
}

async fn refresh(state: &AppState, tokens: &Tokens) -> Option<Tokens> {
    let refresh_token = tokens.refresh.clone()?;
    let http = oauth_http(state.http.clone());
    match state
        .oauth
        .exchange_refresh_token(&RefreshToken::new(refresh_token))
        .request_async(&http)
        .await
    {
        Ok(t) => Some(Tokens {
            access: t.access_token().secret().clone(),
            refresh: t.refresh_token().map(|r| r.secret().clone()),
            expires_at: t.expires_in().map(|d| Instant::now() + d),
        }),
        Err(e) => {
            tracing::info!(error = %e, "refresh refused");
            None
        }
    }
}

async fn call_api(state: &AppState, access_token: &str) -> Vec<ApiCall> {
    let mut calls = Vec::new();
    for path in ["/api/data", "/api/restricted"] {
        let url = format!("{}{path}", state.config.api_base.trim_end_matches('/'));
        let call = match state.http.get(&url).bearer_auth(access_token).send().await {
            Ok(r) => {
                let status = r.status();
                let challenge = r
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let text = r.text().await.unwrap_or_default();
                let body = serde_json::from_str::<serde_json::Value>(&text)
                    .and_then(|v| serde_json::to_string_pretty(&v))
                    .unwrap_or(text);
                let body = match challenge {
                    Some(c) => format!("WWW-Authenticate: {c}\n{body}"),
                    None => body,
                };
                ApiCall {
                    path,
                    status: format!(
                        "{} {}",
                        status.as_u16(),
                        status.canonical_reason().unwrap_or("")
                    ),
                    body,
                }
            }
            Err(e) => ApiCall {
                path,
                status: "unreachable".into(),
                body: e.to_string(),
            },
        };
        calls.push(call);
    }
    calls
}

/// Revokes the refresh token (RFC 7009), which revokes every token of the sign-in at once.
///
/// This one request is plain reqwest: the `oauth2` crate refuses revocation URLs that are
/// not https, and the demo runs on loopback http.
async fn revoke(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = state.session(&headers) else {
        return Redirect::to("/").into_response();
    };
    let Some(tokens) = with_session(&session, |s| s.tokens.clone()) else {
        return Redirect::to("/").into_response();
    };
    let token = tokens
        .refresh
        .clone()
        .unwrap_or_else(|| tokens.access.clone());
    let url = format!("{}/revoke", state.config.issuer.trim_end_matches('/'));
    let result = state
        .http
        .post(url)
        .basic_auth(&state.config.client_id, Some(&state.config.client_secret))
        .form(&[("token", token.as_str())])
        .send()
        .await;
    let revoked = matches!(&result, Ok(r) if r.status().is_success());
    let notice = if revoked {
        "Your tokens were revoked at Tessera. The API now refuses the access token, and the refresh token no longer works."
    } else {
        "Revocation failed; see the app's log."
    };
    with_session(&session, |s| {
        s.notice = Some(notice.into());
        s.revoked |= revoked;
    });
    Redirect::to("/protected").into_response()
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.invalidate(id);
    }
    let issuer = state.config.issuer.trim_end_matches('/');
    let text = format!(
        "You are logged out of the demo app. To sign out of Tessera too, visit {issuer}/logout."
    );
    let mut response = message(StatusCode::OK, "Logged out", &text);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
