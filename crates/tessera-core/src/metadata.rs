//! RFC 8414 authorization server metadata.

use serde::Serialize;

use crate::client::GrantType;

/// The discovery document served at `/.well-known/oauth-authorization-server`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerMetadata {
    pub issuer: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    /// REQUIRED by RFC 8414 §2 even before the authorization endpoint exists.
    pub response_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<String>,
}

/// Builds the metadata for an issuer. The issuer has no trailing slash, so endpoint URLs are
/// the issuer plus a path, as RFC 8414 §3 expects.
pub fn server_metadata(issuer: &str, scopes_supported: Vec<String>) -> ServerMetadata {
    let issuer = issuer.trim_end_matches('/');
    let secret_methods = vec!["client_secret_basic", "client_secret_post"];
    ServerMetadata {
        issuer: issuer.to_owned(),
        token_endpoint: format!("{issuer}/token"),
        introspection_endpoint: format!("{issuer}/introspect"),
        revocation_endpoint: format!("{issuer}/revoke"),
        grant_types_supported: vec![GrantType::ClientCredentials.as_str()],
        response_types_supported: vec![],
        token_endpoint_auth_methods_supported: secret_methods.clone(),
        introspection_endpoint_auth_methods_supported: secret_methods.clone(),
        revocation_endpoint_auth_methods_supported: secret_methods,
        scopes_supported,
    }
}
