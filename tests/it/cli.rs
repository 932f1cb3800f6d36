//! The `tessera` binary as an operator uses it: `client create/list/delete` and two
//! `serve` processes on one database, which must agree at once on every token.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::both_backends;
use crate::helpers::{Backend, TestClient, fresh_database, http_client};

const TESSERA: &str = env!("CARGO_BIN_EXE_tessera");

pub(crate) async fn tessera(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(TESSERA)
        .args(args)
        .env("TESSERA_DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

/// A confidential client allowed scope `api`, registered with `tessera client create`.
pub(crate) async fn create_client(database_url: &str, name: &str) -> TestClient {
    let args = [
        "client", "create", "--name", name, "--scope", "api", "--json",
    ];
    created(database_url, &args).await
}

/// Runs a `tessera client|resource create --json` command; the credentials it printed.
pub(crate) async fn created(database_url: &str, args: &[&str]) -> TestClient {
    let out = tessera(database_url, args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    TestClient {
        id: created["client_id"].as_str().unwrap().to_owned(),
        secret: created["client_secret"].as_str().map(str::to_owned),
    }
}

/// A `tessera serve` child process, killed when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Node {
    pub(crate) async fn start(database_url: &str) -> Node {
        Self::start_with(database_url, &[]).await
    }

    /// Starts `tessera serve` with extra arguments and waits until it is ready.
    pub(crate) async fn start_with(database_url: &str, extra: &[&str]) -> Node {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(TESSERA)
            .args(["serve", "--listen", &listen])
            .args(extra)
            .env("TESSERA_DATABASE_URL", database_url)
            // Refused requests log a warning each; a flood's would bury a failing test's message.
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let node = Node {
            child,
            base: format!("http://{listen}"),
        };
        let http = http_client();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{}/readyz", node.base)).send().await
                && r.status() == 200
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tessera serve did not become ready on {listen}");
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        client: &TestClient,
        form: &[(&str, &str)],
    ) -> Value {
        let r = http_client()
            .post(format!("{}{path}", self.base))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(form)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

both_backends!(two_nodes_on_one_database_agree_at_once, client_commands);

async fn two_nodes_on_one_database_agree_at_once(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let client = create_client(&url, "rs").await;

    let (a, b) = tokio::join!(Node::start(&url), Node::start(&url));
    let issued = a
        .post("/token", &client, &[("grant_type", "client_credentials")])
        .await;
    let token = issued["access_token"].as_str().unwrap();
    assert_eq!(
        b.post("/introspect", &client, &[("token", token)]).await["active"],
        true
    );
    b.post("/revoke", &client, &[("token", token)]).await;
    assert_eq!(
        a.post("/introspect", &client, &[("token", token)]).await,
        json!({"active": false})
    );
}

async fn client_commands(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let out = tessera(
        &url,
        &[
            "client",
            "create",
            "--name",
            "web app",
            "--redirect-uri",
            "http://127.0.0.1:5000/authorize",
            "--scope",
            "api restricted",
            "--json",
        ],
    )
    .await;
    assert!(out.status.success());
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        created.as_object().unwrap().len(),
        2,
        "exactly client_id and client_secret"
    );
    let id = created["client_id"].as_str().unwrap();
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("tss_")
    );

    let public = tessera(
        &url,
        &[
            "client",
            "create",
            "--name",
            "spa",
            "--public",
            "--redirect-uri",
            "http://127.0.0.1:5000/cb",
            "--json",
        ],
    )
    .await;
    let public: Value = serde_json::from_slice(&public.stdout).unwrap();
    assert_eq!(public["client_secret"], Value::Null);

    let list = tessera(&url, &["client", "list", "--json"]).await;
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id)
        .unwrap();
    assert_eq!(
        web["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(web["scope"], "api restricted");
    assert_eq!(
        web["redirect_uris"],
        json!(["http://127.0.0.1:5000/authorize"])
    );
    // The secret is nowhere in the listing.
    assert!(
        !String::from_utf8_lossy(&tessera(&url, &["client", "list", "--json"]).await.stdout)
            .contains(created["client_secret"].as_str().unwrap())
    );

    for bad in [
        vec![
            "client",
            "create",
            "--name",
            "x",
            "--grant-type",
            "password",
        ],
        vec![
            "client",
            "create",
            "--name",
            "x",
            "--grant-type",
            "implicit",
        ],
        vec![
            "client",
            "create",
            "--name",
            "x",
            "--redirect-uri",
            "https://a.example/cb#frag",
        ],
        vec![
            "client",
            "create",
            "--name",
            "x",
            "--public",
            "--grant-type",
            "client_credentials",
        ],
        vec!["client", "create", "--name", "x", "--scope", "a\"b"],
    ] {
        let out = tessera(&url, &bad).await;
        assert!(!out.status.success(), "{bad:?} should fail");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }

    assert!(
        tessera(&url, &["client", "delete", id])
            .await
            .status
            .success()
    );
    assert!(
        !tessera(&url, &["client", "delete", id])
            .await
            .status
            .success()
    );
    // Ids are random base64url, so one in 64 starts with `-`: it is an id, not an option.
    let hyphen = tessera(&url, &["client", "delete", "-iXYZ"]).await;
    assert!(!hyphen.status.success());
    assert!(String::from_utf8_lossy(&hyphen.stderr).contains("no client with id -iXYZ"));
    let list = tessera(&url, &["client", "list", "--json"]).await;
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
}
