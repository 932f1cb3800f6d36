//! What a browser carries: the session cookie, the CSRF cookie, and the tokens derived from
//! them.
//!
//! CSRF protection is a token bound to a per-browser random cookie: the form field must
//! equal SHA-256 of that cookie (with a label), which a cross-site page can neither read nor
//! set. Cookies are `HttpOnly; SameSite=Lax; Path=/`, plus `Secure` and the `__Host-` prefix
//! when the issuer is https.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tessera_core::random::random_b64;
use tessera_core::token::SessionId;

use crate::error::WebError;

/// The cookies of this server, prefixed `__Host-` when served over https.
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

    /// The session id the browser presents, if any.
    pub fn session(&self, headers: &HeaderMap) -> Option<SessionId> {
        cookie(headers, &self.session).map(SessionId::new)
    }

    /// The `Set-Cookie` header that hands `session` to the browser.
    pub fn set_session(&self, session: &SessionId) -> HeaderMap {
        self.set(&self.session, session.expose(), None)
    }

    /// The `Set-Cookie` header that clears the session cookie.
    pub fn clear_session(&self) -> HeaderMap {
        self.set(&self.session, "", Some(0))
    }

    /// The CSRF token for forms on this page, and a `Set-Cookie` if the browser had no CSRF
    /// cookie yet.
    pub fn csrf_token(&self, headers: &HeaderMap) -> Result<(String, HeaderMap), WebError> {
        match cookie(headers, &self.csrf) {
            Some(seed) if seed.len() >= 43 => Ok((derive_csrf(seed), HeaderMap::new())),
            _ => {
                let seed = random_b64::<32>().map_err(WebError::internal)?;
                Ok((derive_csrf(&seed), self.set(&self.csrf, &seed, None)))
            }
        }
    }

    /// Whether a submitted form's `csrf_token` belongs to this browser.
    pub fn csrf_ok(&self, headers: &HeaderMap, submitted: Option<&str>) -> bool {
        match (cookie(headers, &self.csrf), submitted) {
            (Some(seed), Some(token)) => {
                derive_csrf(seed).as_bytes().ct_eq(token.as_bytes()).into()
            }
            _ => false,
        }
    }

    fn set(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderMap {
        let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if self.secure {
            cookie.push_str("; Secure");
        }
        if let Some(age) = max_age {
            cookie.push_str(&format!("; Max-Age={age}"));
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            headers.append(header::SET_COOKIE, v);
        }
        headers
    }
}

/// The value of cookie `name` in the request, if present.
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

fn derive_csrf(seed: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        Sha256::new()
            .chain_update(b"tessera csrf v1:")
            .chain_update(seed)
            .finalize(),
    )
}
