//! What a browser carries: the session cookie, the CSRF cookie, and the tokens derived from
//! them.
//!
//! Session ids are 256 random bits; the store keeps their SHA-256 only, like every other
//! bearer secret. CSRF protection is a token bound to a per-browser random cookie: the form
//! field must equal SHA-256 of that cookie (with a label), which a cross-site page can
//! neither read nor set. Cookies are `HttpOnly; SameSite=Lax; Path=/`, plus `Secure` and the
//! `__Host-` prefix when the issuer is https.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera_core::random::random_b64;
use tessera_core::token::TokenHash;
use tessera_core::user::User;
use tessera_store::Session;

use crate::error::WebError;
use crate::state::AppState;

/// Cookie names, prefixed `__Host-` when served over https.
#[derive(Debug, Clone)]
pub struct CookieNames {
    pub session: String,
    pub csrf: String,
    pub secure: bool,
}

impl CookieNames {
    pub fn new(secure: bool) -> Self {
        let prefix = if secure { "__Host-" } else { "" };
        Self {
            session: format!("{prefix}tessera_session"),
            csrf: format!("{prefix}tessera_csrf"),
            secure,
        }
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> Option<HeaderValue> {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        HeaderValue::from_str(&cookie).ok()
    }
}

/// The value of cookie `name` in the request, if present once.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The signed-in user, if the session cookie names a live session.
pub async fn session_user(state: &AppState, headers: &HeaderMap) -> Result<Option<User>, WebError> {
    let Some(id) = cookie(headers, &state.cookies.session) else {
        return Ok(None);
    };
    Ok(state
        .store
        .find_session_user(&TokenHash::of(id), state.now())
        .await?)
}

/// Starts a session for `user` and returns the `Set-Cookie` header. A new id at every login
/// means a session id planted before login (fixation) is worthless.
pub async fn start_session(state: &AppState, user: &User) -> Result<HeaderMap, WebError> {
    let id = random_b64::<32>().map_err(WebError::internal)?;
    let now = state.now();
    state
        .store
        .create_session(&Session {
            hash: TokenHash::of(&id),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now.saturating_add(state.config.session_ttl),
        })
        .await?;
    let mut headers = HeaderMap::new();
    if let Some(v) = state.cookies.set_cookie(&state.cookies.session, &id, None) {
        headers.append(header::SET_COOKIE, v);
    }
    Ok(headers)
}

/// Ends the session the request carries (if any) and clears its cookie.
pub async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<HeaderMap, WebError> {
    if let Some(id) = cookie(headers, &state.cookies.session) {
        state.store.delete_session(&TokenHash::of(id)).await?;
    }
    let mut out = HeaderMap::new();
    if let Some(v) = state
        .cookies
        .set_cookie(&state.cookies.session, "", Some(0))
    {
        out.append(header::SET_COOKIE, v);
    }
    Ok(out)
}

/// The CSRF token for forms on this page, and a `Set-Cookie` if the browser had no CSRF
/// cookie yet.
pub fn csrf_token(state: &AppState, headers: &HeaderMap) -> Result<(String, HeaderMap), WebError> {
    let mut out = HeaderMap::new();
    let seed = match cookie(headers, &state.cookies.csrf) {
        Some(seed) if seed.len() >= 43 => seed.to_owned(),
        _ => {
            let seed = random_b64::<32>().map_err(WebError::internal)?;
            if let Some(v) = state.cookies.set_cookie(&state.cookies.csrf, &seed, None) {
                out.append(header::SET_COOKIE, v);
            }
            seed
        }
    };
    Ok((derive_csrf(&seed), out))
}

/// Whether a submitted form's `csrf_token` belongs to this browser.
pub fn csrf_ok(state: &AppState, headers: &HeaderMap, submitted: Option<&str>) -> bool {
    match (cookie(headers, &state.cookies.csrf), submitted) {
        (Some(seed), Some(token)) => derive_csrf(seed).as_bytes().ct_eq(token.as_bytes()).into(),
        _ => false,
    }
}

fn derive_csrf(seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        Sha256::new()
            .chain_update(b"tessera csrf v1:")
            .chain_update(seed)
            .finalize(),
    )
}
