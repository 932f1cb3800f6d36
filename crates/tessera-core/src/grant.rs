//! The token endpoint's grants (RFC 6749 §4 and §6), as sans-IO decisions.
//!
//! The server authenticates the client and loads records; the functions here decide what may
//! be issued. Grants are an enum so that adding one is a compile error everywhere it matters.

use serde::Serialize;

use crate::client::{Client, GrantType};
use crate::error::OAuthError;
use crate::form::FormParams;
use crate::scope::Scope;

/// A parsed token request, one variant per supported `grant_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    ClientCredentials { scope: Option<Scope> },
}

impl TokenRequest {
    pub fn parse(form: &FormParams) -> Result<Self, OAuthError> {
        let grant_type = form
            .get("grant_type")
            .ok_or_else(|| OAuthError::invalid_request("missing grant_type"))?;
        let scope = match form.get("scope") {
            Some(s) => Some(
                Scope::parse(s)
                    .map_err(|e| OAuthError::InvalidScope(format!("malformed scope: {e}")))?,
            ),
            None => None,
        };
        match GrantType::parse(grant_type) {
            Some(GrantType::ClientCredentials) => Ok(Self::ClientCredentials { scope }),
            Some(GrantType::AuthorizationCode | GrantType::RefreshToken) | None => {
                Err(OAuthError::UnsupportedGrantType(format!(
                    "grant_type `{grant_type}` is not supported"
                )))
            }
        }
    }

    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
        }
    }
}

/// Checks that `client` may use `grant` at all (RFC 6749 §5.2 `unauthorized_client`).
pub fn ensure_grant_allowed(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.allows_grant(grant) {
        Ok(())
    } else {
        Err(OAuthError::UnauthorizedClient(format!(
            "this client is not allowed to use the {grant} grant"
        )))
    }
}

/// The scope to grant: the requested one if the client may have all of it, else the client's
/// registered scope when nothing was requested (RFC 6749 §3.3 lets the server pick a default).
pub fn granted_scope(client: &Client, requested: Option<&Scope>) -> Result<Scope, OAuthError> {
    match requested {
        None => Ok(client.scope.clone()),
        Some(req) if req.is_subset(&client.scope) => Ok(req.clone()),
        Some(_) => Err(OAuthError::InvalidScope(
            "the requested scope exceeds what this client may request".into(),
        )),
    }
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Token lifetimes in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub access: i64,
    pub refresh: i64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            access: 3600,
            refresh: 30 * 24 * 3600,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, register};

    fn client() -> Client {
        register(
            &ClientRegistration {
                name: "m2m".into(),
                scope: "api read".into(),
                ..Default::default()
            },
            0,
        )
        .unwrap()
        .client
    }

    fn check(form: &[(&str, &str)], want: Result<Scope, &str>) {
        let c = client();
        let got =
            TokenRequest::parse(&FormParams::from_pairs(form.iter().copied())).and_then(|req| {
                ensure_grant_allowed(&c, req.grant_type())?;
                match req {
                    TokenRequest::ClientCredentials { scope } => granted_scope(&c, scope.as_ref()),
                }
            });
        assert_eq!(got.map_err(|e| e.code()), want, "{form:?}");
    }

    #[test]
    fn client_credentials_decisions() {
        let s = |x| Scope::parse(x).unwrap();
        check(&[("grant_type", "client_credentials")], Ok(s("api read")));
        check(
            &[("grant_type", "client_credentials"), ("scope", "api")],
            Ok(s("api")),
        );
        check(
            &[("grant_type", "client_credentials"), ("scope", "api admin")],
            Err("invalid_scope"),
        );
        check(
            &[("grant_type", "client_credentials"), ("scope", "a  b")],
            Err("invalid_scope"),
        );
        check(&[], Err("invalid_request"));
        check(&[("grant_type", "password")], Err("unsupported_grant_type"));
        check(&[("grant_type", "implicit")], Err("unsupported_grant_type"));
        check(
            &[("grant_type", "authorization_code")],
            Err("unsupported_grant_type"),
        );
    }
}
