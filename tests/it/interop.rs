//! The guard's remote mode against an independent RFC 7662 implementation: Authlib's
//! `IntrospectionEndpoint` in a small Flask app (`tests/fixtures/authlib_as.py`), so that
//! "works with Tessera" does not stand in for "works with any introspection endpoint".
//!
//! Needs `python3` with `authlib` and `flask` (scripts/test installs the pinned versions).
//! Without them the tests skip with a message, except when `CI` is set, where they fail.

use std::process::Stdio;
use std::time::Duration;

use tessera_guard::{Guard, RemoteConfig, RemoteIntrospection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, sleep, timeout};

use crate::helpers::{Reply, serve_api};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/authlib_as.py");
/// The resource server's credentials at the Authlib server. The secret holds characters that
/// RFC 6749 §2.3.1 form-encodes before Basic encoding; Authlib decodes them.
const RS_ID: &str = "resource-server";
const RS_SECRET: &str = "s3c:r+t/%=";

/// Tokens the fixture knows (see its docstring).
const API: &str = "authlib-api-token";
const API_PUNCTUATED: &str = "authlib+api/token~2.=";
const OTHER: &str = "authlib-other-token";
const EXPIRED: &str = "authlib-expired-token";
const REVOKED: &str = "authlib-revoked-token";
const REFRESH: &str = "authlib-api-refresh";
const UNKNOWN: &str = "authlib-unknown-token";

const INVALID: &str = "Bearer realm=\"authlib\", error=\"invalid_token\", error_description=\"the access token is invalid, expired or revoked\"";

/// A running `authlib_as.py`, killed when dropped (and exiting by itself when its stdin
/// closes, should this process die without dropping it).
struct AuthlibServer {
    base: String,
    _child: Child,
}

impl AuthlibServer {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// Whether `python3` can import Authlib and Flask, and if not, why.
async fn python_with_authlib() -> Result<(), String> {
    let output = Command::new("python3")
        .args(["-c", "import authlib, flask"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    match timeout(Duration::from_secs(30), output).await {
        Err(_) => Err("`python3 -c 'import authlib, flask'` took over 30 s".into()),
        Ok(Err(e)) => Err(format!("python3 cannot be run: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!(
            "python3 cannot import authlib and flask: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Starts the Authlib server on a free port, or `None` (with a message) when Python or the
/// packages are missing outside CI. In CI that is a failure, never a silent skip.
async fn start_authlib() -> Option<AuthlibServer> {
    match python_with_authlib().await {
        Ok(()) => {}
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!(
                "SKIPPED: {e}; scripts/test installs the pinned authlib and flask; set CI=1 to make this fail"
            );
            return None;
        }
        Err(e) => panic!("python3 with authlib and flask is required in CI: {e}"),
    }
    // Port 0: the fixture binds a free port itself and names it, so there is no race.
    let mut child = Command::new("python3")
        .args([FIXTURE, "0", RS_ID, RS_SECRET])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3 authlib_as.py");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("authlib_as.py did not print its ready line within 30 s")
        .expect("read authlib_as.py's stdout");
    let base = first
        .as_deref()
        .and_then(|l| l.strip_prefix("ready "))
        .unwrap_or_else(|| panic!("authlib_as.py did not start: {first:?}"))
        .to_owned();
    // Keep draining its stdout so that it can never block on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let server = AuthlibServer {
        base,
        _child: child,
    };
    // Bounded wait until it answers HTTP.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let probe = reqwest::get(server.url("/.well-known/oauth-authorization-server")).await;
        match probe {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < deadline => sleep(Duration::from_millis(100)).await,
            other => panic!(
                "the Authlib server at {} never answered: {other:?}",
                server.base
            ),
        }
    }
    Some(server)
}

fn remote(as_: &AuthlibServer, id: &str, secret: &str, cache_ttl: Duration) -> RemoteIntrospection {
    let mut config = RemoteConfig::new(as_.url("/introspect"), id, secret);
    config.cache_ttl = cache_ttl;
    // Long enough that the second pass below is all hits, however slow the machine.
    config.negative_ttl = cache_ttl;
    RemoteIntrospection::new(config).unwrap()
}

async fn call(api: &str, path: &str, token: &str) -> Reply {
    let req = reqwest::Client::new()
        .get(format!("{api}{path}"))
        .header("authorization", format!("Bearer {token}"));
    Reply::from(req.send().await.unwrap()).await
}

#[tokio::test]
async fn rfc_6750_answers_with_authlib_introspection() {
    let Some(authlib) = start_authlib().await else {
        return;
    };
    let insufficient = "Bearer realm=\"authlib\", error=\"insufficient_scope\", scope=\"api\"";
    // (case, token, status, WWW-Authenticate)
    let cases: [(&str, &str, u16, Option<&str>); 7] = [
        ("active, scope api", API, 200, None),
        ("active, b64token punctuation", API_PUNCTUATED, 200, None),
        ("active, scope other", OTHER, 403, Some(insufficient)),
        ("expired", EXPIRED, 401, Some(INVALID)),
        ("revoked", REVOKED, 401, Some(INVALID)),
        ("refresh token as bearer", REFRESH, 401, Some(INVALID)),
        ("unknown", UNKNOWN, 401, Some(INVALID)),
    ];
    for (mode, cache_ttl) in [
        ("no cache", Duration::ZERO),
        ("cache", Duration::from_secs(60)),
    ] {
        let validator = remote(&authlib, RS_ID, RS_SECRET, cache_ttl);
        let api = serve_api(&Guard::new(validator.clone(), "authlib")).await;
        for pass in 1..=2 {
            for (name, token, status, challenge) in cases {
                let reply = call(&api, "/api/data", token).await;
                assert_eq!(
                    reply.status, status,
                    "{mode}, pass {pass}: {name}: {:?}",
                    reply.body
                );
                assert_eq!(
                    reply.header("www-authenticate"),
                    challenge,
                    "{mode}, pass {pass}: {name}"
                );
                if status == 200 {
                    // What Authlib said about the token reaches the handler.
                    assert_eq!(reply.body["caller"], "alice", "{mode}: {name}");
                    assert_eq!(reply.body["scope"], "api", "{mode}: {name}");
                    assert_eq!(reply.body["client_id"], "web-app", "{mode}: {name}");
                } else {
                    assert_eq!(
                        reply.header("cache-control"),
                        Some("no-store"),
                        "{mode}: {name}"
                    );
                }
            }
        }
        // Without a cache every request is asked about; with one, each token once (positive
        // answers live until Authlib's `exp` or the TTL, negative ones the negative TTL).
        let expected = if cache_ttl.is_zero() {
            2 * cases.len()
        } else {
            cases.len()
        };
        assert_eq!(
            validator.introspection_calls(),
            u64::try_from(expected).unwrap(),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn credentials_authlib_refuses_fail_closed() {
    let Some(authlib) = start_authlib().await else {
        return;
    };
    // Authlib answers 401 invalid_client to a wrong secret or an unknown client: the guard
    // cannot know what the token means, so it refuses with a 503, not a misleading 401.
    for (name, id, secret) in [
        ("wrong secret", RS_ID, "not-the-secret"),
        ("unknown client", "nobody", RS_SECRET),
    ] {
        let api = serve_api(&Guard::new(
            remote(&authlib, id, secret, Duration::ZERO),
            "authlib",
        ))
        .await;
        let reply = call(&api, "/api/data", API).await;
        assert_eq!(reply.status, 503, "{name}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "temporarily_unavailable", "{name}");
        assert_eq!(reply.header("retry-after"), Some("5"), "{name}");
    }
    // A client that authenticates but may not introspect is told `"active": false` (RFC 7662
    // §2.2), so the token is invalid as far as that resource server can know.
    let api = serve_api(&Guard::new(
        remote(&authlib, "web-app", "web-secret", Duration::ZERO),
        "authlib",
    ))
    .await;
    let reply = call(&api, "/api/data", API).await;
    assert_eq!(reply.status, 401, "{:?}", reply.body);
    assert_eq!(reply.header("www-authenticate"), Some(INVALID));

    // A secret with a space: the guard encodes it as `%20`, which Authlib's plain
    // percent-decoding of Basic credentials reads correctly (a `+` would not be).
    let api = serve_api(&Guard::new(
        remote(&authlib, "spaced-rs", "rs secret", Duration::ZERO),
        "authlib",
    ))
    .await;
    let reply = call(&api, "/api/data", API).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

#[tokio::test]
async fn discovery_reads_authlib_metadata() {
    let Some(authlib) = start_authlib().await else {
        return;
    };
    // The document is built and validated by Authlib's `AuthorizationServerMetadata`.
    let validator =
        RemoteIntrospection::discover(&authlib.base, RemoteConfig::new("", RS_ID, RS_SECRET))
            .await
            .unwrap();
    let api = serve_api(&Guard::new(validator.clone(), "authlib")).await;
    let reply = call(&api, "/api/data", API).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["caller"], "alice");
    assert_eq!(call(&api, "/api/data", REVOKED).await.status, 401);
    assert_eq!(validator.introspection_calls(), 2);
}
