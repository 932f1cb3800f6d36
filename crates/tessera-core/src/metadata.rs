//! RFC 8414 authorization server metadata.

use serde::Serialize;

use crate::client::GrantType;
use crate::oidc::{CLAIMS_SUPPORTED, IDENTITY_SCOPES, SigningAlg};
use crate::registration::REGISTRATION_PATH;
use crate::revocation::REVOCATION_STREAM_PATH;

/// The discovery document served at `/.well-known/oauth-authorization-server`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub introspection_endpoint: String,
    pub revocation_endpoint: String,
    pub grant_types_supported: Vec<&'static str>,
    pub response_types_supported: Vec<&'static str>,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    pub scopes_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207: authorization responses carry `iss`, against mix-up attacks.
    pub authorization_response_iss_parameter_supported: bool,
    /// RFC 7591: present only when clients may register themselves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// draft-ietf-oauth-client-id-metadata-document: a `client_id` may be the https URL of
    /// the client's metadata document. Absent (false) when not accepted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub client_id_metadata_document_supported: bool,
    /// A Tessera extension: where registered resource servers follow the revocations of the
    /// access tokens for them, as Server-Sent Events (see `crate::revocation`).
    pub revocation_stream_endpoint: String,
    /// OpenID Connect Discovery 1.0 §3: present when ID tokens are signed.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub openid: Option<OpenIdMetadata>,
}

/// The OpenID Connect Discovery 1.0 fields, served in both discovery documents.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OpenIdMetadata {
    pub userinfo_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: String,
    pub subject_types_supported: Vec<&'static str>,
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub claims_supported: Vec<&'static str>,
    pub claims_parameter_supported: bool,
    pub request_parameter_supported: bool,
    pub request_uri_parameter_supported: bool,
}

/// Paths of the OpenID Connect endpoints.
pub const USERINFO_PATH: &str = "/userinfo";
pub const JWKS_PATH: &str = "/jwks";
pub const END_SESSION_PATH: &str = "/logout";

/// Builds the metadata for an issuer. The issuer has no trailing slash, so endpoint URLs are
/// the issuer plus a path, as RFC 8414 §3 expects.
pub fn server_metadata(
    issuer: &str,
    scopes_supported: Vec<String>,
    registration: bool,
    client_metadata_documents: bool,
    openid: bool,
) -> ServerMetadata {
    let issuer = issuer.trim_end_matches('/');
    let mut scopes_supported = scopes_supported;
    if openid {
        for scope in IDENTITY_SCOPES {
            if !scopes_supported.iter().any(|s| s == scope) {
                scopes_supported.push(scope.to_owned());
            }
        }
    }
    let secret_methods = vec!["client_secret_basic", "client_secret_post"];
    // Public clients authenticate with `none` at the token and revocation endpoints.
    let all_methods = vec!["client_secret_basic", "client_secret_post", "none"];
    ServerMetadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: format!("{issuer}/authorize"),
        token_endpoint: format!("{issuer}/token"),
        introspection_endpoint: format!("{issuer}/introspect"),
        revocation_endpoint: format!("{issuer}/revoke"),
        grant_types_supported: GrantType::ALL.iter().map(|g| g.as_str()).collect(),
        response_types_supported: vec!["code"],
        token_endpoint_auth_methods_supported: all_methods.clone(),
        introspection_endpoint_auth_methods_supported: secret_methods,
        revocation_endpoint_auth_methods_supported: all_methods,
        scopes_supported,
        code_challenge_methods_supported: vec!["S256"],
        authorization_response_iss_parameter_supported: true,
        registration_endpoint: registration.then(|| format!("{issuer}{REGISTRATION_PATH}")),
        client_id_metadata_document_supported: client_metadata_documents,
        revocation_stream_endpoint: format!("{issuer}{REVOCATION_STREAM_PATH}"),
        openid: openid.then(|| OpenIdMetadata {
            userinfo_endpoint: format!("{issuer}{USERINFO_PATH}"),
            jwks_uri: format!("{issuer}{JWKS_PATH}"),
            end_session_endpoint: format!("{issuer}{END_SESSION_PATH}"),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: SigningAlg::ALL
                .iter()
                .map(|a| a.as_str())
                .collect(),
            claims_supported: CLAIMS_SUPPORTED.to_vec(),
            claims_parameter_supported: false,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
        }),
    }
}
