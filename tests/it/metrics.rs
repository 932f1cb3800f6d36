//! Issue 28's metrics: `tessera serve --metrics-listen` scraped over HTTP around the flows and
//! read with a real Prometheus text parser (`prometheus-parse`); the guard's own metrics.
//!
//! The server's test runs the binary: the recorder is one per process, and this test binary
//! runs many servers at once, whose counts would mix with the ones asserted here.

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tessera_guard::{Guard, RemoteConfig, RemoteIntrospection, TokenValidator};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::both_backends;
use crate::cli::created;
use crate::helpers::{
    Backend, TestApp, TestClient, fresh_database, http_client, serve_api, spawn_app_with,
    tessera_cli,
};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url_at, query_of};

const TESSERA: &str = env!("CARGO_BIN_EXE_tessera");
const CALLBACK: &str = "http://127.0.0.1:5000/authorize";
const WRONG_PASSWORD: &str = "not the password at all";
/// Failed sign-ins per name and address before the next is refused
/// (`tessera_flow::throttle::LIMIT`).
const SIGN_IN_LIMIT: usize = 5;

both_backends!(issue_28_metrics_move_as_the_flows_say);

/// Label names and values a sample must carry.
type Labels<'a> = &'a [(&'a str, &'a str)];

/// A free port on loopback, for a listener the child binds.
pub(crate) fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// A `tessera serve` child with its standard error kept, killed when dropped.
pub(crate) struct Serve {
    child: Child,
    pub(crate) base: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl Serve {
    /// Starts `tessera serve` on `database_url` with `extra` arguments and `RUST_LOG` set to
    /// `log`, and waits until it is ready.
    pub(crate) async fn start(database_url: &str, extra: &[&str], log: &str) -> Serve {
        let listen = free_addr();
        let mut child = Command::new(TESSERA)
            .args(["serve", "--listen", &listen])
            .args(extra)
            .env("TESSERA_DATABASE_URL", database_url)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let kept = stderr.clone();
        let reader = tokio::spawn(async move {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes).await;
            kept.lock().await.push_str(&String::from_utf8_lossy(&bytes));
        });
        let serve = Serve {
            child,
            base: format!("http://{listen}"),
            stderr,
            reader: Some(reader),
        };
        let http = http_client();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/readyz", serve.base)).send().await
                && r.status() == 200
            {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tessera serve did not become ready on {listen}");
    }

    /// Stops the process and returns everything it wrote to standard error.
    pub(crate) async fn stop(mut self) -> String {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
        if let Some(reader) = self.reader.take() {
            reader.await.unwrap();
        }
        self.stderr.lock().await.clone()
    }

    async fn post(&self, path: &str, client: &TestClient, form: &[(&str, &str)]) -> (u16, Value) {
        let r = http_client()
            .post(format!("{}{path}", self.base))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The credentials an operator creates with the CLI before starting the server.
pub(crate) struct Setup {
    pub(crate) web: TestClient,
    pub(crate) m2m: TestClient,
    pub(crate) resource: TestClient,
}

pub(crate) async fn setup(database_url: &str) -> Setup {
    let web = created(
        database_url,
        &[
            "client",
            "create",
            "--name",
            "web",
            "--redirect-uri",
            CALLBACK,
            "--scope",
            "api",
            "--json",
        ],
    )
    .await;
    let m2m = created(
        database_url,
        &[
            "client", "create", "--name", "m2m", "--scope", "api", "--json",
        ],
    )
    .await;
    let resource = created(
        database_url,
        &[
            "resource",
            "create",
            "--uri",
            "https://api.example/",
            "--scope",
            "api",
            "--json",
        ],
    )
    .await;
    let out = tessera_cli(
        database_url,
        &["user", "create", "alice", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Setup { web, m2m, resource }
}

/// The integration flows against `serve`: a failed sign-in, a sign-in with consent, the code
/// exchange, introspection (active), a refresh, a revocation, introspection (inactive) and
/// client_credentials; with `throttle`, five wrong passwords for another name and a sixth
/// attempt refused. Returns every secret the run used or received.
pub(crate) async fn run_flows(serve: &Serve, setup: &Setup, throttle: bool) -> Vec<String> {
    let mut secrets = vec![PASSWORD.to_owned(), WRONG_PASSWORD.to_owned()];
    for client in [&setup.web, &setup.m2m, &setup.resource] {
        secrets.push(client.secret().to_owned());
    }
    let url = authorize_url_at(&serve.base, &setup.web.id, CALLBACK, &[("scope", "api")]);
    let person = Person::at(&serve.base);
    let login = person.get(&url).await;
    assert_eq!(
        person.log_in(&login, "alice", WRONG_PASSWORD).await.status,
        401
    );
    let redirect = person.authorize_as(&url, "alice", PASSWORD).await;
    let code = query_of(&redirect)["code"].clone();
    secrets.push(code.clone());

    let (status, tokens) = serve
        .post(
            "/token",
            &setup.web,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    secrets.extend([access.clone(), refresh.clone()]);

    let (_, answer) = serve
        .post("/introspect", &setup.resource, &[("token", &access)])
        .await;
    assert_eq!(answer["active"], true, "{answer}");

    let (status, rotated) = serve
        .post(
            "/token",
            &setup.web,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let access = rotated["access_token"].as_str().unwrap().to_owned();
    secrets.push(access.clone());
    secrets.push(rotated["refresh_token"].as_str().unwrap().to_owned());

    let (status, _) = serve
        .post("/revoke", &setup.web, &[("token", &access)])
        .await;
    assert_eq!(status, 200);
    let (_, answer) = serve
        .post("/introspect", &setup.resource, &[("token", &access)])
        .await;
    assert_eq!(answer["active"], false, "{answer}");

    let (status, issued) = serve
        .post(
            "/token",
            &setup.m2m,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    secrets.push(issued["access_token"].as_str().unwrap().to_owned());

    if throttle {
        let guesser = Person::at(&serve.base);
        let login = guesser.get(&url).await;
        for _ in 0..SIGN_IN_LIMIT {
            let page = guesser.log_in(&login, "mallory", WRONG_PASSWORD).await;
            assert_eq!(page.status, 401);
        }
        let refused = guesser.log_in(&login, "mallory", WRONG_PASSWORD).await;
        assert_eq!(refused.status, 429);
    }
    secrets
}

/// A scrape of `/metrics` at `addr`, as text and parsed.
pub(crate) async fn scrape(addr: &str) -> (String, prometheus_parse::Scrape) {
    let r = http_client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).unwrap();
    (text, parsed)
}

/// The sum of the samples named `name` whose labels include `labels`: a counter's or gauge's
/// value, a histogram's count of observations.
pub(crate) fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    use prometheus_parse::Value as V;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => *v,
            V::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            V::Summary(_) => panic!("{name} is a summary, not a histogram"),
        })
        .sum()
}

async fn issue_28_metrics_move_as_the_flows_say(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let setup = setup(&url).await;
    let metrics = free_addr();
    let serve = Serve::start(&url, &["--metrics-listen", &metrics], "warn").await;
    let (_, before) = scrape(&metrics).await;
    let secrets = run_flows(&serve, &setup, true).await;
    let (text, after) = scrape(&metrics).await;

    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let expected: &[(&str, Labels, f64)] = &[
        (
            "tessera_tokens_issued_total",
            &[("grant_type", "authorization_code")],
            1.0,
        ),
        (
            "tessera_tokens_issued_total",
            &[("grant_type", "refresh_token")],
            1.0,
        ),
        (
            "tessera_tokens_issued_total",
            &[("grant_type", "client_credentials")],
            1.0,
        ),
        ("tessera_introspections_total", &[("active", "true")], 1.0),
        ("tessera_introspections_total", &[("active", "false")], 1.0),
        ("tessera_revocations_total", &[("outcome", "revoked")], 1.0),
        ("tessera_sign_ins_total", &[], 1.0),
        // One wrong password for alice, five for mallory; the sixth is refused unchecked.
        ("tessera_sign_in_failures_total", &[], 6.0),
        (
            "tessera_throttle_refusals_total",
            &[("throttle", "sign_in")],
            1.0,
        ),
        (
            "tessera_http_requests_total",
            &[("route", "/token"), ("status", "200")],
            3.0,
        ),
        (
            "tessera_http_requests_total",
            &[("route", "/introspect"), ("status", "200")],
            2.0,
        ),
        (
            "tessera_http_requests_total",
            &[("route", "/revoke"), ("status", "200")],
            1.0,
        ),
        (
            "tessera_http_requests_total",
            &[("route", "/login"), ("status", "401")],
            6.0,
        ),
        (
            "tessera_http_requests_total",
            &[("route", "/login"), ("status", "429")],
            1.0,
        ),
        (
            "tessera_http_request_duration_seconds",
            &[("route", "/token")],
            3.0,
        ),
        (
            "tessera_http_request_duration_seconds",
            &[("route", "/introspect")],
            2.0,
        ),
        // Seven sign-ins checked (the refused one is not) and three clients' first secrets.
        ("tessera_hashing_wait_seconds", &[("queue", "sign_in")], 7.0),
        ("tessera_hashing_wait_seconds", &[("queue", "client")], 3.0),
    ];
    let mut wrong = Vec::new();
    for (name, labels, want) in expected {
        let got = moved(name, labels);
        if got != *want {
            wrong.push(format!("{name}{labels:?}: moved {got}, expected {want}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{text}");

    // Every other family is there and moved as far as the flows reach it.
    assert!(
        moved(
            "tessera_store_operation_duration_seconds",
            &[("operation", "find_token")]
        ) >= 4.0
    );
    assert!(
        moved(
            "tessera_store_operation_duration_seconds",
            &[("operation", "redeem_code")]
        ) == 1.0
    );
    assert_eq!(
        value(&after, "tessera_store_errors_total", &[]),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(
            &after,
            "tessera_hashing_queue_depth",
            &[("queue", "sign_in")]
        ),
        0.0
    );
    assert_eq!(
        value(&after, "tessera_revocation_stream_subscribers", &[]),
        0.0
    );
    assert!(text.contains("tessera_http_requests_total{route=\"/readyz\",status=\"200\"}"));
    if backend == Backend::Postgres {
        assert!(
            value(&after, "tessera_db_pool_connections", &[("state", "size")]) >= 1.0,
            "{text}"
        );
    }

    // Labels name routes and outcomes, never what a client sent.
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the metrics:\n{text}"
        );
    }
    let routes: Vec<&str> = after
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .collect();
    assert!(routes.iter().all(|r| !r.contains('?')), "{routes:?}");

    // Every metric says what it counts (`# HELP`), histograms included.
    let undescribed: Vec<&str> = after
        .samples
        .iter()
        .map(|s| s.metric.as_str())
        .filter(|name| {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| after.docs.contains_key(*family))
                .unwrap_or(name);
            after.docs.get(family).is_none_or(|help| help.is_empty())
        })
        .collect();
    assert!(undescribed.is_empty(), "no # HELP for {undescribed:?}");
    serve.stop().await;
}

#[tokio::test]
async fn issue_28_unknown_paths_are_one_route_and_the_stream_is_counted() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
    else {
        return;
    };
    let metrics = app.metrics.unwrap().to_string();
    for path in ["/nothing-here", "/also/not?x=secret", "/register/abc"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    // A resource server follows its revocations; one of its tokens is revoked.
    let (resource, _) = app.resource_server("api").await;
    let stream = app
        .http
        .get(app.url("/revocations"))
        .basic_auth(&resource.id, resource.secret.as_deref())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let m2m = app.m2m_client("api").await;
    let token = app.access_token(&m2m, Some("api")).await;
    let revoked = app.post_basic("/revoke", &m2m, &[("token", &token)]).await;
    assert_eq!(revoked.status, 200);
    let mut sent = 0.0;
    for _ in 0..100 {
        let (_, parsed) = scrape(&metrics).await;
        sent = value(&parsed, "tessera_revocation_events_sent_total", &[]);
        if sent >= 1.0 {
            assert!(value(&parsed, "tessera_revocation_stream_subscribers", &[]) >= 1.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent >= 1.0, "no revocation event counted as sent");
    drop(stream);

    let (text, parsed) = scrape(&metrics).await;
    // Other servers of this test binary record into the same recorder: at least ours.
    assert!(
        value(
            &parsed,
            "tessera_http_requests_total",
            &[("route", "other"), ("status", "404")]
        ) >= 2.0
    );
    assert!(
        !text.contains("nothing-here") && !text.contains("secret"),
        "{text}"
    );
}

/// A SQLite test app with its metrics listener on, and that listener's address.
async fn app_with_metrics() -> Option<(TestApp, String)> {
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await?;
    let metrics = app.metrics.unwrap().to_string();
    Some((app, metrics))
}

#[tokio::test]
async fn issue_28_the_guard_counts_cache_hits_and_misses() {
    let Some((app, metrics)) = app_with_metrics().await else {
        return;
    };
    // The recorder is installed (by the server's build) before the validator registers its
    // handles; the validator's own client id keeps its series apart from other tests'.
    let (resource, _) = app.resource_server("api").await;
    let mut config = RemoteConfig::new(app.url("/introspect"), &resource.id, resource.secret());
    config.subscribe = false;
    let guard = Guard::new(RemoteIntrospection::new(config).unwrap(), "metrics-test");
    let api = serve_api(&guard).await;
    let m2m = app.m2m_client("api").await;
    let token = app.access_token(&m2m, Some("api")).await;
    for expected in [200, 200, 200] {
        let r = app
            .http
            .get(format!("{api}/api/data"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected);
    }
    let (text, parsed) = scrape(&metrics).await;
    let id = [("client_id", resource.id.as_str())];
    let read: HashMap<&str, f64> = [
        "tessera_guard_cache_misses_total",
        "tessera_guard_cache_hits_total",
        "tessera_guard_introspection_duration_seconds",
        "tessera_guard_introspection_errors_total",
    ]
    .into_iter()
    .map(|name| (name, value(&parsed, name, &id)))
    .collect();
    assert_eq!(read["tessera_guard_cache_misses_total"], 1.0, "{text}");
    assert_eq!(read["tessera_guard_cache_hits_total"], 2.0, "{text}");
    assert_eq!(
        read["tessera_guard_introspection_duration_seconds"], 1.0,
        "{text}"
    );
    assert_eq!(
        read["tessera_guard_introspection_errors_total"], 0.0,
        "{text}"
    );
    assert!(!text.contains(&token), "the token is in the metrics");
    for name in read.keys() {
        assert!(parsed.docs.contains_key(*name), "no # HELP for {name}");
    }
}

/// The guard's stream metrics: connected while subscribed, one event received per revocation
/// of a token in its audience.
#[tokio::test]
async fn issue_28_the_guard_counts_its_revocation_stream() {
    let Some((app, metrics)) = app_with_metrics().await else {
        return;
    };
    let (resource, uri) = app.resource_server("api").await;
    let config = RemoteConfig::new("", &resource.id, resource.secret());
    let guard = RemoteIntrospection::discover(&app.base, config)
        .await
        .unwrap();
    let patience = Duration::from_secs(5);
    let mut changes = guard.stream_status_changes().expect("subscribed");
    tokio::time::timeout(patience, changes.wait_for(|s| s.connected))
        .await
        .unwrap()
        .unwrap();
    let id = [("client_id", resource.id.as_str())];
    let (text, parsed) = scrape(&metrics).await;
    assert_eq!(
        value(&parsed, "tessera_guard_stream_connected", &id),
        1.0,
        "{text}"
    );

    let owner = app.m2m_client("api").await;
    let issued = app
        .post_basic(
            "/token",
            &owner,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "api"),
                ("resource", &uri),
            ],
        )
        .await;
    assert_eq!(issued.status, 200, "{:?}", issued.body);
    let token = issued.body["access_token"].as_str().unwrap().to_owned();
    assert!(guard.validate(&token).await.unwrap().is_some());
    let revoked = app
        .post_basic("/revoke", &owner, &[("token", &token)])
        .await;
    assert_eq!(revoked.status, 200);
    tokio::time::timeout(patience, changes.wait_for(|s| s.events == 1))
        .await
        .unwrap()
        .unwrap();
    let (text, parsed) = scrape(&metrics).await;
    assert_eq!(
        value(&parsed, "tessera_guard_stream_events_received_total", &id),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&parsed, "tessera_guard_stream_reconnects_total", &id),
        0.0,
        "{text}"
    );
    assert!(parsed.docs.contains_key("tessera_guard_stream_connected"));
}
