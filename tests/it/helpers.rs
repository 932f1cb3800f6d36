//! `spawn_app`: a real server on 127.0.0.1:0 over a fresh database, and request helpers.

use std::sync::Arc;

use serde_json::Value;
use tessera_core::client::{ClientRegistration, register};
use tessera_core::clock::Clock;
use tessera_core::secret::hash_secret;
use tessera_guard::Guard;
use tessera_server::{Config, Server};
use tessera_store::{Store, testing};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod $name { sqlite, postgres }` tests from one `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A fresh database URL for `backend`, or `None` when PostgreSQL is not reachable outside CI;
/// the skip prints `SKIPPED: <test>: ...` in the `cargo test` output (see
/// `testing::postgres_test_database`). In CI a missing PostgreSQL is a failure, never a skip.
pub async fn fresh_database(backend: Backend) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(testing::fresh_sqlite_url().expect("temp path").0),
        Backend::Postgres => testing::postgres_test_database()
            .await
            .expect("PostgreSQL is required in CI"),
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub base: String,
    pub database_url: String,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub http: reqwest::Client,
    /// Where `/metrics` is served, when the test asked for it (`Config::metrics_listen`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the admin API is served, when the test asked for it (`Config::admin_listen`).
    pub admin: Option<std::net::SocketAddr>,
    _stop: oneshot::Sender<()>,
}

/// A confidential or public client created for a test.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
}

impl TestClient {
    pub fn secret(&self) -> &str {
        self.secret.as_deref().expect("confidential client")
    }
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server whose clock is manual (tests move it with `app.clock.advance`).
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let database_url = fresh_database(backend).await?;
    Some(start_app(&database_url, Clock::manual(1_800_000_000), tweak).await)
}

/// Starts a server on an existing database (e.g. to restart one on the same address).
pub async fn start_app(
    database_url: &str,
    clock: Clock,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let store = tessera_store::connect(database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        clock: clock.clone(),
        ..Config::default()
    };
    tweak(&mut config);
    let server = Server::build(config, store.clone()).await.expect("bind");
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics_addr();
    let admin = server.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        base: format!("http://{addr}"),
        database_url: database_url.to_owned(),
        store,
        clock,
        http: http_client(),
        metrics,
        admin,
        _stop: stop,
    }
}

/// A client that never follows redirects, so tests see exactly what the server sent.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers a client straight in the store, as `tessera client create` would.
    pub async fn client(&self, registration: ClientRegistration) -> TestClient {
        let mut registered = register(&registration, self.clock.now()).unwrap();
        if let Some(secret) = &registered.secret {
            registered.client.secret_hash = Some(hash_secret(secret).unwrap());
        }
        self.store.create_client(&registered.client).await.unwrap();
        TestClient {
            id: registered.client.id.into_string(),
            secret: registered.secret.map(|s| s.expose().to_owned()),
        }
    }

    /// Creates a user with `password`, as `tessera user create` would; returns the user id.
    pub async fn user(&self, username: &str, password: &str) -> String {
        let password = tessera_core::secret::Secret::new(password);
        let user = tessera_core::user::register(username, &password, self.clock.now()).unwrap();
        self.store.create_user(&user).await.unwrap();
        user.id.into_string()
    }

    /// A confidential web client (authorization_code + refresh_token) for `redirect_uri`.
    pub async fn web_client(&self, redirect_uri: &str, scope: &str) -> TestClient {
        self.client(ClientRegistration {
            name: "Web App".into(),
            redirect_uris: vec![redirect_uri.into()],
            scope: scope.into(),
            ..Default::default()
        })
        .await
    }

    /// A resource server defining `scope`, registered as `tessera resource create` would,
    /// under a fresh identifier; returns its credentials and that identifier.
    pub async fn resource_server(&self, scope: &str) -> (TestClient, String) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let uri = format!("https://rs-{}-{n}.example/", self.addr.port());
        (self.resource_server_at(&uri, scope).await, uri)
    }

    /// A resource server under identifier `uri`, defining `scope`.
    pub async fn resource_server_at(&self, uri: &str, scope: &str) -> TestClient {
        let mut registered =
            tessera_core::resource::register_resource(uri, None, scope, self.clock.now()).unwrap();
        registered.client.secret_hash = Some(hash_secret(&registered.secret).unwrap());
        self.store
            .create_resource(&registered.resource, &registered.client)
            .await
            .unwrap();
        TestClient {
            id: registered.client.id.into_string(),
            secret: Some(registered.secret.expose().to_owned()),
        }
    }

    /// A confidential client_credentials client allowed `scope`.
    pub async fn m2m_client(&self, scope: &str) -> TestClient {
        self.client(ClientRegistration {
            name: "machine".into(),
            scope: scope.into(),
            ..Default::default()
        })
        .await
    }

    /// POSTs a form as `client` (HTTP Basic, or `client_id` alone for a public client);
    /// returns status, headers and JSON body.
    pub async fn post_basic(
        &self,
        path: &str,
        client: &TestClient,
        form: &[(&str, &str)],
    ) -> Reply {
        let req = self.http.post(self.url(path));
        // A public client has no secret: it names itself in the body (auth method `none`).
        let req = match &client.secret {
            Some(secret) => req.basic_auth(&client.id, Some(secret)).form(form),
            None => {
                let mut form = form.to_vec();
                form.push(("client_id", client.id.as_str()));
                req.form(&form)
            }
        };
        Reply::from(req.send().await.unwrap()).await
    }

    /// A client_credentials access token for `client`.
    pub async fn access_token(&self, client: &TestClient, scope: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let reply = self.post_basic("/token", client, &form).await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn introspect(&self, caller: &TestClient, token: &str) -> Value {
        let reply = self
            .post_basic("/introspect", caller, &[("token", token)])
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body
    }
}

/// Serves the demo API with `guard` on a free port; returns its base URL.
pub async fn serve_api(guard: &Guard) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tessera_demo::api::router(guard);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// Undoes the HTML escaping of the server's templates, for values read out of a page.
pub fn unescape(s: &str) -> String {
    s.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// Runs the `tessera` binary on `url` with `args`, `stdin` as its standard input.
pub async fn tessera_cli(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("TESSERA_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut input, stdin.as_bytes())
        .await
        .unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// What a test looks at in a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Self {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}
