//! The tutorial's client web app: `/login` sends the browser to Tessera, `/authorize` takes
//! the code back, `/protected` shows who is signed in and what the demo API answers.
//!
//! It is an ordinary OAuth client written with the `oauth2` crate and knows Tessera only by
//! its URLs; where Tessera offers OpenID Connect (its discovery document names a JWKS), it
//! signs in as a relying party with the `openidconnect` crate instead: a nonce with PKCE, the
//! ID token verified, the person's name taken from it, and a way out through Tessera's
//! end-session endpoint. Its sessions are kept in memory, keyed by random cookies: a demo, so a restart
//! signs everybody out.
//!
//! The design decision is that a session id never outlives a change of privilege, and that
//! nothing a session does can be started by another site (issue 24):
//!
//! - A sign-in in progress is not a session. `/login` gives the browser only a short-lived
//!   `tessera_demo_login` cookie whose entry holds the `state` value and the PKCE verifier of
//!   that one request. The callback uses it up and creates the signed-in session under a
//!   brand-new id, discarding any session the browser presented, so an id planted before
//!   sign-in never becomes the victim's signed-in session (session fixation).
//! - `POST /revoke` and `POST /logout` carry the session's CSRF token in a hidden field,
//!   compared in constant time; `GET /logout` only shows the form.
//! - Refreshes are serialised per session. Tessera rotates refresh tokens strictly and treats
//!   a second use of one as theft, so two tabs refreshing at once must not both present the
//!   same token: the second waits for the first and then uses the tokens it got.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
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
use subtle::ConstantTimeEq;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    ClientId as OidcClientId, ClientSecret as OidcClientSecret, EndSessionUrl, EndpointMaybeSet,
    IssuerUrl, Nonce, ProviderMetadataWithLogout, RedirectUrl as OidcRedirectUrl,
};

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
    /// Where Tessera sends the browser after signing out through its end-session endpoint
    /// (registered with the client); `None`: the app offers no such sign-out.
    pub post_logout_redirect_uri: Option<String>,
}

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
        logins: moka::sync::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(LOGIN_TTL)
            .build(),
        rp: Arc::new(tokio::sync::OnceCell::new()),
    };
    Ok(Router::new()
        .route("/", get(index))
        .route("/login", get(login))
        .route("/authorize", get(authorize))
        .route("/protected", get(protected))
        .route("/revoke", post(revoke))
        .route("/logout", get(confirm_logout).post(logout))
        .route("/static/demo.css", get(stylesheet))
        .with_state(state))
}

type OAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointSet, EndpointNotSet, EndpointSet>;

#[derive(Clone)]
struct AppState {
    config: Arc<AppConfig>,
    oauth: OAuthClient,
    http: reqwest::Client,
    /// Signed-in sessions, keyed by the [`SESSION_COOKIE`].
    sessions: moka::sync::Cache<String, Arc<Session>>,
    /// Sign-ins in progress, keyed by the [`LOGIN_COOKIE`]; each is used at most once.
    logins: moka::sync::Cache<String, Arc<PendingLogin>>,
    /// The OpenID Connect relying party, once discovery found Tessera offering it.
    rp: Arc<tokio::sync::OnceCell<RelyingParty>>,
}

/// Tessera as an OpenID Connect provider, as discovered.
struct RelyingParty {
    client: OidcClient,
    end_session: Option<EndSessionUrl>,
}

type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// One sign-in in progress: what the callback checks and sends, and nothing else.
struct PendingLogin {
    state: String,
    verifier: String,
    /// The nonce the ID token must carry, for a sign-in through OpenID Connect.
    nonce: Option<String>,
}

/// A signed-in session. It exists only from the callback on, under an id made there.
struct Session {
    /// The hidden field of every form that changes something; fixed for the session's life.
    csrf: String,
    data: Mutex<SessionData>,
    /// Held while the tokens are refreshed or revoked, so that one session never presents the
    /// same refresh token twice.
    refreshing: tokio::sync::Mutex<()>,
}

struct SessionData {
    tokens: Tokens,
    username: Option<String>,
    /// The person's name from the ID token.
    name: Option<String>,
    /// The ID token itself, the hint for Tessera's end-session endpoint.
    id_token: Option<String>,
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

const SESSION_COOKIE: &str = "tessera_demo_session";
const LOGIN_COOKIE: &str = "tessera_demo_login";
/// How long a sign-in may take, from `/login` to the callback.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// A token this close to its expiry is refreshed before it is used.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    signed_in: bool,
}

#[derive(Template)]
#[template(path = "protected.html")]
struct ProtectedPage<'a> {
    username: String,
    name: Option<String>,
    notice: Option<String>,
    calls: Vec<ApiCall>,
    revoked: bool,
    csrf_token: &'a str,
}

struct ApiCall {
    path: &'static str,
    status: String,
    body: String,
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    username: &'a str,
    csrf_token: &'a str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    /// A link to sign out of Tessera too (its end-session endpoint).
    end_session: Option<&'a str>,
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
    render(
        status,
        &MessagePage {
            title,
            message,
            end_session: None,
        },
    )
}

fn no_randomness() -> Response {
    // Without randomness no id can be safe; refusing is failing closed.
    tracing::error!("the operating system's random generator failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "The app could not start a session. Try again later.",
    )
}

fn forged() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form does not belong to your session. Reload the page and try again.",
    )
}

impl AppState {
    fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        cookie(headers, SESSION_COOKIE).and_then(|id| self.sessions.get(id))
    }
}

impl Session {
    fn with<T>(&self, f: impl FnOnce(&mut SessionData) -> T) -> T {
        match self.data.lock() {
            Ok(mut d) => f(&mut d),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn tokens(&self) -> Tokens {
        self.with(|d| d.tokens.clone())
    }

    /// Whether the form `body` carries this session's CSRF token.
    fn accepts(&self, body: &[u8]) -> bool {
        url::form_urlencoded::parse(body)
            .find(|(name, _)| name == "csrf_token")
            .is_some_and(|(_, token)| same(&token, &self.csrf))
    }
}

impl Tokens {
    fn expiring(&self) -> bool {
        self.expires_at
            .is_some_and(|t| Instant::now() + EXPIRY_MARGIN >= t)
    }
}

/// Compares two secrets in constant time (for their length, which is no secret).
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// 32 random bytes, base64url: session ids, login ids and CSRF tokens.
fn random_id() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
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

/// A `Set-Cookie` value; `max_age: Some(0)` deletes the cookie.
fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<u64>) -> Option<HeaderValue> {
    let max_age = max_age
        .map(|s| format!("; Max-Age={s}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Lax{max_age}"
    ))
    .ok()
}

fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
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
        .is_some_and(|s| !s.with(|d| d.revoked));
    render(StatusCode::OK, &IndexPage { signed_in })
}

/// Sends the browser to Tessera with a fresh `state` and PKCE challenge, remembered under a
/// new login cookie (never under the session).
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(id) = random_id() else {
        return no_randomness();
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = match state.relying_party().await {
        Some(rp) => {
            let mut request = rp.client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            );
            for scope in
                std::iter::once("profile").chain(state.config.scope.iter().map(|s| s.as_str()))
            {
                request = request.add_scope(Scope::new(scope.to_owned()));
            }
            let (url, csrf, nonce) = request.set_pkce_challenge(challenge).url();
            (url, csrf, Some(nonce.secret().clone()))
        }
        None => {
            let mut request = state.oauth.authorize_url(CsrfToken::new_random);
            for scope in &state.config.scope {
                request = request.add_scope(Scope::new(scope.clone()));
            }
            let (url, csrf) = request.set_pkce_challenge(challenge).url();
            (url, csrf, None)
        }
    };
    // A second /login replaces the first: each sign-in starts afresh under its own id.
    if let Some(old) = cookie(&headers, LOGIN_COOKIE) {
        state.logins.invalidate(old);
    }
    state.logins.insert(
        id.clone(),
        Arc::new(PendingLogin {
            state: csrf.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce,
        }),
    );
    with_cookies(
        Redirect::to(url.as_str()).into_response(),
        set_cookie(LOGIN_COOKIE, &id, "/authorize", Some(LOGIN_TTL.as_secs())),
    )
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Takes the code back: uses up the pending login, checks `state`, exchanges the code with
/// the PKCE verifier, and signs the browser in under a new session id.
async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let pending = cookie(&headers, LOGIN_COOKIE).and_then(|id| state.logins.remove(id));
    let response = match pending {
        Some(pending) => sign_in(&state, &headers, &pending, callback).await,
        None => message(
            StatusCode::BAD_REQUEST,
            "No login in progress",
            "Start again from the Log in link.",
        ),
    };
    // The login cookie is spent whatever the outcome.
    with_cookies(
        response,
        set_cookie(LOGIN_COOKIE, "", "/authorize", Some(0)),
    )
}

async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    pending: &PendingLogin,
    callback: Callback,
) -> Response {
    if !callback
        .state
        .as_deref()
        .is_some_and(|s| same(s, &pending.state))
    {
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
    let verifier = PkceCodeVerifier::new(pending.verifier.clone());
    let signed_in = match (&pending.nonce, state.relying_party().await) {
        (Some(nonce), Some(rp)) => oidc_sign_in(rp, &http, code, verifier, nonce).await,
        _ => oauth_sign_in(state, &http, code, verifier).await,
    };
    let SignedIn {
        tokens,
        username,
        name,
        id_token,
    } = match signed_in {
        Ok(signed_in) => signed_in,
        Err(response) => return response,
    };
    let (Some(id), Some(csrf)) = (random_id(), random_id()) else {
        return no_randomness();
    };
    // The session the browser presented, if any, ends here: the sign-in gets a new id.
    if let Some(old) = cookie(headers, SESSION_COOKIE) {
        state.sessions.invalidate(old);
    }
    state.sessions.insert(
        id.clone(),
        Arc::new(Session {
            csrf,
            data: Mutex::new(SessionData {
                tokens,
                username,
                name,
                id_token,
                notice: None,
                revoked: false,
            }),
            refreshing: tokio::sync::Mutex::new(()),
        }),
    );
    with_cookies(
        Redirect::to("/protected").into_response(),
        set_cookie(SESSION_COOKIE, &id, "/", None),
    )
}

/// What a sign-in gave the app.
struct SignedIn {
    tokens: Tokens,
    username: Option<String>,
    name: Option<String>,
    id_token: Option<String>,
}

fn tokens_of(token: &impl TokenResponse) -> Tokens {
    Tokens {
        access: token.access_token().secret().clone(),
        refresh: token.refresh_token().map(|r| r.secret().clone()),
        expires_at: token.expires_in().map(|d| Instant::now() + d),
    }
}

fn exchange_failed(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "code exchange failed");
    message(
        StatusCode::BAD_GATEWAY,
        "Code exchange failed",
        &e.to_string(),
    )
}

/// The plain OAuth sign-in: the code exchanged, the username learnt by introspection.
async fn oauth_sign_in(
    state: &AppState,
    http: &(impl Fn(oauth2::HttpRequest) -> crate::http_client::HttpFuture + Sync),
    code: String,
    verifier: PkceCodeVerifier,
) -> Result<SignedIn, Response> {
    let token = state
        .oauth
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| exchange_failed(&e))?;
    let username = state
        .oauth
        .introspect(token.access_token())
        .request_async(http)
        .await
        .ok()
        .and_then(|i| i.username().map(str::to_owned));
    Ok(SignedIn {
        tokens: tokens_of(&token),
        username,
        name: None,
        id_token: None,
    })
}

/// The OpenID Connect sign-in: the code exchanged, the ID token verified against Tessera's
/// keys and this sign-in's nonce, the person named by it.
async fn oidc_sign_in(
    rp: &RelyingParty,
    http: &(impl Fn(oauth2::HttpRequest) -> crate::http_client::HttpFuture + Sync),
    code: String,
    verifier: PkceCodeVerifier,
    nonce: &str,
) -> Result<SignedIn, Response> {
    let request = rp
        .client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| exchange_failed(&e))?;
    let token = request
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .map_err(|e| exchange_failed(&e))?;
    let refused = |why: &str| {
        tracing::warn!(why, "ID token refused");
        message(StatusCode::BAD_GATEWAY, "ID token refused", why)
    };
    let id_token = token
        .extra_fields()
        .id_token()
        .ok_or_else(|| refused("Tessera sent no ID token."))?;
    let claims = id_token
        .claims(
            &rp.client.id_token_verifier(),
            &Nonce::new(nonce.to_owned()),
        )
        .map_err(|e| refused(&e.to_string()))?;
    Ok(SignedIn {
        tokens: tokens_of(&token),
        username: claims.preferred_username().map(|u| u.as_str().to_owned()),
        name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        id_token: Some(id_token.to_string()),
    })
}

impl AppState {
    /// Tessera as an OpenID Connect provider, discovered once; `None` while it offers none
    /// (then the app signs in with plain OAuth, and asks again next time).
    async fn relying_party(&self) -> Option<&RelyingParty> {
        let http = oauth_http(self.http.clone());
        let found = self
            .rp
            .get_or_try_init(|| async {
                let issuer = IssuerUrl::new(self.config.issuer.trim_end_matches('/').to_owned())
                    .map_err(|e| e.to_string())?;
                let metadata = ProviderMetadataWithLogout::discover_async(issuer, &http)
                    .await
                    .map_err(|e| e.to_string())?;
                let end_session = metadata.additional_metadata().end_session_endpoint.clone();
                let client = CoreClient::from_provider_metadata(
                    metadata,
                    OidcClientId::new(self.config.client_id.clone()),
                    Some(OidcClientSecret::new(self.config.client_secret.clone())),
                )
                .set_redirect_uri(
                    OidcRedirectUrl::new(self.config.redirect_uri.clone())
                        .map_err(|e| e.to_string())?,
                );
                Ok::<_, String>(RelyingParty {
                    client,
                    end_session,
                })
            })
            .await;
        match found {
            Ok(rp) => Some(rp),
            Err(e) => {
                tracing::debug!(error = %e, "no OpenID Connect provider; plain OAuth");
                None
            }
        }
    }
}

/// Shows the user and what the API answers to their token, refreshing it when needed.
async fn protected(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = state.session(&headers) else {
        return Redirect::to("/").into_response();
    };
    let (mut tokens, username, name, mut notice, revoked) = session.with(|d| {
        (
            d.tokens.clone(),
            d.username.clone(),
            d.name.clone(),
            d.notice.take(),
            d.revoked,
        )
    });
    if tokens.expiring()
        && let Some(fresh) = refresh_session(&state, &session, &tokens.access).await
    {
        tokens = fresh;
        notice = Some("Your access token had expired; the app refreshed it.".into());
    }
    let mut calls = call_api(&state, &tokens.access).await;
    // A 401 may mean the access token was revoked or expired early: try a refresh once.
    if calls.iter().any(|c| c.status.starts_with("401"))
        && let Some(fresh) = refresh_session(&state, &session, &tokens.access).await
    {
        tokens = fresh;
        calls = call_api(&state, &tokens.access).await;
        notice = Some("The API refused the access token; the app refreshed it.".into());
    }
    render(
        StatusCode::OK,
        &ProtectedPage {
            username: username.unwrap_or_else(|| "(unknown)".into()),
            name,
            notice,
            calls,
            revoked,
            csrf_token: &session.csrf,
        },
    )
}

/// Replaces the session's tokens whose access token is `stale`, one request at a time.
///
/// Returns the tokens to use now: the ones another request got while this one waited, or
/// the ones this refresh got; `None` if refreshing failed.
async fn refresh_session(state: &AppState, session: &Session, stale: &str) -> Option<Tokens> {
    let _one_at_a_time = session.refreshing.lock().await;
    let current = session.tokens();
    if current.access != stale {
        return Some(current);
    }
    let fresh = refresh(state, &current).await?;
    session.with(|d| d.tokens = fresh.clone());
    Some(fresh)
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
            // Tessera always rotates; a server that did not would keep the old one valid.
            refresh: t
                .refresh_token()
                .map(|r| r.secret().clone())
                .or_else(|| tokens.refresh.clone()),
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
async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(session) = state.session(&headers) else {
        return Redirect::to("/").into_response();
    };
    if !session.accepts(&body) {
        return forged();
    }
    // Not in the middle of a refresh: the token revoked is the current one.
    let _one_at_a_time = session.refreshing.lock().await;
    let tokens = session.tokens();
    let token = tokens.refresh.unwrap_or(tokens.access);
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
    session.with(|d| {
        d.notice = Some(notice.into());
        d.revoked |= revoked;
    });
    Redirect::to("/protected").into_response()
}

/// `GET /logout` changes nothing: it shows the form that `POST /logout` expects.
async fn confirm_logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(session) = state.session(&headers) else {
        return message(
            StatusCode::OK,
            "Not signed in",
            "You are not signed in to the demo app.",
        );
    };
    let username = session
        .with(|d| d.username.clone())
        .unwrap_or_else(|| "(unknown)".into());
    render(
        StatusCode::OK,
        &LogoutPage {
            username: &username,
            csrf_token: &session.csrf,
        },
    )
}

async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut id_token = None;
    if let Some(id) = cookie(&headers, SESSION_COOKIE)
        && let Some(session) = state.sessions.get(id)
    {
        if !session.accepts(&body) {
            return forged();
        }
        id_token = session.with(|d| d.id_token.clone());
        state.sessions.invalidate(id);
    }
    let issuer = state.config.issuer.trim_end_matches('/');
    let end_session = match (id_token, state.relying_party().await) {
        (Some(hint), Some(rp)) => end_session_url(&state.config, rp, &hint),
        _ => None,
    };
    let text = match end_session {
        Some(_) => {
            "You are logged out of the demo app. You are still signed in to Tessera.".to_owned()
        }
        None => format!(
            "You are logged out of the demo app. To sign out of Tessera too, visit {issuer}/logout."
        ),
    };
    with_cookies(
        render(
            StatusCode::OK,
            &MessagePage {
                title: "Logged out",
                message: &text,
                end_session: end_session.as_deref(),
            },
        ),
        set_cookie(SESSION_COOKIE, "", "/", Some(0)),
    )
}

/// Tessera's end-session endpoint with the ID token as hint and the registered way back
/// (OpenID Connect RP-Initiated Logout 1.0 §2).
fn end_session_url(config: &AppConfig, rp: &RelyingParty, hint: &str) -> Option<String> {
    let mut url = rp.end_session.as_ref()?.url().clone();
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("id_token_hint", hint);
        if let Some(back) = &config.post_logout_redirect_uri {
            query.append_pair("post_logout_redirect_uri", back);
            query.append_pair("state", &random_id()?);
        }
    }
    Some(url.to_string())
}
