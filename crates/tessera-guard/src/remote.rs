//! [`RemoteIntrospection`]: validate tokens by asking an RFC 7662 introspection endpoint,
//! with a bounded, hashed-key cache.
//!
//! The cache trades freshness for load: a revoked token stays accepted for at most the
//! configured TTL on this resource server. Positive answers live at most
//! `min(cache_ttl, exp - now)`, negative answers at most `negative_ttl`, and errors are never
//! cached (so an outage ends as soon as the server answers again). Concurrent requests for the
//! same uncached token share one introspection call. Keys are SHA-256 of the token: the cache
//! never holds a usable token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tessera_core::clock::{Clock, UnixTime};
use tessera_core::scope::Scope;
use tessera_core::token::{Standing, TokenUse};
use url::form_urlencoded::byte_serialize;

use crate::info::TokenInfo;
use crate::validator::{TokenValidator, ValidationError};

/// Settings of a [`RemoteIntrospection`].
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    pub introspection_endpoint: String,
    /// The resource server's own client credentials at the authorization server.
    pub client_id: String,
    pub client_secret: String,
    /// Longest time an answer is reused. Zero turns the cache off: every request introspects.
    pub cache_ttl: Duration,
    /// Longest time an "inactive" answer is reused.
    pub negative_ttl: Duration,
    /// Bound on cached answers.
    pub max_entries: u64,
    /// Bound on one introspection call, connection included.
    pub timeout: Duration,
    /// The clock `exp` is compared with.
    pub clock: Clock,
}

impl RemoteConfig {
    /// Defaults: 60 s cache, 5 s negative cache, 100,000 entries, 5 s timeout.
    pub fn new(
        introspection_endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        Self {
            introspection_endpoint: introspection_endpoint.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            cache_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            max_entries: 100_000,
            timeout: Duration::from_secs(5),
            clock: Clock::system(),
        }
    }
}

/// A [`TokenValidator`] that asks an introspection endpoint. Cheap to clone.
#[derive(Clone)]
pub struct RemoteIntrospection {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: RemoteConfig,
    basic: String,
    cache: Option<Cache<[u8; 32], Cached>>,
    calls: AtomicU64,
}

#[derive(Clone)]
struct Cached {
    info: Option<TokenInfo>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<[u8; 32], Cached> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl RemoteIntrospection {
    pub fn new(config: RemoteConfig) -> Result<Self, ValidationError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ValidationError::Other(e.to_string()))?;
        // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Basic encoding.
        let user = form_encode(&config.client_id);
        let pass = form_encode(&config.client_secret);
        let basic = format!("Basic {}", STANDARD.encode(format!("{user}:{pass}")));
        let cache = (!config.cache_ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(config.max_entries)
                .expire_after(PerEntryTtl)
                .build()
        });
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                basic,
                cache,
                calls: AtomicU64::new(0),
            }),
        })
    }

    /// Finds the introspection endpoint by RFC 8414 discovery from `issuer`, then builds the
    /// validator with `config` (whose `introspection_endpoint` is replaced).
    pub async fn discover(issuer: &str, mut config: RemoteConfig) -> Result<Self, ValidationError> {
        let issuer = issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/oauth-authorization-server");
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ValidationError::Other(e.to_string()))?;
        let response = http
            .get(&url)
            .send()
            .await
            .map_err(|e| ValidationError::Unreachable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ValidationError::BadStatus(response.status().as_u16()));
        }
        #[derive(Deserialize)]
        struct Metadata {
            issuer: String,
            introspection_endpoint: Option<String>,
        }
        let metadata: Metadata = response
            .json()
            .await
            .map_err(|e| ValidationError::Malformed(e.to_string()))?;
        // RFC 8414 §3.3: the document must name the issuer it was fetched for.
        if metadata.issuer.trim_end_matches('/') != issuer {
            return Err(ValidationError::Malformed(format!(
                "metadata names issuer {} instead of {issuer}",
                metadata.issuer
            )));
        }
        config.introspection_endpoint = metadata.introspection_endpoint.ok_or_else(|| {
            ValidationError::Malformed("the server advertises no introspection_endpoint".into())
        })?;
        Self::new(config)
    }

    /// How many introspection requests this validator has sent (cache misses).
    pub fn introspection_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, ValidationError> {
        let inner = &self.inner;
        inner.calls.fetch_add(1, Ordering::Relaxed);
        let response = inner
            .http
            .post(&inner.config.introspection_endpoint)
            .header(http::header::AUTHORIZATION, &inner.basic)
            .header(http::header::ACCEPT, "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(|e| ValidationError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ValidationError::BadStatus(status));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ValidationError::Unreachable(e.to_string()))?;
        parse_introspection(&body, inner.config.clock.now())
    }

    fn ttl_for(&self, info: &Option<TokenInfo>) -> Duration {
        let config = &self.inner.config;
        match info {
            None => config.negative_ttl.min(config.cache_ttl),
            Some(info) => {
                let until_exp = info.expires_at.map(|exp| {
                    Duration::from_secs(
                        u64::try_from(exp.seconds_since(config.clock.now())).unwrap_or(0),
                    )
                });
                until_exp.map_or(config.cache_ttl, |d| d.min(config.cache_ttl))
            }
        }
    }
}

#[async_trait]
impl TokenValidator for RemoteIntrospection {
    async fn validate(&self, token: &str) -> Result<Option<TokenInfo>, ValidationError> {
        let Some(cache) = &self.inner.cache else {
            return self.introspect(token).await;
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = cache
            .try_get_with(key, async {
                let info = self.introspect(token).await?;
                let ttl = self.ttl_for(&info);
                Ok::<_, ValidationError>(Cached { info, ttl })
            })
            .await
            .map_err(|e| (*e).clone())?;
        // An entry may outlive `exp` by up to a second of clock granularity; check again.
        Ok(cached
            .info
            .filter(|i| still_valid(i, self.inner.config.clock.now())))
    }
}

fn still_valid(info: &TokenInfo, now: UnixTime) -> bool {
    info.expires_at.is_none_or(|exp| now < exp)
}

/// Form-urlencodes a credential, writing a space as `%20` rather than `+`: both decode to a
/// space in a form decoder, but servers that decode Basic credentials with a plain
/// percent-decoder (Authlib uses `urllib.parse.unquote`) read only `%20` as one.
fn form_encode(s: &str) -> String {
    // `byte_serialize` escapes a literal `+` as `%2B`, so every `+` it emits is a space.
    byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// An RFC 7662 response, leniently typed: servers differ in which optional fields they send.
#[derive(Deserialize)]
struct Wire {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    sub: Option<String>,
    exp: Option<serde_json::Number>,
    iat: Option<serde_json::Number>,
    nbf: Option<serde_json::Number>,
    token_type: Option<String>,
    /// Ory Hydra's and Tessera's extension: `access_token` or `refresh_token`.
    token_use: Option<String>,
    /// A value of any other type makes the whole body malformed, so the request gets a 503:
    /// the server does not speak RFC 7662, and reading it as "no audience" would turn its
    /// fault into a 401 that sends the client to fetch a new token for nothing (or, on an
    /// unbound guard, silently accept what it failed to say).
    aud: Option<WireAudience>,
}

/// `aud` as RFC 7662 §2.2 defines it (after JWT, RFC 7519 §4.1.3): one string or an array.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireAudience {
    One(String),
    Many(Vec<String>),
}

fn seconds(n: &Option<serde_json::Number>) -> Option<UnixTime> {
    n.as_ref()
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .map(UnixTime::from_secs)
}

/// Interprets an introspection response body at `now`. Anything that is not clearly an active
/// access token is `Ok(None)`; a body that is not an introspection response is an error.
pub fn parse_introspection(
    body: &[u8],
    now: UnixTime,
) -> Result<Option<TokenInfo>, ValidationError> {
    let wire: Wire =
        serde_json::from_slice(body).map_err(|e| ValidationError::Malformed(e.to_string()))?;
    let other_use = wire
        .token_use
        .as_deref()
        .is_some_and(|u| u != "access_token");
    let other_type = wire
        .token_type
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("bearer") && t != "access_token");
    let token_use = match (other_use || other_type, &wire.token_use) {
        (true, _) => TokenUse::Other,
        (false, Some(_)) => TokenUse::Access,
        (false, None) => TokenUse::Unstated,
    };
    let expires_at = seconds(&wire.exp);
    let standing = Standing {
        token_use,
        live: wire.active,
        expires_at,
        not_before: seconds(&wire.nbf),
    };
    if !standing.is_active_access_token(now) {
        return Ok(None);
    }
    let scope = wire
        .scope
        .as_deref()
        .and_then(|s| Scope::parse(s).ok())
        .unwrap_or_default();
    Ok(Some(TokenInfo {
        subject: wire.sub,
        username: wire.username,
        client_id: wire.client_id,
        scope,
        expires_at,
        issued_at: seconds(&wire.iat),
        audience: match wire.aud {
            None => Vec::new(),
            Some(WireAudience::One(aud)) => vec![aud],
            Some(WireAudience::Many(aud)) => aud,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_encode_spaces_for_every_decoder() {
        assert_eq!(form_encode("rs secret"), "rs%20secret");
        assert_eq!(form_encode("a+b:c/%"), "a%2Bb%3Ac%2F%25");
    }

    #[test]
    fn interprets_introspection_answers() {
        let now = UnixTime::from_secs(1000);
        let active = br#"{"active":true,"scope":"api read","sub":"u1","username":"alice","client_id":"c","exp":2000,"iat":900,"token_type":"Bearer"}"#;
        let info = parse_introspection(active, now).unwrap().unwrap();
        assert!(info.scope.contains("api") && info.scope.contains("read"));
        assert_eq!(info.username.as_deref(), Some("alice"));
        for inactive in [
            &br#"{"active":false}"#[..],
            br#"{"active":true,"exp":1000}"#,
            br#"{"active":true,"nbf":1001}"#,
            br#"{"active":true,"token_use":"refresh_token"}"#,
            br#"{"active":true,"token_type":"refresh_token"}"#,
        ] {
            assert_eq!(parse_introspection(inactive, now).unwrap(), None);
        }
        assert!(
            parse_introspection(br#"{"active":true,"exp":1500.5}"#, now)
                .unwrap()
                .is_some()
        );
        for malformed in [&b""[..], b"{}", b"[]", br#"{"active":"yes"}"#, b"<html>"] {
            assert!(parse_introspection(malformed, now).is_err());
        }
    }

    #[test]
    fn reads_aud_as_a_string_or_an_array_of_strings() {
        let now = UnixTime::from_secs(1000);
        let audience = |body: &str| {
            parse_introspection(body.as_bytes(), now).map(|info| info.map(|i| i.audience))
        };
        assert_eq!(
            audience(r#"{"active":true,"aud":"http://127.0.0.1:5001"}"#).unwrap(),
            Some(vec!["http://127.0.0.1:5001".to_owned()])
        );
        assert_eq!(
            audience(r#"{"active":true,"aud":["https://a.example/","https://b.example/"]}"#)
                .unwrap(),
            Some(vec![
                "https://a.example/".to_owned(),
                "https://b.example/".to_owned()
            ])
        );
        for none in [
            r#"{"active":true}"#,
            r#"{"active":true,"aud":null}"#,
            r#"{"active":true,"aud":[]}"#,
        ] {
            assert_eq!(audience(none).unwrap(), Some(Vec::new()), "{none}");
        }
        for wrong in [
            r#"{"active":true,"aud":42}"#,
            r#"{"active":true,"aud":{"uri":"https://a.example/"}}"#,
            r#"{"active":true,"aud":["https://a.example/",7]}"#,
        ] {
            assert!(
                matches!(audience(wrong), Err(ValidationError::Malformed(_))),
                "{wrong}"
            );
        }
    }
}
