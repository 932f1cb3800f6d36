//! OpenID Connect Core 1.0 rules: the authorization request's `prompt`, `max_age` and
//! `nonce`, the claims of an ID token and of userinfo, and the key-encryption key.
//!
//! The access token stays opaque; only the ID token is signed, and signing is I/O-free but
//! needs key material, so it lives in `tessera-flow`. What goes into a token and when a person
//! must sign in again are decided here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::form::FormParams;
use crate::scope::Scope;

/// The scope that makes an authorization request an OpenID Connect one.
pub const OPENID: &str = "openid";
/// The identity scopes this server defines itself (OIDC Core §5.4).
pub const IDENTITY_SCOPES: [&str; 3] = [OPENID, "profile", "email"];
/// How long an ID token is valid, in seconds; a retired signing key stays published this long.
pub const ID_TOKEN_LIFETIME: i64 = 3600;
/// The claims an ID token or userinfo may carry (OIDC Discovery `claims_supported`).
pub const CLAIMS_SUPPORTED: [&str; 13] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "azp",
    "name",
    "preferred_username",
    "email",
    "email_verified",
];

/// The `prompt` parameter (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    /// `none`: no page may be shown; an error goes back to the client instead.
    pub none: bool,
    /// `login`: the person signs in again even with a live session.
    pub login: bool,
    /// `consent`: the consent page is shown even if consent was given before.
    pub consent: bool,
}

impl Prompt {
    /// Parses a space-separated list; `none` with any other value is `invalid_request`, and
    /// `select_account` is accepted as a no-op since a browser has one session here.
    pub fn parse(value: Option<&str>) -> Result<Self, OAuthError> {
        let mut prompt = Self::default();
        let Some(value) = value else {
            return Ok(prompt);
        };
        for word in value.split(' ').filter(|w| !w.is_empty()) {
            match word {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                "consent" => prompt.consent = true,
                "select_account" => {}
                _ => return Err(OAuthError::invalid_request("unknown prompt value")),
            }
        }
        if prompt.none && (prompt.login || prompt.consent) {
            return Err(OAuthError::invalid_request(
                "prompt=none cannot be combined with other values",
            ));
        }
        Ok(prompt)
    }
}

/// Parses `max_age`: a non-negative number of seconds.
pub fn parse_max_age(value: Option<&str>) -> Result<Option<i64>, OAuthError> {
    value
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0 && v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| OAuthError::invalid_request("max_age must be a number of seconds"))
        })
        .transpose()
}

/// The OpenID Connect parameters of an authorization request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidcParams {
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub nonce: Option<String>,
}

/// Whether a signed-in person must sign in again before a code is issued: `prompt=login`, or
/// a sign-in older than `max_age` (OIDC Core §3.1.2.1). `signed_in_at` is `None` when it is
/// not known, which no `max_age` accepts.
pub fn sign_in_needed(params: &OidcParams, signed_in_at: Option<UnixTime>, now: UnixTime) -> bool {
    let too_old = params
        .max_age
        .is_some_and(|max| signed_in_at.is_none_or(|at| now.seconds_since(at) > max));
    params.prompt.login || too_old
}

/// The claims about a person an ID token or userinfo may carry, from the stored profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
}

/// The standard claims `scope` allows (OIDC Core §5.4): `profile` gives `name` and
/// `preferred_username`, `email` gives `email` and `email_verified`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScopedClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

impl ScopedClaims {
    pub fn for_scope(scope: &Scope, username: &str, profile: &Profile) -> Self {
        let mut claims = Self::default();
        if scope.contains("profile") {
            claims.name = profile.name.clone();
            claims.preferred_username = Some(username.to_owned());
        }
        if scope.contains("email")
            && let Some(email) = &profile.email
        {
            claims.email = Some(email.clone());
            claims.email_verified = Some(profile.email_verified);
        }
        claims
    }
}

/// The userinfo answer (OIDC Core §5.3.2): `sub` and what the token's scope allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub sub: String,
    #[serde(flatten)]
    pub claims: ScopedClaims,
}

/// An ID token's claims (OIDC Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub at_hash: String,
    pub azp: String,
    #[serde(flatten)]
    pub claims: ScopedClaims,
}

/// What an ID token is about, gathered by the code exchange.
#[derive(Debug, Clone)]
pub struct IdTokenSubject<'a> {
    pub issuer: &'a str,
    pub user_id: &'a str,
    pub username: &'a str,
    pub client_id: &'a str,
    pub scope: &'a Scope,
    pub nonce: Option<&'a str>,
    pub auth_time: UnixTime,
    pub access_token: &'a str,
    pub profile: &'a Profile,
}

impl IdTokenClaims {
    pub fn new(subject: &IdTokenSubject<'_>, now: UnixTime) -> Self {
        Self {
            iss: subject.issuer.to_owned(),
            sub: subject.user_id.to_owned(),
            aud: subject.client_id.to_owned(),
            exp: now.saturating_add(ID_TOKEN_LIFETIME).as_secs(),
            iat: now.as_secs(),
            auth_time: subject.auth_time.as_secs(),
            nonce: subject.nonce.map(str::to_owned),
            at_hash: at_hash(subject.access_token),
            azp: subject.client_id.to_owned(),
            claims: ScopedClaims::for_scope(subject.scope, subject.username, subject.profile),
        }
    }
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the access token's SHA-256, base64url.
/// ES256 and RS256 both hash with SHA-256.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
}

/// An RP-initiated logout request (OpenID Connect RP-Initiated Logout 1.0 §2), from the query
/// of a GET or the body of a POST.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

impl EndSessionRequest {
    pub fn parse(params: &FormParams) -> Self {
        let get = |name| params.get(name).map(str::to_owned);
        Self {
            id_token_hint: get("id_token_hint"),
            client_id: get("client_id"),
            post_logout_redirect_uri: get("post_logout_redirect_uri"),
            state: get("state"),
        }
    }

    /// The parameters again, for the confirmation form to re-send.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        [
            ("id_token_hint", &self.id_token_hint),
            ("client_id", &self.client_id),
            ("post_logout_redirect_uri", &self.post_logout_redirect_uri),
            ("state", &self.state),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

/// The client a logout request is for: `client_id`, the hint's audience, or both if they
/// agree (§2: they must).
pub fn end_session_client<'a>(
    request: &'a EndSessionRequest,
    hint_audience: Option<&'a str>,
) -> Result<Option<&'a str>, &'static str> {
    match (request.client_id.as_deref(), hint_audience) {
        (Some(a), Some(b)) if a != b => Err("client_id does not match the id_token_hint"),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Where the browser goes after signing out: the `post_logout_redirect_uri` if the client
/// registered exactly it (§3), with `state` appended; `None` if none was asked for.
pub fn post_logout_redirect(
    request: &EndSessionRequest,
    registered: &[String],
) -> Result<Option<String>, &'static str> {
    let Some(uri) = &request.post_logout_redirect_uri else {
        return Ok(None);
    };
    if !registered.iter().any(|r| r == uri) {
        return Err("the post_logout_redirect_uri is not registered for this client");
    }
    let Some(state) = &request.state else {
        return Ok(Some(uri.clone()));
    };
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("state", state)
        .finish();
    let separator = if uri.contains('?') { '&' } else { '?' };
    Ok(Some(format!("{uri}{separator}{query}")))
}

/// Post-logout redirect URIs as a client registers them: each held to the rules of redirect
/// URIs (RFC 6749 §3.1.2, `client::RedirectUri`), kept as given, since matching is exact.
pub fn post_logout_redirect_uris(
    uris: &[String],
    allow_insecure_http: bool,
) -> Result<Vec<String>, String> {
    uris.iter()
        .map(|uri| {
            crate::client::RedirectUri::parse_allowing(uri, allow_insecure_http)
                .map(|_| uri.clone())
                .map_err(|e| format!("post_logout_redirect_uri: {e}"))
        })
        .collect()
}

/// The JWS algorithms an ID token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Es256,
    Rs256,
}

impl SigningAlg {
    /// ES256 first: the default, as the discovery document lists it.
    pub const ALL: [Self; 2] = [Self::Es256, Self::Rs256];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The 32-byte key that encrypts signing keys at rest. Its `Debug` prints nothing of it.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key-encryption key is 32 bytes in base64url without padding (43 characters)")]
pub struct InvalidKeyEncryptionKey;

impl KeyEncryptionKey {
    /// Parses the base64url text, ignoring surrounding whitespace (a file's final newline).
    pub fn parse(text: &str) -> Result<Self, InvalidKeyEncryptionKey> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| InvalidKeyEncryptionKey)?;
        Ok(Self(bytes.try_into().map_err(|_| InvalidKeyEncryptionKey)?))
    }

    /// A fresh random key and its text.
    pub fn generate() -> Result<(Self, String), getrandom::Error> {
        let bytes = crate::random::random_bytes::<32>()?;
        Ok((Self(bytes), URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert_eq!(Prompt::parse(None).unwrap(), Prompt::default());
        assert!(Prompt::parse(Some("none")).unwrap().none);
        let p = Prompt::parse(Some("login consent")).unwrap();
        assert!(p.login && p.consent && !p.none);
        assert!(Prompt::parse(Some("none login")).is_err());
        assert!(Prompt::parse(Some("bogus")).is_err());
    }

    #[test]
    fn max_age_values() {
        assert_eq!(parse_max_age(None).unwrap(), None);
        assert_eq!(parse_max_age(Some("0")).unwrap(), Some(0));
        assert_eq!(parse_max_age(Some("300")).unwrap(), Some(300));
        for bad in ["-1", "+3", "x", "1.5"] {
            assert!(parse_max_age(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sign_in_is_needed_again_for_login_and_past_max_age() {
        let now = UnixTime::from_secs(1000);
        let plain = OidcParams::default();
        assert!(!sign_in_needed(&plain, None, now));
        assert!(!sign_in_needed(&plain, Some(UnixTime::from_secs(1)), now));
        let login = OidcParams {
            prompt: Prompt::parse(Some("login")).unwrap(),
            ..OidcParams::default()
        };
        assert!(sign_in_needed(&login, Some(UnixTime::from_secs(999)), now));
        let max_age = OidcParams {
            max_age: Some(60),
            ..OidcParams::default()
        };
        assert!(!sign_in_needed(
            &max_age,
            Some(UnixTime::from_secs(940)),
            now
        ));
        assert!(sign_in_needed(
            &max_age,
            Some(UnixTime::from_secs(939)),
            now
        ));
        assert!(sign_in_needed(&max_age, None, now));
    }

    #[test]
    fn claims_follow_the_scope() {
        let profile = Profile {
            name: Some("Alice Liddell".into()),
            email: Some("alice@example.com".into()),
            email_verified: true,
        };
        let none = ScopedClaims::for_scope(&Scope::parse("openid").unwrap(), "alice", &profile);
        assert_eq!(none, ScopedClaims::default());
        let all = ScopedClaims::for_scope(
            &Scope::parse("openid profile email").unwrap(),
            "alice",
            &profile,
        );
        assert_eq!(all.name.as_deref(), Some("Alice Liddell"));
        assert_eq!(all.preferred_username.as_deref(), Some("alice"));
        assert_eq!(all.email.as_deref(), Some("alice@example.com"));
        assert_eq!(all.email_verified, Some(true));
    }

    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        // OIDC Core's example in appendix A.3 uses this access token and at_hash.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
    }

    #[test]
    fn id_token_claims() {
        let scope = Scope::parse("openid").unwrap();
        let profile = Profile::default();
        let claims = IdTokenClaims::new(
            &IdTokenSubject {
                issuer: "https://as.example",
                user_id: "u1",
                username: "alice",
                client_id: "app",
                scope: &scope,
                nonce: Some("n-0S6"),
                auth_time: UnixTime::from_secs(90),
                access_token: "tsa_x",
                profile: &profile,
            },
            UnixTime::from_secs(100),
        );
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(json["sub"], "u1");
        assert_eq!(json["aud"], "app");
        assert_eq!(json["azp"], "app");
        assert_eq!(json["exp"], 100 + ID_TOKEN_LIFETIME);
        assert_eq!(json["auth_time"], 90);
        assert_eq!(json["nonce"], "n-0S6");
        assert!(json.get("name").is_none());
    }

    #[test]
    fn logout_redirects_only_to_a_registered_uri_with_state() {
        let registered = vec!["https://rp.example/bye".to_owned()];
        let mut request = EndSessionRequest {
            post_logout_redirect_uri: Some("https://rp.example/bye".into()),
            state: Some("a b".into()),
            ..Default::default()
        };
        assert_eq!(
            post_logout_redirect(&request, &registered)
                .unwrap()
                .as_deref(),
            Some("https://rp.example/bye?state=a+b")
        );
        request.post_logout_redirect_uri = Some("https://rp.example/bye/".into());
        assert!(post_logout_redirect(&request, &registered).is_err());
        request.post_logout_redirect_uri = None;
        assert_eq!(post_logout_redirect(&request, &registered).unwrap(), None);
        request.client_id = Some("a".into());
        assert_eq!(end_session_client(&request, Some("a")).unwrap(), Some("a"));
        assert!(end_session_client(&request, Some("b")).is_err());
        request.client_id = None;
        assert_eq!(end_session_client(&request, Some("b")).unwrap(), Some("b"));
    }

    #[test]
    fn key_encryption_keys() {
        let (kek, text) = KeyEncryptionKey::generate().unwrap();
        assert_eq!(text.len(), 43);
        assert_eq!(
            KeyEncryptionKey::parse(&format!("{text}\n"))
                .unwrap()
                .expose(),
            kek.expose()
        );
        assert!(KeyEncryptionKey::parse("c2hvcnQ").is_err());
        assert!(!format!("{kek:?}").contains(&text));
    }
}
