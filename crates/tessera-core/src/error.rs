//! [`OAuthError`]: every error code a Tessera endpoint can answer with.
//!
//! One variant per code of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, RFC 7009 §2.2.1 and
//! RFC 7591 §3.2.2, each with a human-readable description. The mapping to HTTP (status,
//! headers, body) lives in the server crate, in one place.

/// An OAuth error with its `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", self.code(), self.description())]
pub enum OAuthError {
    InvalidRequest(String),
    /// `basic` records whether the client tried HTTP Basic, which decides whether the answer
    /// carries `WWW-Authenticate: Basic` (RFC 6749 §5.2).
    InvalidClient {
        description: String,
        basic: bool,
    },
    InvalidGrant(String),
    UnauthorizedClient(String),
    UnsupportedGrantType(String),
    InvalidScope(String),
    /// RFC 8707 §2: a `resource` that is malformed, unknown, or not for this client.
    InvalidTarget(String),
    AccessDenied(String),
    UnsupportedResponseType(String),
    UnsupportedTokenType(String),
    InvalidToken(String),
    InsufficientScope(String),
    /// RFC 7591 §3.2.2: a redirect URI that may not be registered.
    InvalidRedirectUri(String),
    /// RFC 7591 §3.2.2: any other client metadata that is invalid or not allowed.
    InvalidClientMetadata(String),
    /// OIDC Core §3.1.2.6: `prompt=none` and the person would have to sign in.
    LoginRequired(String),
    /// OIDC Core §3.1.2.6: `prompt=none` and the person would have to consent.
    ConsentRequired(String),
    /// OIDC Core §3.1.2.6: `prompt=none` and some other page would be needed.
    InteractionRequired(String),
    /// Something failed inside the server; the description is generic on purpose.
    ServerError,
    /// A dependency (the database) is unreachable; the client may retry.
    TemporarilyUnavailable,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::InvalidRequest(description.into())
    }

    pub fn invalid_client(basic: bool) -> Self {
        Self::InvalidClient {
            description: "client authentication failed".into(),
            basic,
        }
    }

    /// The RFC error code, as sent in the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient { .. } => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::AccessDenied(_) => "access_denied",
            Self::UnsupportedResponseType(_) => "unsupported_response_type",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::LoginRequired(_) => "login_required",
            Self::ConsentRequired(_) => "consent_required",
            Self::InteractionRequired(_) => "interaction_required",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The `error_description`: human-readable, never containing internals.
    pub fn description(&self) -> &str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::InvalidTarget(d)
            | Self::AccessDenied(d)
            | Self::UnsupportedResponseType(d)
            | Self::UnsupportedTokenType(d)
            | Self::InvalidToken(d)
            | Self::InsufficientScope(d)
            | Self::InvalidRedirectUri(d)
            | Self::InvalidClientMetadata(d)
            | Self::LoginRequired(d)
            | Self::ConsentRequired(d)
            | Self::InteractionRequired(d) => d,
            Self::InvalidClient { description, .. } => description,
            Self::ServerError => "the server met an internal error",
            Self::TemporarilyUnavailable => "the server is temporarily unavailable; retry later",
        }
    }
}
