//! The resource-server guard against a running Tessera: RFC 6750 answers, the cache, single
//! flight, revocation in both modes, and failing closed when introspection cannot answer.

use std::time::Duration;

use tessera_guard::{Guard, RemoteConfig, RemoteIntrospection};
use tessera_server::local_guard::LocalValidator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, TestClient, serve_api, spawn_app, start_app};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url};

fn remote(app: &TestApp, rs: &TestClient, cache_ttl: Duration) -> RemoteIntrospection {
    let mut config = RemoteConfig::new(app.url("/introspect"), &rs.id, rs.secret());
    config.cache_ttl = cache_ttl;
    config.clock = app.clock.clone();
    config.timeout = Duration::from_millis(800);
    RemoteIntrospection::new(config).unwrap()
}

async fn call(api: &str, path: &str, authorization: Option<&str>) -> Reply {
    let mut req = reqwest::Client::new().get(format!("{api}{path}"));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// A user token with scope `api` from the code flow, and its refresh token.
async fn user_tokens(app: &TestApp) -> (String, String) {
    const CALLBACK: &str = "http://127.0.0.1:5000/authorize";
    app.user("alice", PASSWORD).await;
    let web = app.web_client(CALLBACK, "api restricted").await;
    let url = authorize_url(app, &web.id, CALLBACK, &[("scope", "api")]);
    let code = Person::new(app).authorize(&url, "alice").await["code"].clone();
    let reply = app
        .post_basic(
            "/token",
            &web,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    let token = |k: &str| reply.body[k].as_str().unwrap().to_owned();
    (token("access_token"), token("refresh_token"))
}

both_backends!(
    rfc_6750_answers_in_remote_and_local_mode,
    revocation_is_immediate_locally_and_bounded_remotely
);

async fn rfc_6750_answers_in_remote_and_local_mode(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (rs, _) = app.resource_server("api restricted read").await;
    let (user_token, refresh_token) = user_tokens(&app).await;
    let machine_token = app
        .access_token(&app.m2m_client("restricted").await, None)
        .await;
    let expiring = app.access_token(&app.m2m_client("api").await, None).await;
    let revoked_owner = app.m2m_client("api").await;
    let revoked = app.access_token(&revoked_owner, None).await;
    app.post_basic("/revoke", &revoked_owner, &[("token", &revoked)])
        .await;

    let realm = "Bearer realm=\"demo\"";
    let invalid = "Bearer realm=\"demo\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"";
    let malformed = "Bearer realm=\"demo\", error=\"invalid_request\", error_description=\"malformed Authorization header\"";
    let bearer = |t: &str| format!("Bearer {t}");
    let local = Guard::new(
        LocalValidator::new(app.store.clone(), app.clock.clone()),
        "demo",
    );
    let remote_guard = Guard::new(remote(&app, &rs, Duration::ZERO), "demo");
    for (mode, guard) in [("local", local), ("remote", remote_guard)] {
        let api = serve_api(&guard).await;
        // (case, path, Authorization header, status, WWW-Authenticate)
        type Case<'a> = (&'a str, &'a str, Option<String>, u16, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("no token", "/api/data", None, 401, Some(realm)),
            (
                "basic scheme",
                "/api/data",
                Some("Basic YTpi".into()),
                401,
                Some(realm),
            ),
            (
                "empty bearer",
                "/api/data",
                Some("Bearer ".into()),
                400,
                Some(malformed),
            ),
            (
                "two words",
                "/api/data",
                Some("Bearer a b".into()),
                400,
                Some(malformed),
            ),
            (
                "bad characters",
                "/api/data",
                Some("Bearer a\"b".into()),
                400,
                Some(malformed),
            ),
            (
                "unknown token",
                "/api/data",
                Some(bearer("tsa_unknown")),
                401,
                Some(invalid),
            ),
            (
                "revoked token",
                "/api/data",
                Some(bearer(&revoked)),
                401,
                Some(invalid),
            ),
            (
                "refresh token as bearer",
                "/api/data",
                Some(bearer(&refresh_token)),
                401,
                Some(invalid),
            ),
            (
                "user token with api",
                "/api/data",
                Some(bearer(&user_token)),
                200,
                None,
            ),
            (
                "user token without restricted",
                "/api/restricted",
                Some(bearer(&user_token)),
                403,
                Some("Bearer realm=\"demo\", error=\"insufficient_scope\", scope=\"restricted\""),
            ),
            (
                "machine token with restricted",
                "/api/restricted",
                Some(bearer(&machine_token)),
                200,
                None,
            ),
        ];
        for (name, path, auth, status, challenge) in cases {
            let reply = call(&api, path, auth.as_deref()).await;
            assert_eq!(reply.status, status, "{mode}: {name}: {:?}", reply.body);
            assert_eq!(
                reply.header("www-authenticate"),
                challenge,
                "{mode}: {name}"
            );
            if status != 200 {
                assert_eq!(
                    reply.header("cache-control"),
                    Some("no-store"),
                    "{mode}: {name}"
                );
            }
        }
        let ok = call(&api, "/api/data", Some(&bearer(&user_token))).await;
        assert_eq!(ok.body["caller"], "alice", "{mode}");
        assert_eq!(ok.body["scope"], "api", "{mode}");
        // A token in the query string is not a bearer credential (RFC 6750 §2.3 is not offered).
        let query = call(&api, &format!("/api/data?access_token={user_token}"), None).await;
        assert_eq!(query.status, 401, "{mode}");
    }
    // Expiry follows the authorization server's clock.
    app.clock.advance(3600);
    let api = serve_api(&Guard::new(remote(&app, &rs, Duration::ZERO), "demo")).await;
    assert_eq!(
        call(&api, "/api/data", Some(&bearer(&expiring)))
            .await
            .status,
        401
    );
}

async fn revocation_is_immediate_locally_and_bounded_remotely(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (rs, _) = app.resource_server("api restricted read").await;
    let owner = app.m2m_client("api").await;
    let token = app.access_token(&owner, None).await;
    let auth = format!("Bearer {token}");
    let local_api = serve_api(&Guard::new(
        LocalValidator::new(app.store.clone(), app.clock.clone()),
        "demo",
    ))
    .await;
    let cached = remote(&app, &rs, Duration::from_secs(600));
    let cached_api = serve_api(&Guard::new(cached.clone(), "demo")).await;
    let uncached_api = serve_api(&Guard::new(remote(&app, &rs, Duration::ZERO), "demo")).await;
    for api in [&local_api, &cached_api, &uncached_api] {
        assert_eq!(call(api, "/api/data", Some(&auth)).await.status, 200);
    }
    app.post_basic("/revoke", &owner, &[("token", &token)])
        .await;
    assert_eq!(
        call(&local_api, "/api/data", Some(&auth)).await.status,
        401,
        "local: at once"
    );
    assert_eq!(
        call(&uncached_api, "/api/data", Some(&auth)).await.status,
        401,
        "no cache: at once"
    );
    // The documented trade-off: a cached answer is reused until its TTL ends.
    assert_eq!(
        call(&cached_api, "/api/data", Some(&auth)).await.status,
        200,
        "cached: until the TTL"
    );
    assert_eq!(cached.introspection_calls(), 1);
}

#[tokio::test]
async fn cache_hits_expiry_negative_entries_and_single_flight() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (rs, _) = app.resource_server("api restricted read").await;
    let owner = app.m2m_client("api").await;
    let validator = remote(&app, &rs, Duration::from_millis(700));
    let api = serve_api(&Guard::new(validator.clone(), "demo")).await;

    // Single flight: a burst for one uncached token makes one introspection call.
    let token = app.access_token(&owner, None).await;
    let auth = format!("Bearer {token}");
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let (api, auth) = (api.clone(), auth.clone());
            async move { call(&api, "/api/data", Some(&auth)).await }
        })
        .collect();
    for reply in futures_join_all(burst).await {
        assert_eq!(reply.status, 200);
    }
    assert_eq!(
        validator.introspection_calls(),
        1,
        "one call for 32 concurrent requests"
    );
    // Hits.
    for _ in 0..5 {
        assert_eq!(call(&api, "/api/data", Some(&auth)).await.status, 200);
    }
    assert_eq!(validator.introspection_calls(), 1);
    // Negative entries: an unknown token is asked about once, then remembered briefly.
    for _ in 0..3 {
        assert_eq!(
            call(&api, "/api/data", Some("Bearer tsa_nope"))
                .await
                .status,
            401
        );
    }
    assert_eq!(validator.introspection_calls(), 2);
    // Expiry: after the TTL the server is asked again.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(call(&api, "/api/data", Some(&auth)).await.status, 200);
    assert_eq!(validator.introspection_calls(), 3);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: Vec<F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn an_introspection_outage_is_a_503_and_recovers_by_itself() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (rs, _) = app.resource_server("api restricted read").await;
    let owner = app.m2m_client("api").await;
    let token = app.access_token(&owner, None).await;
    let auth = format!("Bearer {token}");
    let validator = remote(&app, &rs, Duration::from_secs(60));
    let api = serve_api(&Guard::new(validator, "demo")).await;

    let (addr, database_url, clock) = (app.addr, app.database_url.clone(), app.clock.clone());
    drop(app); // The authorization server goes away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = call(&api, "/api/data", Some(&auth)).await;
    assert_eq!(down.status, 503, "{:?}", down.body);
    assert_eq!(down.body["error"], "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("5"));

    // It comes back on the same address; the guard recovers without a restart (errors are
    // never cached).
    let _back = start_app(&database_url, clock, |c| c.listen = addr).await;
    assert_eq!(call(&api, "/api/data", Some(&auth)).await.status, 200);
}

/// A TCP peer that accepts connections and then misbehaves in a fixed way.
async fn misbehaving_peer(answer: Option<&'static [u8]>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            match answer {
                Some(bytes) => {
                    let _ = socket.write_all(bytes).await;
                }
                // Never answer: hold the connection open until the test ends.
                None => held.push(socket),
            }
        }
    });
    url
}

#[tokio::test]
async fn slow_or_malformed_introspection_fails_closed_with_503() {
    let peers = [
        ("never answers", misbehaving_peer(None).await),
        (
            "500",
            misbehaving_peer(Some(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")).await,
        ),
        (
            "not JSON",
            misbehaving_peer(Some(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 6\r\n\r\n<html>")).await,
        ),
        (
            "no active member",
            misbehaving_peer(Some(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")).await,
        ),
        ("nothing listening", "http://127.0.0.1:9/introspect".to_owned()),
    ];
    for (name, url) in peers {
        let mut config = RemoteConfig::new(url, "rs", "secret");
        config.timeout = Duration::from_millis(500);
        let api = serve_api(&Guard::new(
            RemoteIntrospection::new(config).unwrap(),
            "demo",
        ))
        .await;
        let started = std::time::Instant::now();
        let reply = call(&api, "/api/data", Some("Bearer tsa_anything")).await;
        assert_eq!(reply.status, 503, "{name}: {:?}", reply.body);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: bounded by the timeout"
        );
    }
}

#[tokio::test]
async fn discovery_finds_the_introspection_endpoint() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let (rs, _) = app.resource_server("api restricted read").await;
    let owner = app.m2m_client("api").await;
    let token = app.access_token(&owner, None).await;
    let mut config = RemoteConfig::new("", &rs.id, rs.secret());
    config.clock = app.clock.clone();
    let validator = RemoteIntrospection::discover(&app.base, config.clone())
        .await
        .unwrap();
    let api = serve_api(&Guard::new(validator, "demo")).await;
    assert_eq!(
        call(&api, "/api/data", Some(&format!("Bearer {token}")))
            .await
            .status,
        200
    );
    // A document naming another issuer is refused (RFC 8414 §3.3).
    let wrong = format!("http://localhost:{}", app.addr.port());
    assert!(RemoteIntrospection::discover(&wrong, config).await.is_err());
}
