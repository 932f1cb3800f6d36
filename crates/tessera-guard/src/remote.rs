//! [`RemoteIntrospection`]: validate tokens by asking an RFC 7662 introspection endpoint,
//! with a bounded, hashed-key cache.
//!
//! The cache trades freshness for load: a revoked token stays accepted for at most the
//! configured TTL on this resource server. Positive answers live at most
//! `min(cache_ttl, exp - now)`, negative answers at most `negative_ttl`, and errors are never
//! cached (so an outage ends as soon as the server answers again). Concurrent requests for the
//! same uncached token share one introspection call. Keys are the token's store key (its SHA-256): the
//! cache never holds a usable token.
//!
//! Subscribed to the server's revocation stream (see `revocations.rs`), the cache can keep
//! answers for minutes: a revoked token is evicted when its event arrives, and while the
//! stream is down every answer is capped at a short fallback TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tessera_core::clock::{Clock, UnixTime};
use tessera_core::scope::Scope;
use tessera_core::token::{Standing, TokenKey, TokenUse};
use tokio::sync::watch;
use url::form_urlencoded::byte_serialize;

use crate::cache::{AnswerCache, CacheKey, Cached, Entry};
use crate::info::TokenInfo;
use crate::meters::GuardMeters;
use crate::revocations::{Admission, StreamShared, StreamStatus, Subscription};
use crate::validator::{TokenValidator, Validation, ValidationError};

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
    /// The server's revocation stream (`revocation_stream_endpoint` in its metadata), which
    /// [`RemoteIntrospection::discover`] fills in when the server advertises one.
    pub revocation_stream: Option<String>,
    /// Subscribe to the revocation stream when there is one and the cache is on.
    pub subscribe: bool,
    /// While the stream is down, the longest time a cached answer is reused.
    pub fallback_ttl: Duration,
}

impl RemoteConfig {
    /// Defaults: 60 s cache, 5 s negative cache, 100,000 entries, 5 s timeout; subscribed to
    /// the revocation stream if one is set or discovered, with a 5 s fallback TTL.
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
            revocation_stream: None,
            subscribe: true,
            fallback_ttl: Duration::from_secs(5),
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
    cache: Option<AnswerCache>,
    calls: AtomicU64,
    meters: GuardMeters,
    stream: Option<Arc<StreamShared>>,
    /// Dropped with the validator, which ends the subscription task.
    _stop_stream: Option<watch::Sender<()>>,
}

impl RemoteIntrospection {
    /// Builds the validator; with a revocation stream to subscribe to, it must be called
    /// within a tokio runtime, where the subscription task runs.
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
        let meters = GuardMeters::new(&config.client_id);
        let cache = (!config.cache_ttl.is_zero()).then(|| AnswerCache::new(config.max_entries));
        let (stream, stop) = match (&cache, &config.revocation_stream) {
            (Some(cache), Some(endpoint)) if config.subscribe => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                    ValidationError::Other(
                        "subscribing to revocations needs a tokio runtime".into(),
                    )
                })?;
                // A revoked key is remembered as long as an answer can stay cached, plus an
                // introspection's time in flight.
                let keep = config.cache_ttl + config.timeout * 2;
                let shared = Arc::new(StreamShared::new(
                    config.fallback_ttl,
                    keep,
                    config.max_entries,
                    meters.clone(),
                ));
                let (stop, stopped) = watch::channel(());
                runtime.spawn(
                    Subscription {
                        endpoint: endpoint.clone(),
                        basic: basic.clone(),
                        connect_timeout: config.timeout,
                        shared: shared.clone(),
                        cache: cache.clone(),
                        stop: stopped,
                    }
                    .run(),
                );
                (Some(shared), Some(stop))
            }
            _ => (None, None),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                basic,
                cache,
                calls: AtomicU64::new(0),
                meters,
                stream,
                _stop_stream: stop,
            }),
        })
    }

    /// The revocation stream's state, for health checks and dashboards.
    pub fn stream_status(&self) -> StreamStatus {
        self.inner
            .stream
            .as_ref()
            .map_or_else(StreamStatus::default, |s| s.status())
    }

    /// A receiver that sees every change of [`Self::stream_status`]; `None` without a stream.
    pub fn stream_status_changes(&self) -> Option<watch::Receiver<StreamStatus>> {
        self.inner.stream.as_ref().map(|s| s.watch())
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
            revocation_stream_endpoint: Option<String>,
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
        if config.revocation_stream.is_none() {
            config.revocation_stream = metadata.revocation_stream_endpoint;
        }
        Self::new(config)
    }

    /// How many introspection requests this validator has sent (cache misses).
    pub fn introspection_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// One introspection call, its latency and failure recorded.
    async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, ValidationError> {
        let started = Instant::now();
        let answer = self.introspect_once(token).await;
        let meters = &self.inner.meters;
        meters
            .introspection_seconds
            .record(started.elapsed().as_secs_f64());
        if answer.is_err() {
            meters.introspection_errors.increment(1);
        }
        answer
    }

    async fn introspect_once(&self, token: &str) -> Result<Option<TokenInfo>, ValidationError> {
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

    fn ttl_for(&self, info: &Option<Arc<TokenInfo>>) -> Duration {
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
    /// A hit of the hot table that the revocation stream admits as it is; anything else
    /// (a miss, a revoked or stale entry) is left to `validate`.
    fn validate_now(&self, token: &str) -> Option<Validation> {
        let cache = self.inner.cache.as_ref()?;
        let key: CacheKey = TokenKey::of(token).0;
        let entry = cache.hit(&key)?;
        if let Some(stream) = &self.inner.stream
            && !matches!(stream.admits(&key, &entry), Admission::Fresh)
        {
            return None;
        }
        self.inner.meters.cache_hits.increment(1);
        Some(Ok(self.answer(&entry)))
    }

    async fn validate(&self, token: &str) -> Result<Option<Arc<TokenInfo>>, ValidationError> {
        let Some(cache) = &self.inner.cache else {
            return Ok(self.introspect(token).await?.map(Arc::new));
        };
        let key: CacheKey = TokenKey::of(token).0;
        let mut cached = match cache.hit(&key) {
            Some(entry) => {
                self.inner.meters.cache_hits.increment(1);
                entry
            }
            None => self.cached(cache, key, token).await?,
        };
        if let Some(stream) = &self.inner.stream {
            match stream.admits(&key, &cached) {
                Admission::Fresh => {}
                Admission::Revoked => {
                    cache.invalidate(&key).await;
                    return Ok(None);
                }
                Admission::Stale => {
                    cache.invalidate(&key).await;
                    cached = self.cached(cache, key, token).await?;
                    if let Admission::Revoked = stream.admits(&key, &cached) {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(self.answer(&cached))
    }
}

impl RemoteIntrospection {
    /// A cached entry's answer now: an entry may outlive `exp` by up to a second of clock
    /// granularity, so `exp` is checked again.
    fn answer(&self, entry: &Entry) -> Option<Arc<TokenInfo>> {
        let now = self.inner.config.clock.now();
        entry.info.clone().filter(|i| still_valid(i, now))
    }

    async fn cached(
        &self,
        cache: &AnswerCache,
        key: CacheKey,
        token: &str,
    ) -> Result<Cached, ValidationError> {
        // Set by the one caller that fills the entry; callers that waited for it are hits.
        let missed = std::sync::atomic::AtomicBool::new(false);
        let stream = self.inner.stream.as_deref();
        let fill = async {
            missed.store(true, Ordering::Relaxed);
            let started = stream.map_or(0, |s| s.epoch());
            // A token the stream named is revoked for good: no need to ask.
            let info = if stream.is_some_and(|s| s.was_revoked(&key)) {
                None
            } else {
                self.introspect(token).await?.map(Arc::new)
            };
            let ttl = self.ttl_for(&info);
            Ok::<_, ValidationError>(Arc::new(Entry {
                info,
                ttl,
                started,
                stored_at: Instant::now(),
                settled: AtomicBool::new(false),
            }))
        };
        let answer = cache
            .get_or_fill(key, fill, |entry| {
                stream.is_none_or(|s| s.still_current(&key, entry))
            })
            .await
            .map_err(|e| (*e).clone());
        let meters = &self.inner.meters;
        if missed.load(Ordering::Relaxed) {
            meters.cache_misses.increment(1);
        } else {
            meters.cache_hits.increment(1);
        }
        answer
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
