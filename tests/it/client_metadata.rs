//! Issue 25 item 6: a `client_id` that is the https URL of a client metadata document,
//! served by the test over https on loopback (its own CA, trusted through
//! `client_metadata_ca_file`), and the fetches Tessera must never make.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use tessera_core::audit::{AuditFilter, AuditKind};
use tessera_core::registration::RegistrationPolicy;
use tessera_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, TestClient, spawn_app_with};
use crate::person::{PASSWORD, Page, Person, VERIFIER, authorize_url, query_of};

const CALLBACK: &str = "http://127.0.0.1:9/callback";

both_backends!(
    a_document_client_runs_the_code_flow_marked_unverified,
    documents_that_break_the_rules_are_refused_on_an_error_page,
    a_slow_document_is_an_error_page_within_the_timeout,
    without_the_loopback_flag_no_loopback_address_is_reached,
    documents_off_fetches_nothing_and_advertises_nothing,
    a_flood_naming_one_url_fetches_it_once_and_a_deleted_client_is_read_again,
);

/// What the test's https server answers on a path.
#[derive(Debug, Clone)]
pub enum Answer {
    /// 200 with this JSON body and its `Content-Length`.
    Json(String),
    /// 200 with this body and no `Content-Length`: it ends when the connection closes.
    Unsized(String),
    /// 200 with this body, after this long.
    Slow(Duration, String),
    /// 302 to this location.
    Redirect(String),
}

/// An https server on 127.0.0.1 whose certificate (for 127.0.0.1 and localhost) is signed
/// by a CA of its own, written to [`DocumentServer::ca_file`]. It counts requests per path.
pub struct DocumentServer {
    pub port: u16,
    pub ca_file: PathBuf,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DocumentServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.ca_file);
    }
}

impl DocumentServer {
    pub async fn start() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

        static NEXT: AtomicU64 = AtomicU64::new(0);
        let ca_file = std::env::temp_dir().join(format!(
            "tessera-test-ca-{}-{}.pem",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&ca_file, ca.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = Arc::new(Mutex::new(HashMap::<String, Answer>::new()));
        let requests = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let (a, r) = (answers.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, answers, requests) = (acceptor.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    *requests.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let answer = answers.lock().unwrap().get(&path).cloned();
                    let json = "Content-Type: application/json\r\nConnection: close";
                    let response = match answer {
                        Some(Answer::Json(body)) => format!(
                            "HTTP/1.1 200 OK\r\n{json}\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        ),
                        Some(Answer::Unsized(body)) => format!("HTTP/1.1 200 OK\r\n{json}\r\n\r\n{body}"),
                        Some(Answer::Slow(delay, body)) => {
                            tokio::time::sleep(delay).await;
                            format!(
                                "HTTP/1.1 200 OK\r\n{json}\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            )
                        }
                        Some(Answer::Redirect(to)) => format!(
                            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self {
            port,
            ca_file,
            answers,
            requests,
            task,
        }
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn serve(&self, path: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(path.to_owned(), answer);
    }

    /// Serves at `path` the document of a public client named `name` whose `client_id` is
    /// `client_id` (the URL, for a good document) and whose redirect URI is `redirect_uri`.
    pub fn serve_document(&self, path: &str, client_id: &str, name: &str, redirect_uri: &str) {
        let document = json!({
            "client_id": client_id,
            "client_name": name,
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        self.serve(path, Answer::Json(document.to_string()));
    }

    /// How many requests asked for `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn all_requests(&self) -> usize {
        self.requests.lock().unwrap().values().sum()
    }
}

/// A server accepting documents (registration open), fetching from loopback only if
/// `loopback`, trusting the document server's CA.
async fn app_trusting(
    backend: Backend,
    documents: &DocumentServer,
    loopback: bool,
) -> Option<TestApp> {
    let ca_file = documents.ca_file.clone();
    spawn_app_with(backend, move |c: &mut Config| {
        c.registration = RegistrationPolicy::Open;
        c.client_metadata_documents = true;
        c.allow_loopback_client_metadata = loopback;
        c.client_metadata_ca_file = Some(ca_file);
    })
    .await
}

async fn server_metadata(app: &TestApp) -> Value {
    let reply = app
        .http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap();
    reply.json().await.unwrap()
}

async fn a_document_client_runs_the_code_flow_marked_unverified(backend: Backend) {
    let documents = DocumentServer::start().await;
    let Some(app) = app_trusting(backend, &documents, true).await else {
        return;
    };
    assert_eq!(
        server_metadata(&app).await["client_id_metadata_document_supported"],
        true
    );
    let _ = app.resource_server("api").await;
    app.user("alice", PASSWORD).await;
    let client_id = documents.url("/apps/gadget.json");
    documents.serve_document("/apps/gadget.json", &client_id, "Gadget", CALLBACK);

    let person = Person::new(&app);
    let login = person
        .get(&authorize_url(&app, &client_id, CALLBACK, &[]))
        .await;
    assert!(login.is_login(), "{} {}", login.status, login.body);
    let after = person.log_in(&login, "alice", PASSWORD).await;
    let consent = person.get(after.location().unwrap()).await;
    assert!(consent.is_consent(), "{}", consent.body);
    assert!(
        consent.body.contains("Gadget (127.0.0.1)"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("(unverified)"), "{}", consent.body);
    let done = person.decide(&consent, "approve").await;
    let query = query_of(done.location().unwrap());
    assert!(done.location().unwrap().starts_with(CALLBACK));

    let client = TestClient {
        id: client_id.clone(),
        secret: None,
    };
    let reply = app
        .post_basic(
            "/token",
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &query["code"]),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["scope"], "api");
    let refresh = reply.body["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = app
        .post_basic(
            "/token",
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let stored = app.store.get_client(&client_id).await.unwrap().unwrap();
    assert!(stored.self_registered && stored.is_public());

    // A second authorization (and every request of the first) used one fetch.
    let again = person
        .get(&authorize_url(&app, &client_id, CALLBACK, &[]))
        .await;
    assert!(
        again.is_consent() || again.location().is_some(),
        "{}",
        again.body
    );
    assert_eq!(documents.requests("/apps/gadget.json"), 1);
    // Issue 28: the one read of the document is the client's registration in the audit trail.
    let filter = AuditFilter {
        client_id: Some(client_id.clone()),
        ..AuditFilter::default()
    };
    let trail = app.store.audit_events(&filter).await.unwrap();
    let registered: Vec<_> = trail
        .iter()
        .filter(|r| r.event.kind == AuditKind::ClientRegistered)
        .collect();
    assert_eq!(registered.len(), 1, "{trail:?}");
    assert_eq!(registered[0].event.detail["via"], "metadata_document");

    // A redirect URI the document does not list is refused before anything is sent to it.
    let page = person
        .get(&authorize_url(
            &app,
            &client_id,
            "http://127.0.0.1:9/other",
            &[],
        ))
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.location().is_none());
}

/// Opens an authorization request for `client_id` and expects Tessera's error page, which
/// says `why`, answered within `within`.
async fn refused(person: &Person, app: &TestApp, client_id: &str, why: &str, within: Duration) {
    let started = Instant::now();
    let page = person
        .get(&authorize_url(app, client_id, CALLBACK, &[]))
        .await;
    let took = started.elapsed();
    assert_eq!(page.status, 400, "{client_id}: {}", page.body);
    assert!(page.location().is_none(), "{client_id}");
    let body = crate::helpers::unescape(&page.body);
    assert!(
        body.contains(why),
        "{client_id}: expected {why:?} in {body}"
    );
    assert!(took < within, "{client_id}: {took:?}");
}

async fn documents_that_break_the_rules_are_refused_on_an_error_page(backend: Backend) {
    let documents = DocumentServer::start().await;
    let Some(app) = app_trusting(backend, &documents, true).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    let person = Person::new(&app);
    let quick = Duration::from_secs(2);

    // Table: path served, what is served, what the page says.
    let good = |path: &str| {
        json!({
            "client_id": documents.url(path),
            "redirect_uris": [CALLBACK],
            "token_endpoint_auth_method": "none",
        })
    };
    let with = |path: &str, key: &str, value: Value| {
        let mut document = good(path);
        document[key] = value;
        Answer::Json(document.to_string())
    };
    let padding = "x".repeat(6000);
    let cases: Vec<(&str, Answer, &str)> = vec![
        (
            "/mismatch.json",
            with(
                "/mismatch.json",
                "client_id",
                json!(documents.url("/other.json")),
            ),
            "not the URL it was fetched from",
        ),
        (
            "/sized.json",
            with("/sized.json", "padding", json!(padding)),
            "larger than 5 KB",
        ),
        (
            "/unsized.json",
            Answer::Unsized(good("/unsized.json").to_string() + &" ".repeat(6000)),
            "larger than 5 KB",
        ),
        (
            "/secret-basic.json",
            with(
                "/secret-basic.json",
                "token_endpoint_auth_method",
                json!("client_secret_basic"),
            ),
            "token_endpoint_auth_method `client_secret_basic`",
        ),
        (
            "/secret.json",
            with("/secret.json", "client_secret", json!("s3cret")),
            "has a client_secret",
        ),
        (
            "/insecure-redirect.json",
            with(
                "/insecure-redirect.json",
                "redirect_uris",
                json!(["http://gadget.example/cb"]),
            ),
            "may not be registered",
        ),
        (
            "/not-json.json",
            Answer::Json("<html>hello</html>".into()),
            "not a JSON object",
        ),
        (
            "/moved.json",
            Answer::Redirect(documents.url("/target.json")),
            "HTTP status 302 (redirects are not followed)",
        ),
    ];
    documents.serve(
        "/target.json",
        Answer::Json(good("/target.json").to_string()),
    );
    for (path, answer, why) in &cases {
        documents.serve(path, answer.clone());
        refused(&person, &app, &documents.url(path), why, quick).await;
        assert_eq!(documents.requests(path), 1, "{path}");
    }
    assert_eq!(
        documents.requests("/target.json"),
        0,
        "a redirect is not followed"
    );
    // A missing document.
    refused(
        &person,
        &app,
        &documents.url("/absent.json"),
        "HTTP status 404",
        quick,
    )
    .await;

    // A refusal is remembered for a while: asking again fetches nothing.
    refused(
        &person,
        &app,
        &documents.url("/mismatch.json"),
        "not the URL",
        quick,
    )
    .await;
    assert_eq!(documents.requests("/mismatch.json"), 1);

    // URLs refused before any fetch.
    let before = documents.all_requests();
    let http = format!("http://127.0.0.1:{}/plain.json", documents.port);
    refused(&person, &app, &http, "must be an https URL", quick).await;
    refused(
        &person,
        &app,
        &format!("https://127.0.0.1:{}/", documents.port),
        "must have a path",
        quick,
    )
    .await;
    refused(
        &person,
        &app,
        &format!("https://127.0.0.1:{}/a/../c.json", documents.port),
        "normal form",
        quick,
    )
    .await;
    for private in [
        "https://10.0.0.1/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00::1]/x",
        "https://[::ffff:c0a8:1]/x",
    ] {
        refused(&person, &app, private, "not a public address", quick).await;
    }
    assert_eq!(documents.all_requests(), before, "nothing was fetched");
    let stored = app.store.list_clients().await.unwrap();
    assert!(
        stored.iter().all(|c| !c.id.starts_with("https://")),
        "no refused document left a client"
    );
}

async fn a_slow_document_is_an_error_page_within_the_timeout(backend: Backend) {
    let documents = DocumentServer::start().await;
    let Some(app) = app_trusting(backend, &documents, true).await else {
        return;
    };
    let path = "/slow.json";
    let body = json!({"client_id": documents.url(path), "redirect_uris": [CALLBACK]});
    documents.serve(path, Answer::Slow(Duration::from_secs(5), body.to_string()));
    let person = Person::new(&app);
    let started = Instant::now();
    refused(
        &person,
        &app,
        &documents.url(path),
        "did not answer in time",
        Duration::from_secs(3),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(documents.requests(path), 1);
}

async fn without_the_loopback_flag_no_loopback_address_is_reached(backend: Backend) {
    let documents = DocumentServer::start().await;
    let Some(app) = app_trusting(backend, &documents, false).await else {
        return;
    };
    let person = Person::new(&app);
    let quick = Duration::from_secs(2);
    for client_id in [
        // Resolves to 127.0.0.1 (and ::1): the resolver leaves no address to connect to.
        format!("https://localhost:{}/client.json", documents.port),
        format!("https://127.0.0.1:{}/client.json", documents.port),
        format!("https://[::1]:{}/client.json", documents.port),
    ] {
        documents.serve_document("/client.json", &client_id, "Local", CALLBACK);
        refused(&person, &app, &client_id, "not a public address", quick).await;
    }
    assert_eq!(
        documents.all_requests(),
        0,
        "no connection reached the server"
    );
}

async fn documents_off_fetches_nothing_and_advertises_nothing(backend: Backend) {
    let documents = DocumentServer::start().await;
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    let metadata = server_metadata(&app).await;
    assert!(
        metadata
            .get("client_id_metadata_document_supported")
            .is_none(),
        "{metadata}"
    );
    let client_id = documents.url("/client.json");
    documents.serve_document("/client.json", &client_id, "Gadget", CALLBACK);
    let person = Person::new(&app);
    refused(
        &person,
        &app,
        &client_id,
        "does not accept client metadata documents",
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(documents.all_requests(), 0);
}

/// 60 simultaneous authorization requests from distinct callers naming one URL.
async fn flood(app: &TestApp, client_id: &str) -> Vec<Page> {
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..60u8 {
        let person = Person::from_address(app, std::net::IpAddr::from([127, 0, 1, i + 1]));
        let url = authorize_url(app, client_id, CALLBACK, &[]);
        burst.spawn(async move { person.get(&url).await });
    }
    burst.join_all().await
}

async fn a_flood_naming_one_url_fetches_it_once_and_a_deleted_client_is_read_again(
    backend: Backend,
) {
    let documents = DocumentServer::start().await;
    let Some(app) = app_trusting(backend, &documents, true).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    let client_id = documents.url("/apps/flood.json");
    documents.serve_document("/apps/flood.json", &client_id, "Flood", CALLBACK);
    for page in flood(&app, &client_id).await {
        assert!(page.is_login(), "{} {}", page.status, page.body);
    }
    assert_eq!(
        documents.requests("/apps/flood.json"),
        1,
        "one shared fetch"
    );

    let absent = documents.url("/apps/absent.json");
    for page in flood(&app, &absent).await {
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains("HTTP status 404"), "{}", page.body);
    }
    assert_eq!(
        documents.requests("/apps/absent.json"),
        1,
        "one shared refusal"
    );

    // `client delete` removes the row; once the node's client cache lets go of it, the next
    // request reads the document again instead of using a client the store no longer has.
    assert!(
        app.store
            .delete_client(&client_id, app.clock.now())
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let page = Person::new(&app)
        .get(&authorize_url(&app, &client_id, CALLBACK, &[]))
        .await;
    assert!(page.is_login(), "{} {}", page.status, page.body);
    assert_eq!(documents.requests("/apps/flood.json"), 2);
    assert!(app.store.get_client(&client_id).await.unwrap().is_some());
}
