//! Clients that register themselves (RFC 7591) and manage their registration (RFC 7592).
//!
//! The key design decision: self-registration goes through the same [`register`] as an
//! operator's `tessera client create`, after the metadata has been read under stricter rules:
//! no `http` redirect URI off loopback (no operator is there to insist), never `skip_consent`,
//! lengths bounded, and a scope within what the server offers (the union of the registered
//! resource servers' scopes). The client is marked [`Client::self_registered`], so people see
//! its name marked unverified. A registration access token, kept by the store only as its
//! SHA-256 like every token, lets the client read, replace and delete its registration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

use crate::OAuthError;
use crate::client::{
    Client, ClientRegistration, GrantType, RegistrationError, TokenEndpointAuthMethod, register,
};
use crate::clock::UnixTime;
use crate::random::random_b64;
use crate::scope::Scope;
use crate::secret::Secret;
use crate::token::{InitialAccessToken, RegistrationAccessToken, TokenKey};

/// Where clients register; a registration lives at this path, a slash and its client id.
pub const REGISTRATION_PATH: &str = "/register";

/// The longest body a registration request may have (a generous 16 KiB).
pub const BODY_LIMIT: usize = 16 * 1024;
/// The longest `client_name`, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI, in characters.
pub const MAX_URI_CHARS: usize = 2000;
/// The most entries of `grant_types` or `response_types`.
pub const MAX_LIST: usize = 10;
/// The longest `scope`, in characters.
pub const MAX_SCOPE_CHARS: usize = 1000;

/// Who may register a client at [`REGISTRATION_PATH`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RegistrationPolicy {
    /// Nobody: the endpoint does not exist, and the metadata does not name it.
    #[default]
    Off,
    /// Anyone, a few times a minute per address.
    Open,
    /// Whoever presents an initial access token (`tessera registration-token create`).
    Token,
}

impl RegistrationPolicy {
    pub const ALL: [Self; 3] = [Self::Off, Self::Open, Self::Token];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Open => "open",
            Self::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn is_on(self) -> bool {
        self != Self::Off
    }
}

/// Client metadata as a client sends it (RFC 7591 §2). Fields Tessera does not know
/// (`client_uri`, `logo_uri`, `contacts`, ...) are ignored, as §2 says; they are not stored,
/// so they are not echoed either.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub client_name: Option<String>,
    pub scope: Option<String>,
    /// RFC 7592 §2.2: an update names the client it replaces...
    pub client_id: Option<String>,
    /// ... and may repeat its secret, which must then be the current one.
    #[serde(default, deserialize_with = "secret")]
    pub client_secret: Option<Secret>,
    /// OpenID Connect RP-Initiated Logout §3.1.
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// OpenID Connect Dynamic Client Registration §2: `ES256` or `RS256`.
    pub id_token_signed_response_alg: Option<String>,
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// A self-registered client as the store keeps it: the client and the key of its
/// registration access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub client: Client,
    pub access_token: TokenKey,
}

impl Registration {
    /// Whether `presented` (the bearer token of a request) is this registration's access
    /// token; compared in constant time.
    pub fn is_managed_by(&self, presented: &RegistrationAccessToken) -> bool {
        bool::from(
            presented
                .key()
                .as_bytes()
                .ct_eq(self.access_token.as_bytes()),
        )
    }
}

/// A new self-registered client, with what it is told once: its secret (if confidential) and
/// its registration access token.
#[derive(Debug)]
pub struct NewRegistration {
    pub registration: Registration,
    pub secret: Option<Secret>,
    pub access_token: RegistrationAccessToken,
}

/// Reads `metadata` under the rules of self-registration and makes the client, its secret
/// and its registration access token. `offered` is every scope a client may ask for here.
/// The secret's hash is left for the caller to compute (it is slow).
pub fn register_client(
    metadata: &ClientMetadata,
    offered: &Scope,
    now: UnixTime,
) -> Result<NewRegistration, OAuthError> {
    let (registration, auth_method) = checked(metadata, offered)?;
    let registered = register(&registration, now).map_err(refusal)?;
    let mut client = registered.client;
    client.auth_method = auth_method;
    client.self_registered = true;
    client.name = client_name(metadata).unwrap_or_else(|| client.id.to_string());
    let access_token = new_registration_access_token()?;
    Ok(NewRegistration {
        registration: Registration {
            access_token: access_token.key(),
            client,
        },
        secret: registered.secret,
        access_token,
    })
}

/// The client `existing` becomes under the metadata of an RFC 7592 update: every field
/// replaced (an absent one takes its default), the id, secret and creation time kept. A
/// client cannot turn from public to confidential or back: it registers anew for that.
pub fn update_client(
    existing: &Client,
    metadata: &ClientMetadata,
    offered: &Scope,
) -> Result<Client, OAuthError> {
    if metadata.client_id.as_deref() != Some(existing.id.as_str()) {
        return Err(OAuthError::InvalidClientMetadata(
            "client_id must be the identifier of the client being updated".into(),
        ));
    }
    let (registration, auth_method) = checked(metadata, offered)?;
    if registration.public != existing.is_public() {
        return Err(OAuthError::InvalidClientMetadata(
            "token_endpoint_auth_method cannot change between none and a secret; register a \
             new client instead"
                .into(),
        ));
    }
    let fresh = register(&registration, existing.created_at)
        .map_err(refusal)?
        .client;
    Ok(Client {
        id: existing.id.clone(),
        name: client_name(metadata).unwrap_or_else(|| existing.id.to_string()),
        secret_hash: existing.secret_hash.clone(),
        auth_method,
        created_at: existing.created_at,
        resource: existing.resource.clone(),
        self_registered: true,
        ..fresh
    })
}

/// The metadata as an operator's registration would say it, and the auth method asked for.
pub(crate) fn checked(
    metadata: &ClientMetadata,
    offered: &Scope,
) -> Result<(ClientRegistration, TokenEndpointAuthMethod), OAuthError> {
    let invalid = |d: String| OAuthError::InvalidClientMetadata(d);
    if let Some(name) = &metadata.client_name {
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!(
                "client_name is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("client_name contains control characters".into()));
        }
    }
    let auth_method = match metadata.token_endpoint_auth_method.as_deref() {
        None => TokenEndpointAuthMethod::ClientSecretBasic,
        Some(m) => TokenEndpointAuthMethod::parse(m).ok_or_else(|| {
            invalid(format!(
                "unsupported token_endpoint_auth_method `{}` (supported: none, \
                 client_secret_basic, client_secret_post)",
                clipped(m)
            ))
        })?,
    };
    let redirect_uris = metadata.redirect_uris.clone().unwrap_or_default();
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::InvalidRedirectUri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs may be registered"
        )));
    }
    if let Some(long) = redirect_uris
        .iter()
        .find(|u| u.chars().count() > MAX_URI_CHARS)
    {
        return Err(OAuthError::InvalidRedirectUri(format!(
            "redirect URI `{}...` is longer than {MAX_URI_CHARS} characters",
            clipped(long)
        )));
    }
    let grant_types = match &metadata.grant_types {
        None => vec![GrantType::AuthorizationCode.as_str().to_owned()],
        Some(list) if list.is_empty() => {
            return Err(invalid("grant_types must not be empty".into()));
        }
        Some(list) if list.len() > MAX_LIST => {
            return Err(invalid(format!(
                "grant_types has more than {MAX_LIST} entries"
            )));
        }
        Some(list) => list.clone(),
    };
    let authorization_code = grant_types
        .iter()
        .any(|g| g == GrantType::AuthorizationCode.as_str());
    if let Some(response_types) = &metadata.response_types {
        if response_types.len() > MAX_LIST {
            return Err(invalid(format!(
                "response_types has more than {MAX_LIST} entries"
            )));
        }
        if let Some(other) = response_types.iter().find(|r| *r != "code") {
            return Err(invalid(format!(
                "unsupported response type `{}` (supported: code)",
                clipped(other)
            )));
        }
        // RFC 7591 §2.1: `code` goes with authorization_code, and only with it.
        if response_types.is_empty() == authorization_code {
            return Err(invalid(
                "response_types and grant_types disagree: response type `code` goes with the \
                 authorization_code grant (RFC 7591 section 2.1)"
                    .into(),
            ));
        }
    }
    let scope = match metadata.scope.as_deref().filter(|s| !s.is_empty()) {
        None => offered.clone(),
        Some(s) if s.chars().count() > MAX_SCOPE_CHARS => {
            return Err(invalid(format!(
                "scope is longer than {MAX_SCOPE_CHARS} characters"
            )));
        }
        Some(s) => {
            let asked = Scope::parse(s)
                .map_err(|_| invalid("scope is not a space-separated list of scopes".into()))?;
            if !asked.is_subset(offered) {
                return Err(invalid(format!(
                    "scope `{asked}` is not offered here; offered: `{offered}`"
                )));
            }
            asked
        }
    };
    let registration = ClientRegistration {
        // Replaced by the client's name or id once registered; never empty here.
        name: "self-registered".into(),
        public: auth_method == TokenEndpointAuthMethod::None,
        redirect_uris,
        grant_types,
        scope: scope.to_string(),
        skip_consent: false,
        allow_insecure_http: false,
    };
    Ok((registration, auth_method))
}

pub(crate) fn client_name(metadata: &ClientMetadata) -> Option<String> {
    metadata
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// At most 100 characters of something a client sent, for an error description.
fn clipped(s: &str) -> String {
    s.chars().take(100).collect()
}

/// The RFC 7591 error for a registration [`register`] refused.
pub(crate) fn refusal(e: RegistrationError) -> OAuthError {
    match e {
        RegistrationError::RedirectUri(uri) | RegistrationError::InsecureRedirectUri(uri) => {
            OAuthError::InvalidRedirectUri(format!(
                "redirect URI `{}` may not be registered: use https, http only on a loopback \
                 host, or a private-use scheme in reverse-domain form; no fragment, no user-info",
                clipped(&uri)
            ))
        }
        RegistrationError::MissingRedirectUri => OAuthError::InvalidRedirectUri(
            "the authorization_code grant needs at least one redirect URI".into(),
        ),
        RegistrationError::Random => OAuthError::ServerError,
        other => OAuthError::InvalidClientMetadata(other.to_string()),
    }
}

/// A new registration access token: `tsg_` and 256 random bits.
pub fn new_registration_access_token() -> Result<RegistrationAccessToken, OAuthError> {
    let random = random_b64::<32>().map_err(|_| OAuthError::ServerError)?;
    Ok(RegistrationAccessToken::new(format!("tsg_{random}")))
}

/// An initial access token (RFC 7591 §3) as the store keeps it: its key and its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialAccessTokenRecord {
    pub hash: TokenKey,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A new initial access token (`tsi_` and 256 random bits), valid for `lifetime` seconds
/// from `now`, and the record to store.
pub fn new_initial_access_token(
    now: UnixTime,
    lifetime: i64,
) -> Result<(InitialAccessToken, InitialAccessTokenRecord), getrandom::Error> {
    let token = InitialAccessToken::new(format!("tsi_{}", random_b64::<32>()?));
    let record = InitialAccessTokenRecord {
        hash: token.key(),
        created_at: now,
        expires_at: now.saturating_add(lifetime),
    };
    Ok((token, record))
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1), if that is what it is.
pub fn bearer_token(authorization: Option<&[u8]>) -> Option<&str> {
    let header = std::str::from_utf8(authorization?).ok()?;
    let (scheme, token) = header.split_once(' ')?;
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.chars().all(token68))
        .then_some(token)
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3).
#[derive(Debug, Serialize)]
pub struct ClientInformation {
    pub client_id: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "exposed_secret"
    )]
    pub client_secret: Option<Secret>,
    pub client_id_issued_at: i64,
    /// 0 (never) for a confidential client; absent for a public one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<i64>,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<&'static str>,
    pub response_types: Vec<&'static str>,
    pub token_endpoint_auth_method: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub registration_access_token: RegistrationAccessToken,
    pub registration_client_uri: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token_signed_response_alg: Option<String>,
}

fn exposed_secret<S: Serializer>(secret: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_some(&secret.as_ref().map(Secret::expose))
}

impl ClientInformation {
    /// What a client is told about its registration at `issuer`. `secret` only at
    /// registration (it is not kept in clear); `access_token` is the one the client holds.
    pub fn of(
        client: &Client,
        secret: Option<Secret>,
        access_token: RegistrationAccessToken,
        issuer: &str,
    ) -> Self {
        let authorization_code = client.allows_grant(GrantType::AuthorizationCode);
        Self {
            client_id: client.id.to_string(),
            client_secret: secret,
            client_id_issued_at: client.created_at.as_secs(),
            client_secret_expires_at: (!client.is_public()).then_some(0),
            client_name: client.name.clone(),
            redirect_uris: client
                .redirect_uris
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            grant_types: client.grant_types.iter().map(|g| g.as_str()).collect(),
            response_types: if authorization_code {
                vec!["code"]
            } else {
                Vec::new()
            },
            token_endpoint_auth_method: client.auth_method.as_str(),
            scope: client.scope.to_string(),
            registration_access_token: access_token,
            registration_client_uri: format!(
                "{}{REGISTRATION_PATH}/{}",
                issuer.trim_end_matches('/'),
                client.id
            ),
            post_logout_redirect_uris: Vec::new(),
            id_token_signed_response_alg: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Scope {
        Scope::parse("api read").unwrap()
    }

    fn metadata(json: &str) -> ClientMetadata {
        serde_json::from_str(json).unwrap()
    }

    fn check(json: &str) -> Result<NewRegistration, OAuthError> {
        register_client(&metadata(json), &offered(), UnixTime::from_secs(1000))
    }

    #[test]
    fn defaults_are_rfc_7591s_and_the_offered_scope() {
        let new = check(r#"{"redirect_uris":["https://app.example/cb"],"logo_uri":"x"}"#).unwrap();
        let client = &new.registration.client;
        assert_eq!(client.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(
            client.auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        assert_eq!(client.scope, offered());
        assert_eq!(client.name, client.id.to_string());
        assert!(client.self_registered && !client.skip_consent);
        assert!(new.secret.is_some());
        assert!(new.access_token.expose().starts_with("tsg_"));
        assert!(new.registration.is_managed_by(&new.access_token));
        assert!(
            !new.registration
                .is_managed_by(&RegistrationAccessToken::new("tsg_other"))
        );
    }

    #[test]
    fn refuses_what_may_not_be_self_registered() {
        let long_name = format!(
            r#"{{"client_name":"{}","grant_types":["client_credentials"]}}"#,
            "n".repeat(201)
        );
        let many: Vec<String> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
        let many = format!(
            r#"{{"redirect_uris":{}}}"#,
            serde_json::to_string(&many).unwrap()
        );
        let cases: [(&str, &str); 10] = [
            (r#"{"grant_types":["password"]}"#, "invalid_client_metadata"),
            (
                r#"{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"grant_types":["client_credentials"],"response_types":["code"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"redirect_uris":["javascript:alert(1)"]}"#,
                "invalid_redirect_uri",
            ),
            (
                r#"{"redirect_uris":["http://app.example/cb"]}"#,
                "invalid_redirect_uri",
            ),
            (&long_name, "invalid_client_metadata"),
            (&many, "invalid_redirect_uri"),
            (
                r#"{"token_endpoint_auth_method":"none","grant_types":["client_credentials"]}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"grant_types":["client_credentials"],"scope":"admin"}"#,
                "invalid_client_metadata",
            ),
            (
                r#"{"grant_types":["authorization_code"]}"#,
                "invalid_redirect_uri",
            ),
        ];
        for (json, code) in cases {
            let error = check(json).map(|_| ()).unwrap_err();
            assert_eq!(error.code(), code, "{json}: {error}");
        }
    }

    #[test]
    fn an_update_replaces_everything_but_identity_and_kind() {
        let new =
            check(r#"{"redirect_uris":["https://app.example/cb"],"client_name":"A"}"#).unwrap();
        let mut existing = new.registration.client;
        existing.secret_hash = Some("hash".into());
        let id = existing.id.to_string();
        let update = metadata(&format!(
            r#"{{"client_id":"{id}","grant_types":["client_credentials"],"scope":"api"}}"#
        ));
        let updated = update_client(&existing, &update, &offered()).unwrap();
        assert_eq!(updated.id, existing.id);
        assert_eq!(updated.secret_hash.as_deref(), Some("hash"));
        assert_eq!(updated.grant_types, vec![GrantType::ClientCredentials]);
        assert_eq!(updated.name, id);
        let other =
            metadata(r#"{"client_id":"someone-else","grant_types":["client_credentials"]}"#);
        assert!(update_client(&existing, &other, &offered()).is_err());
        let public = metadata(&format!(
            r#"{{"client_id":"{id}","token_endpoint_auth_method":"none","redirect_uris":["https://app.example/cb"]}}"#
        ));
        assert!(update_client(&existing, &public, &offered()).is_err());
    }

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(bearer_token(Some(b"Bearer tsi_abc")), Some("tsi_abc"));
        assert_eq!(bearer_token(Some(b"bearer tsi_abc")), Some("tsi_abc"));
        for bad in [
            &b"Basic abc"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"Bearer \xff",
        ] {
            assert_eq!(bearer_token(Some(bad)), None);
        }
    }
}
