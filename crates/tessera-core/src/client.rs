//! Registered clients (RFC 6749 §2): who they are, what they may ask for, where codes may go.

use std::fmt;

use crate::clock::UnixTime;
use crate::ids::{ClientId, ResourceUri};
use crate::random::random_b64;
use crate::scope::Scope;
use crate::secret::Secret;

/// The grants Tessera implements. The implicit and password grants are absent on purpose
/// (RFC 9700 §2.1.2 and §2.4): they cannot be registered, so they cannot be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
}

impl GrantType {
    pub const ALL: [GrantType; 3] = [
        Self::AuthorizationCode,
        Self::ClientCredentials,
        Self::RefreshToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
            Self::RefreshToken => "refresh_token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client authenticates at the token endpoint (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: it has no secret and identifies itself by `client_id` alone.
    None,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::ClientSecretBasic, Self::ClientSecretPost, Self::None]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A redirect URI as registered: an absolute URI without a fragment (RFC 6749 §3.1.2) that a
/// code may safely be sent to.
///
/// It is kept as the exact string given, because authorization requests are matched against
/// it byte for byte (RFC 9700 §4.1.3); parsing is only used to refuse unsafe ones at
/// registration: https; http only on loopback (RFC 8252 §7.3), unless the operator insists;
/// a native app's private-use scheme only in reverse-domain form (RFC 8252 §7.1); never a
/// scheme that runs or reads something in the browser, and never user-info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri(String);

/// Schemes that would run code or read data in the browser instead of reaching an app.
const FORBIDDEN_SCHEMES: [&str; 5] = ["javascript", "data", "vbscript", "file", "blob"];

/// The hosts an `http` redirect URI may name without `allow_insecure_http` (RFC 8252 §7.3).
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

impl RedirectUri {
    /// A redirect URI a client may register (see the type's rules).
    pub fn parse(s: &str) -> Result<Self, RegistrationError> {
        Self::parse_allowing(s, false)
    }

    /// As [`RedirectUri::parse`], and with `allow_insecure_http` also `http` on any host (an
    /// operator's explicit choice, for a test environment without TLS).
    pub fn parse_allowing(s: &str, allow_insecure_http: bool) -> Result<Self, RegistrationError> {
        let bad = || RegistrationError::RedirectUri(s.to_owned());
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let url = url::Url::parse(s).map_err(|_| bad())?;
        if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad());
        }
        match url.scheme() {
            "https" if url.has_host() => {}
            "http" if url.has_host() => {
                let host = url.host_str().unwrap_or_default();
                if !allow_insecure_http && !LOOPBACK_HOSTS.contains(&host) {
                    return Err(RegistrationError::InsecureRedirectUri(s.to_owned()));
                }
            }
            "https" | "http" => return Err(bad()),
            scheme if FORBIDDEN_SCHEMES.contains(&scheme) => return Err(bad()),
            // A private-use scheme must be a reversed domain name the app's owner controls.
            scheme if scheme.contains('.') => {}
            _ => return Err(bad()),
        }
        Ok(Self(s.to_owned()))
    }

    /// A redirect URI read back from the store: checked when it was registered, under the
    /// rules of that time, and kept as it was.
    pub fn stored(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A registered client, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    /// Argon2id PHC string of the secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub auth_method: TokenEndpointAuthMethod,
    pub grant_types: Vec<GrantType>,
    /// The scopes the client may request; also its default when it requests none.
    pub scope: Scope,
    pub redirect_uris: Vec<RedirectUri>,
    /// A first-party client whose users are not asked for consent.
    pub skip_consent: bool,
    pub created_at: UnixTime,
    /// The resource server this client is the credentials of, if it is one.
    pub resource: Option<ResourceUri>,
    /// Registered by itself at `/register` (RFC 7591), not by an operator: its name is only
    /// what it claims, so people see it marked unverified, and it is never spared consent.
    pub self_registered: bool,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Exact, byte-for-byte comparison: no normalisation, no prefix match.
    pub fn registered_redirect_uri(&self, presented: &str) -> Option<&RedirectUri> {
        self.redirect_uris.iter().find(|r| r.as_str() == presented)
    }
}

/// What an operator asks for when registering a client.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistration {
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    /// Empty means "the defaults for this kind of client".
    pub grant_types: Vec<String>,
    pub scope: String,
    pub skip_consent: bool,
    /// Accept `http` redirect URIs on hosts other than loopback.
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    #[error("the client name must not be empty")]
    EmptyName,
    #[error(
        "invalid redirect URI `{0}`: use https, http on loopback, or a private-use scheme in \
         reverse-domain form (com.example.app:/cb); no fragment, no user-info"
    )]
    RedirectUri(String),
    #[error(
        "redirect URI `{0}` sends codes over plain http to another host; use https, or \
         --allow-insecure-redirect-uri for a test environment"
    )]
    InsecureRedirectUri(String),
    #[error(
        "unsupported grant type `{0}` (supported: authorization_code, client_credentials, refresh_token)"
    )]
    GrantType(String),
    #[error("a public client cannot use client_credentials: it has no secret to authenticate with")]
    PublicClientCredentials,
    #[error("the authorization_code grant needs at least one redirect URI")]
    MissingRedirectUri,
    #[error("invalid scope: {0}")]
    Scope(String),
    #[error("the system has no source of randomness")]
    Random,
}

/// A client ready to be stored, and its secret in clear (to be shown once) if confidential.
#[derive(Debug)]
pub struct RegisteredClient {
    pub client: Client,
    pub secret: Option<Secret>,
}

/// Validates a registration and generates the identifier and secret. The secret's hash is
/// computed by the caller (it is slow); `client.secret_hash` is filled with it afterwards.
pub fn register(
    reg: &ClientRegistration,
    now: UnixTime,
) -> Result<RegisteredClient, RegistrationError> {
    let name = reg.name.trim();
    if name.is_empty() {
        return Err(RegistrationError::EmptyName);
    }
    let redirect_uris = reg
        .redirect_uris
        .iter()
        .map(|u| RedirectUri::parse_allowing(u, reg.allow_insecure_http))
        .collect::<Result<Vec<_>, _>>()?;
    let mut grant_types = reg
        .grant_types
        .iter()
        .map(|g| GrantType::parse(g).ok_or_else(|| RegistrationError::GrantType(g.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    if grant_types.is_empty() {
        grant_types = default_grant_types(reg.public, !redirect_uris.is_empty());
    }
    grant_types.sort();
    grant_types.dedup();
    if reg.public && grant_types.contains(&GrantType::ClientCredentials) {
        return Err(RegistrationError::PublicClientCredentials);
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(RegistrationError::MissingRedirectUri);
    }
    let scope =
        Scope::parse(reg.scope.trim()).map_err(|_| RegistrationError::Scope(reg.scope.clone()))?;
    let id = ClientId::new(random_b64::<16>().map_err(|_| RegistrationError::Random)?);
    let secret = if reg.public {
        None
    } else {
        Some(Secret::generate_client_secret().map_err(|_| RegistrationError::Random)?)
    };
    Ok(RegisteredClient {
        client: Client {
            id,
            name: name.to_owned(),
            secret_hash: None,
            auth_method: if reg.public {
                TokenEndpointAuthMethod::None
            } else {
                TokenEndpointAuthMethod::ClientSecretBasic
            },
            grant_types,
            scope,
            redirect_uris,
            skip_consent: reg.skip_consent,
            created_at: now,
            resource: None,
            self_registered: false,
        },
        secret,
    })
}

fn default_grant_types(public: bool, has_redirect: bool) -> Vec<GrantType> {
    let mut grants = Vec::new();
    if has_redirect {
        grants.extend([GrantType::AuthorizationCode, GrantType::RefreshToken]);
    }
    if !public && !has_redirect {
        grants.push(GrantType::ClientCredentials);
    }
    grants
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(public: bool, uris: &[&str], grants: &[&str]) -> ClientRegistration {
        ClientRegistration {
            name: "app".into(),
            public,
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            grant_types: grants.iter().map(|s| s.to_string()).collect(),
            scope: "api".into(),
            skip_consent: false,
            allow_insecure_http: false,
        }
    }

    #[test]
    fn defaults_follow_the_kind_of_client() {
        let m2m = register(&reg(false, &[], &[]), UnixTime::from_secs(0)).unwrap();
        assert_eq!(m2m.client.grant_types, vec![GrantType::ClientCredentials]);
        assert!(m2m.secret.unwrap().expose().starts_with("tss_"));
        let spa = register(
            &reg(true, &["http://127.0.0.1:5000/cb"], &[]),
            UnixTime::from_secs(0),
        )
        .unwrap();
        assert_eq!(
            spa.client.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert!(spa.secret.is_none());
        assert_eq!(spa.client.auth_method, TokenEndpointAuthMethod::None);
    }

    #[test]
    fn refuses_unsafe_registrations() {
        use RegistrationError as E;
        let cases = [
            (
                reg(false, &[], &["password"]),
                E::GrantType("password".into()),
            ),
            (
                reg(false, &[], &["implicit"]),
                E::GrantType("implicit".into()),
            ),
            (
                reg(true, &[], &["client_credentials"]),
                E::PublicClientCredentials,
            ),
            (
                reg(false, &[], &["authorization_code"]),
                E::MissingRedirectUri,
            ),
            (
                reg(false, &["https://a.example/cb#frag"], &[]),
                E::RedirectUri("https://a.example/cb#frag".into()),
            ),
            (
                reg(false, &["/relative"], &[]),
                E::RedirectUri("/relative".into()),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(register(&r, UnixTime::from_secs(0)).unwrap_err(), want);
        }
    }

    #[test]
    fn only_safe_redirect_uris_can_be_registered() {
        for good in [
            "https://app.example/cb",
            "https://app.example:8443/cb?tenant=a",
            "http://127.0.0.1:5000/cb",
            "http://[::1]:5000/cb",
            "http://localhost/cb",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(RedirectUri::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "javascript://example.com/%0aalert(1)",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
            "file:///etc/passwd",
            "https://user:pw@app.example/cb",
            "https://user@app.example/cb",
            "myapp:/cb",
            "urn:ietf:wg:oauth:2.0:oob",
            "https://app.example/cb#frag",
            "https://",
            "/relative",
        ] {
            assert_eq!(
                RedirectUri::parse(bad),
                Err(RegistrationError::RedirectUri(bad.into())),
                "{bad}"
            );
        }
        let plain = "http://app.example/cb";
        assert_eq!(
            RedirectUri::parse(plain),
            Err(RegistrationError::InsecureRedirectUri(plain.into()))
        );
        assert!(RedirectUri::parse_allowing(plain, true).is_ok());
        assert!(RedirectUri::parse_allowing("javascript:alert(1)", true).is_err());
        let mut insecure = reg(false, &[plain], &[]);
        assert!(register(&insecure, UnixTime::from_secs(0)).is_err());
        insecure.allow_insecure_http = true;
        assert!(register(&insecure, UnixTime::from_secs(0)).is_ok());
    }

    #[test]
    fn redirect_uri_match_is_exact() {
        let c = register(
            &reg(false, &["https://a.example/cb"], &[]),
            UnixTime::from_secs(0),
        )
        .unwrap()
        .client;
        assert!(c.registered_redirect_uri("https://a.example/cb").is_some());
        for other in [
            "https://a.example/cb/",
            "https://A.example/cb",
            "https://a.example/cb?x=1",
            "https://a.example:443/cb",
            "https://a.example/cb/../cb",
        ] {
            assert!(c.registered_redirect_uri(other).is_none(), "{other}");
        }
    }
}
