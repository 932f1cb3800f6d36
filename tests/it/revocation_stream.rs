//! The guard subscribed to the revocation stream (issue 26): a cached token is refused as
//! soon as its revocation is answered, a guard outside the token's audience hears nothing,
//! while the stream is down cached answers last only the fallback TTL, and a guard whose node
//! dies fails over to another and replays what it missed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_guard::{RemoteConfig, RemoteIntrospection, StreamStatus, TokenValidator};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

use crate::both_backends;
use crate::cli::{Node, create_client, created};
use crate::helpers::{Backend, Reply, TestApp, TestClient, fresh_database, http_client, spawn_app};

/// How long a test waits for what should take milliseconds, so that a loaded CI machine does
/// not fail it; the lag itself is measured in `bench/run`.
const PATIENCE: Duration = Duration::from_secs(5);

async fn token_for(app: &TestApp, owner: &TestClient, resource: &str) -> String {
    let reply: Reply = app
        .post_basic(
            "/token",
            owner,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("resource", resource),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn subscribed(app: &TestApp, rs: &TestClient) -> RemoteIntrospection {
    let mut config = RemoteConfig::new("", &rs.id, rs.secret());
    config.cache_ttl = Duration::from_secs(300);
    config.clock = app.clock.clone();
    let guard = RemoteIntrospection::discover(&app.base, config)
        .await
        .unwrap();
    wait_for(&guard, |s| s.connected).await;
    guard
}

async fn wait_for(guard: &RemoteIntrospection, what: impl Fn(&StreamStatus) -> bool) {
    let mut changes = guard.stream_status_changes().expect("subscribed");
    tokio::time::timeout(PATIENCE, changes.wait_for(|s| what(s)))
        .await
        .unwrap_or_else(|_| panic!("stream status never got there: {:?}", guard.stream_status()))
        .unwrap();
}

/// Polls until the guard refuses `token`; returns how long that took.
async fn refused_after(guard: &RemoteIntrospection, token: &str) -> Duration {
    let start = Instant::now();
    while guard.validate(token).await.unwrap().is_some() {
        assert!(
            start.elapsed() < PATIENCE,
            "a revoked token is still accepted"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

both_backends!(
    a_subscribed_guard_refuses_a_revoked_token_at_once,
    while_the_stream_is_down_cached_answers_last_the_fallback_ttl
);

async fn a_subscribed_guard_refuses_a_revoked_token_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (rs, uri) = app.resource_server("api").await;
    let (other_rs, _) = app.resource_server("api").await;
    let owner = app.m2m_client("api").await;
    let mut tokens = Vec::new();
    for _ in 0..20 {
        tokens.push(token_for(&app, &owner, &uri).await);
    }
    let guard = subscribed(&app, &rs).await;
    let outsider = subscribed(&app, &other_rs).await;
    for token in &tokens {
        assert!(guard.validate(token).await.unwrap().is_some());
    }
    let calls = guard.introspection_calls();
    for token in &tokens {
        assert!(guard.validate(token).await.unwrap().is_some());
    }
    assert_eq!(guard.introspection_calls(), calls, "the answers are cached");

    let (revoked, kept) = tokens.split_at(10);
    for token in revoked {
        let answer = app.post_basic("/revoke", &owner, &[("token", token)]).await;
        assert_eq!(answer.status, 200);
        refused_after(&guard, token).await;
    }
    for token in kept {
        assert!(guard.validate(token).await.unwrap().is_some());
    }
    assert_eq!(
        guard.introspection_calls(),
        calls,
        "events evict, nothing is introspected again"
    );
    let status = guard.stream_status();
    assert!(status.connected && !status.fallback(), "{status:?}");
    assert_eq!(status.events, 10, "{status:?}");
    assert!(
        status.last_event_id.is_some() && status.last_message.is_some(),
        "{status:?}"
    );
    // The other resource server's stream carries none of these tokens' events.
    wait_for(&guard, |s| s.events == 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(outsider.stream_status().events, 0);
}

async fn while_the_stream_is_down_cached_answers_last_the_fallback_ttl(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (rs, uri) = app.resource_server("api").await;
    let owner = app.m2m_client("api").await;
    let token = token_for(&app, &owner, &uri).await;
    // A stream endpoint where nothing listens: the guard keeps trying, and caps its cache.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/revocations", closed.local_addr().unwrap());
    drop(closed);
    let mut config = RemoteConfig::new(app.url("/introspect"), &rs.id, rs.secret());
    config.cache_ttl = Duration::from_secs(300);
    config.fallback_ttl = Duration::from_millis(300);
    config.clock = app.clock.clone();
    config.revocation_stream = Some(dead);
    let guard = RemoteIntrospection::new(config).unwrap();
    wait_for(&guard, |s| s.last_error.is_some()).await;
    let status = guard.stream_status();
    assert!(
        status.subscribed && !status.connected && status.fallback(),
        "{status:?}"
    );

    assert!(guard.validate(&token).await.unwrap().is_some());
    assert!(guard.validate(&token).await.unwrap().is_some());
    assert_eq!(
        guard.introspection_calls(),
        1,
        "within the fallback TTL: cached"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(guard.validate(&token).await.unwrap().is_some());
    assert_eq!(
        guard.introspection_calls(),
        2,
        "past it: introspected again"
    );

    let answer = app
        .post_basic("/revoke", &owner, &[("token", &token)])
        .await;
    assert_eq!(answer.status, 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(guard.validate(&token).await.unwrap().is_none());
}

/// A stand-in for a load balancer: each connection goes to the first backend that accepts
/// one, so a killed node's callers land on the next.
async fn failover_proxy(backends: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut down, _)) = listener.accept().await {
            let backends = backends.lock().unwrap().clone();
            tokio::spawn(async move {
                for backend in backends {
                    if let Ok(mut up) = TcpStream::connect(&backend).await {
                        let _ = copy_bidirectional(&mut down, &mut up).await;
                        return;
                    }
                }
            });
        }
    });
    base
}

async fn resource_at(database_url: &str, uri: &str) -> TestClient {
    let args = [
        "resource", "create", "--uri", uri, "--scope", "api", "--json",
    ];
    created(database_url, &args).await
}

/// Validates until the answer is a refusal; an error (the pooled connection to a killed node)
/// counts as neither and is asked again.
async fn refused_within(guard: &RemoteIntrospection, token: &str, since: Instant, limit: Duration) {
    loop {
        if let Ok(None) = guard.validate(token).await {
            return;
        }
        assert!(
            since.elapsed() < limit,
            "a revoked token accepted past {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Issue 26's fault test: the node a guard listens to dies while revocations continue; the
/// guard reconnects to another node, replays what it missed, and accepts no revoked token
/// past the fallback TTL. A gap past the retained window makes it flush its cache.
#[tokio::test]
async fn a_guard_fails_over_to_another_node_and_misses_no_revocation() {
    let Some(url) = fresh_database(Backend::Postgres).await else {
        return;
    };
    let args = [
        "--revocation-event-retention",
        "2",
        "--janitor-interval",
        "1",
    ];
    let (a, b, c) = tokio::join!(
        Node::start_with(&url, &args),
        Node::start_with(&url, &args),
        Node::start_with(&url, &args)
    );
    let uri = "https://api.example/";
    let rs = resource_at(&url, uri).await;
    let owner = create_client(&url, "owner").await;
    let mut tokens = Vec::new();
    for _ in 0..30 {
        let answer = c
            .post(
                "/token",
                &owner,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "api"),
                    ("resource", uri),
                ],
            )
            .await;
        tokens.push(answer["access_token"].as_str().unwrap().to_owned());
    }
    let authority = |node: &Node| node.base.trim_start_matches("http://").to_owned();
    let backends = Arc::new(Mutex::new(vec![
        authority(&a),
        authority(&b),
        authority(&c),
    ]));
    let proxy = failover_proxy(backends.clone()).await;
    let metadata: Value = http_client()
        .get(format!("{}/.well-known/oauth-authorization-server", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stream = metadata["revocation_stream_endpoint"].as_str().unwrap();
    let mut config = RemoteConfig::new(format!("{proxy}/introspect"), &rs.id, rs.secret());
    config.cache_ttl = Duration::from_secs(300);
    config.fallback_ttl = Duration::from_secs(1);
    config.revocation_stream = Some(stream.replace(&a.base, &proxy));
    let guard = RemoteIntrospection::new(config).unwrap();
    wait_for(&guard, |s| s.connected).await;
    for token in &tokens {
        assert!(guard.validate(token).await.unwrap().is_some());
    }

    // The guard's node dies; revocations go on at another one.
    drop(a);
    let mut revoked = Vec::new();
    for token in &tokens[..10] {
        c.post("/revoke", &owner, &[("token", token)]).await;
        revoked.push((token.clone(), Instant::now()));
    }
    let limit = Duration::from_secs(1) + Duration::from_secs(2);
    for (token, answered) in &revoked {
        refused_within(&guard, token, *answered, limit).await;
    }
    wait_for(&guard, |s| {
        s.connected && s.events == 10 && s.connections >= 2
    })
    .await;
    for token in &tokens[10..] {
        let mut answer = guard.validate(token).await;
        if answer.is_err() {
            answer = guard.validate(token).await;
        }
        assert!(answer.unwrap().is_some(), "a live token is refused");
    }

    // Cut off for longer than the window is kept: on its return the guard flushes.
    let resets = guard.stream_status().resets;
    backends.lock().unwrap().clear();
    drop(b);
    wait_for(&guard, |s| !s.connected).await;
    for token in &tokens[10..13] {
        c.post("/revoke", &owner, &[("token", token)]).await;
    }
    // Retention 2 s, the janitor every second: these events are purged by then.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    backends.lock().unwrap().push(authority(&c));
    wait_for(&guard, |s| s.connected && s.resets > resets).await;
    for token in &tokens[10..13] {
        refused_within(&guard, token, Instant::now(), limit).await;
    }
    assert!(guard.validate(&tokens[20]).await.unwrap().is_some());
}

/// Issue 26's lag test: three nodes, three guards each following a different node with a 300 s
/// cache, 1,000 tokens cached in every guard and revoked at random nodes; every guard refuses
/// each token once its revocation is answered, within the stream's lag.
#[tokio::test]
async fn three_guards_on_three_nodes_refuse_every_revoked_token() {
    let Some(url) = fresh_database(Backend::Postgres).await else {
        return;
    };
    let nodes = tokio::join!(Node::start(&url), Node::start(&url), Node::start(&url));
    let nodes = [nodes.0, nodes.1, nodes.2];
    let uri = "https://api.example/";
    let rs = resource_at(&url, uri).await;
    let owner = create_client(&url, "owner").await;
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "api"),
        ("resource", uri),
    ];
    let mut tokens = Vec::new();
    for i in 0..1000 {
        let issued = nodes[i % 3].post("/token", &owner, &form).await;
        tokens.push(issued["access_token"].as_str().unwrap().to_owned());
    }
    let mut guards = Vec::new();
    for node in &nodes {
        let mut config = RemoteConfig::new("", &rs.id, rs.secret());
        config.cache_ttl = Duration::from_secs(300);
        let guard = RemoteIntrospection::discover(&node.base, config)
            .await
            .unwrap();
        wait_for(&guard, |s| s.connected).await;
        for token in &tokens {
            assert!(guard.validate(token).await.unwrap().is_some());
        }
        guards.push(guard);
    }
    let cached: Vec<u64> = guards.iter().map(|g| g.introspection_calls()).collect();

    let mut lags = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        // A node picked by the token's own bytes: random enough, and the same on a rerun.
        let node = &nodes[(usize::from(token.as_bytes()[token.len() - 1]) + i) % 3];
        node.post("/revoke", &owner, &[("token", token)]).await;
        let answered = Instant::now();
        for guard in &guards {
            refused_within(guard, token, answered, PATIENCE).await;
        }
        lags.push(answered.elapsed());
    }
    for (guard, calls) in guards.iter().zip(cached) {
        let status = guard.stream_status();
        assert_eq!(status.events, 1000, "{status:?}");
        assert_eq!(
            guard.introspection_calls(),
            calls,
            "refused from the events alone"
        );
    }
    lags.sort();
    println!(
        "revocation answered to three guards refusing: p50 {:?}, p99 {:?}, max {:?}",
        lags[lags.len() / 2],
        lags[lags.len() * 99 / 100],
        lags[lags.len() - 1]
    );
}
