//! Issue 28's admin API over real HTTP on its own listener: each operation on clients,
//! resources and users, pages, refusals without a live admin token (none, wrong, expired,
//! revoked with `tessera admin-token revoke`), bad input as problem details, the OpenAPI
//! document, and schemathesis driving the API from that document.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::admin::new_admin_token;
use tessera_core::clock::UnixTime;
use tessera_core::resource::Audience;
use tessera_core::scope::Scope;
use tessera_core::token::{RawToken, TokenKind, TokenRecord, new_family_id};
use tessera_store::Session;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, spawn_app_with, tessera_cli};

both_backends!(
    clients_are_created_read_listed_changed_and_deleted,
    a_clients_openid_connect_settings_are_set_and_changed,
    resources_are_created_read_changed_and_deleted,
    users_their_passwords_tokens_and_sessions,
    lists_come_in_pages_with_a_cursor,
    refusals_without_a_live_admin_token,
    bad_input_is_a_problem_never_a_server_error,
    the_audit_trail_names_the_admin_token_and_reads_in_pages,
);

/// The admin API of a test app, with a live admin token.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::from(request.bearer_auth(&self.token).send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.patch(self.url(path)).json(&body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }

    async fn delete(&self, path: &str) -> Reply {
        self.send(self.http.delete(self.url(path))).await
    }
}

/// A server with the admin listener on port 0, and an admin token made straight in the store.
async fn admin_app(backend: Backend) -> Option<(TestApp, Api)> {
    let app = spawn_app_with(backend, |c| {
        c.admin_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await?;
    let (token, record) = new_admin_token(app.clock.now(), None).unwrap();
    app.store.create_admin_token(&record).await.unwrap();
    let api = Api {
        base: format!("http://{}", app.admin.unwrap()),
        token: token.expose().to_owned(),
        http: app.http.clone(),
    };
    Some((app, api))
}

/// An answer that is a problem detail of `status` (RFC 9457), not cached.
fn assert_problem(reply: &Reply, status: u16) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(reply.body["status"], status);
    assert_eq!(reply.body["type"], "about:blank");
    assert!(reply.body["title"].is_string(), "{:?}", reply.body);
    assert!(reply.body["detail"].is_string(), "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

async fn clients_are_created_read_listed_changed_and_deleted(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let created = api
        .post(
            "/admin/v1/clients",
            json!({"name": "Web", "redirect_uris": ["https://app.example/cb"], "scope": "api"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let id = created.body["client_id"].as_str().unwrap().to_owned();
    let secret = created.body["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("tss_"));
    assert_eq!(
        created.body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    // The secret is the client's: it authenticates at /token (here, with a wrong grant).
    let stored = app.store.get_client(&id).await.unwrap().unwrap();
    assert!(tessera_core::secret::verify_secret(
        &tessera_core::secret::Secret::new(secret),
        stored.secret_hash.as_deref()
    ));

    let read = api.get(&format!("/admin/v1/clients/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "Web");
    assert!(read.body.get("client_secret").is_none(), "shown once only");

    let public = api
        .post(
            "/admin/v1/clients",
            json!({"name": "SPA", "public": true, "redirect_uris": ["http://127.0.0.1:5000/cb"]}),
        )
        .await;
    assert_eq!(public.status, 201);
    assert!(public.body.get("client_secret").is_none());
    assert_eq!(public.body["public"], true);

    let list = api.get("/admin/v1/clients").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(list.body["next"], Value::Null);

    let changed = api
        .patch(
            &format!("/admin/v1/clients/{id}"),
            json!({"name": "Web app", "redirect_uris": ["https://app.example/callback"],
                   "skip_consent": true}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["name"], "Web app");
    assert_eq!(
        changed.body["redirect_uris"],
        json!(["https://app.example/callback"])
    );
    assert_eq!(changed.body["skip_consent"], true);
    assert_eq!(changed.body["scope"], "api");
    // The registration rules of `client create` hold for a change too.
    let unsafe_uri = api
        .patch(
            &format!("/admin/v1/clients/{id}"),
            json!({"redirect_uris": ["javascript:alert(1)"]}),
        )
        .await;
    assert_problem(&unsafe_uri, 422);
    let m2m_public = api
        .post(
            "/admin/v1/clients",
            json!({"name": "x", "public": true, "grant_types": ["client_credentials"]}),
        )
        .await;
    assert_problem(&m2m_public, 422);

    // Its families with active tokens, then their revocation (with events, as the CLI's).
    let (raw, record) = person_token(&id, None, app.clock.now());
    app.store.insert_tokens(&[record]).await.unwrap();
    let families = api.get(&format!("/admin/v1/clients/{id}/tokens")).await;
    assert_eq!(families.status, 200);
    assert_eq!(families.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(families.body["items"][0]["active_tokens"], 1);
    let revoked = api.delete(&format!("/admin/v1/clients/{id}/tokens")).await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.body["revoked"], 1);
    let found = app.store.find_token(&raw.key()).await.unwrap().unwrap();
    assert!(found.revoked_at.is_some());
    let families = api.get(&format!("/admin/v1/clients/{id}/tokens")).await;
    assert_eq!(families.body["items"], json!([]));
    let events = app.store.revocation_events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "the revocation is announced");

    let deleted = api.delete(&format!("/admin/v1/clients/{id}")).await;
    assert_eq!(deleted.status, 204);
    assert_problem(&api.get(&format!("/admin/v1/clients/{id}")).await, 404);
    assert_problem(&api.delete(&format!("/admin/v1/clients/{id}")).await, 404);
    assert_problem(&api.get("/admin/v1/clients/nobody/tokens").await, 404);
    assert_problem(&api.delete("/admin/v1/clients/nobody/tokens").await, 404);
}

/// The settings `tessera client create` takes with `--post-logout-redirect-uri` and
/// `--id-token-signed-response-alg`, through the API: the ID token flow reads them from the
/// store (tests/it/oidc.rs signs with a client's RS256 choice).
async fn a_clients_openid_connect_settings_are_set_and_changed(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let created = api
        .post(
            "/admin/v1/clients",
            json!({"name": "RP", "redirect_uris": ["https://rp.example/cb"], "scope": "openid",
                   "post_logout_redirect_uris": ["https://rp.example/bye"],
                   "id_token_signed_response_alg": "RS256"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["client_id"].as_str().unwrap().to_owned();
    let expected = json!({"post_logout_redirect_uris": ["https://rp.example/bye"],
                          "id_token_signed_response_alg": "RS256"});
    assert_eq!(created.body["oidc"], expected);
    let stored = app.store.get_client_oidc(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.id_token_signed_response_alg.as_deref(),
        Some("RS256")
    );
    assert_eq!(
        api.get(&format!("/admin/v1/clients/{id}")).await.body["oidc"],
        expected
    );
    // Lists leave the settings out (one more read per client).
    let list = api.get("/admin/v1/clients").await;
    assert!(
        list.body["items"][0].get("oidc").is_none(),
        "{:?}",
        list.body
    );

    // A change of one setting keeps the other, and what else the client had.
    let changed = api
        .patch(
            &format!("/admin/v1/clients/{id}"),
            json!({"id_token_signed_response_alg": "ES256"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(
        changed.body["oidc"],
        json!({"post_logout_redirect_uris": ["https://rp.example/bye"],
               "id_token_signed_response_alg": "ES256"})
    );
    assert_eq!(
        changed.body["redirect_uris"],
        json!(["https://rp.example/cb"])
    );
    let changed = api
        .patch(
            &format!("/admin/v1/clients/{id}"),
            json!({"post_logout_redirect_uris": []}),
        )
        .await;
    assert_eq!(changed.body["oidc"]["post_logout_redirect_uris"], json!([]));
    assert_eq!(
        changed.body["oidc"]["id_token_signed_response_alg"],
        "ES256"
    );

    // A client without settings shows the defaults.
    let plain = api
        .post("/admin/v1/clients", json!({"name": "M2M", "scope": "api"}))
        .await;
    assert_eq!(
        plain.body["oidc"],
        json!({"post_logout_redirect_uris": [], "id_token_signed_response_alg": null})
    );

    // Refused as `client create` refuses them, and nothing changes.
    for bad in [
        json!({"post_logout_redirect_uris": ["javascript:alert(1)"]}),
        json!({"post_logout_redirect_uris": ["http://rp.example/bye"]}),
    ] {
        let refused = api.patch(&format!("/admin/v1/clients/{id}"), bad).await;
        assert_problem(&refused, 422);
    }
    let refused = api
        .patch(
            &format!("/admin/v1/clients/{id}"),
            json!({"id_token_signed_response_alg": "none"}),
        )
        .await;
    assert!(
        refused.status == 400 || refused.status == 422,
        "{:?}",
        refused.body
    );
    let stored = app.store.get_client_oidc(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.id_token_signed_response_alg.as_deref(),
        Some("ES256")
    );
    assert!(stored.post_logout_redirect_uris.is_empty());
}

async fn resources_are_created_read_changed_and_deleted(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let created = api
        .post(
            "/admin/v1/resources",
            json!({"resource": "https://API.example", "scope": "api read"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["resource"], "https://api.example/");
    assert_eq!(created.body["name"], "https://api.example/");
    assert!(
        created.body["client_secret"]
            .as_str()
            .unwrap()
            .starts_with("tss_")
    );
    let client_id = created.body["client_id"].as_str().unwrap().to_owned();
    let again = api
        .post(
            "/admin/v1/resources",
            json!({"resource": "https://api.example/"}),
        )
        .await;
    assert_problem(&again, 409);
    assert_problem(
        &api.post("/admin/v1/resources", json!({"resource": "not a uri"}))
            .await,
        422,
    );

    let path = "/admin/v1/resources/https%3A%2F%2Fapi.example%2F";
    let read = api.get(path).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["scope"], "api read");
    assert!(read.body.get("client_secret").is_none());
    let changed = api
        .patch(path, json!({"name": "The API", "scope": "api"}))
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["name"], "The API");
    assert_eq!(changed.body["scope"], "api");
    // Its client is changed as a resource, never as a client.
    let as_client = api
        .patch(
            &format!("/admin/v1/clients/{client_id}"),
            json!({"grant_types": ["client_credentials"]}),
        )
        .await;
    assert_problem(&as_client, 409);

    let list = api.get("/admin/v1/resources").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(api.delete(path).await.status, 204);
    assert_problem(&api.get(path).await, 404);
    assert_problem(&api.delete(path).await, 404);
    assert!(app.store.get_client(&client_id).await.unwrap().is_none());
}

/// An active access token of a new family for `client_id` (and the person `subject`).
fn person_token(client_id: &str, subject: Option<&str>, now: UnixTime) -> (RawToken, TokenRecord) {
    let raw = RawToken::generate(TokenKind::Access).unwrap();
    let record = TokenRecord {
        hash: raw.key(),
        kind: TokenKind::Access,
        client_id: client_id.into(),
        subject: subject.map(Into::into),
        scope: Scope::parse("api").unwrap(),
        issued_at: now,
        expires_at: now.saturating_add(3600),
        revoked_at: None,
        rotated_at: None,
        family_id: Some(new_family_id().unwrap()),
        audience: Audience::default(),
        username: None,
    };
    (raw, record)
}

async fn users_their_passwords_tokens_and_sessions(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let created = api
        .post(
            "/admin/v1/users",
            json!({"username": "alice", "password": "correct horse", "name": "Alice",
                   "email": "alice@example.com", "email_verified": true}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let sub = created.body["user_id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["email_verified"], true);
    assert!(created.body.get("password").is_none());
    assert_problem(
        &api.post(
            "/admin/v1/users",
            json!({"username": "alice", "password": "another one"}),
        )
        .await,
        409,
    );
    assert_problem(
        &api.post(
            "/admin/v1/users",
            json!({"username": "bob", "password": "short"}),
        )
        .await,
        422,
    );
    assert_problem(
        &api.post(
            "/admin/v1/users",
            json!({"username": "b o b", "password": "long enough"}),
        )
        .await,
        422,
    );
    let user = app
        .store
        .get_user_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert!(tessera_core::secret::verify_secret(
        &tessera_core::secret::Secret::new("correct horse"),
        Some(&user.password_hash)
    ));

    let read = api.get("/admin/v1/users/alice").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["name"], "Alice");
    let changed = api
        .patch("/admin/v1/users/alice", json!({"email": "a@example.org"}))
        .await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["email"], "a@example.org");
    assert_eq!(
        changed.body["email_verified"], false,
        "a new address is unverified"
    );
    assert_eq!(changed.body["name"], "Alice");
    assert_eq!(
        api.get("/admin/v1/users").await.body["items"][0]["username"],
        "alice"
    );

    // Tokens: a family listed, then revoked; sessions ended, tokens kept.
    let client = api
        .post(
            "/admin/v1/clients",
            json!({"name": "Web", "redirect_uris": ["https://app.example/cb"]}),
        )
        .await;
    let client_id = client.body["client_id"].as_str().unwrap().to_owned();
    let now = app.clock.now();
    let (first, first_record) = person_token(&client_id, Some(&sub), now);
    let (_, second_record) = person_token(&client_id, Some(&sub), now);
    app.store
        .insert_tokens(&[first_record, second_record])
        .await
        .unwrap();
    let families = api.get("/admin/v1/users/alice/tokens").await;
    assert_eq!(families.status, 200);
    let items = families.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["user_id"], sub.as_str());
    assert_eq!(items[0]["client_id"], client_id.as_str());

    let session = RawToken::generate(TokenKind::Access).unwrap();
    app.store
        .create_session(&Session {
            hash: session.key(),
            user_id: sub.as_str().into(),
            created_at: now,
            expires_at: now.saturating_add(3600),
        })
        .await
        .unwrap();
    let ended = api.delete("/admin/v1/users/alice/sessions").await;
    assert_eq!(ended.status, 200);
    assert_eq!(ended.body["ended"], 1);
    assert!(
        app.store
            .find_session_user(&session.key(), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.store
            .find_token(&first.key())
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );
    let revoked = api.delete("/admin/v1/users/alice/tokens").await;
    assert_eq!(revoked.body["revoked"], 2);
    assert!(
        !app.store
            .find_token(&first.key())
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );

    // A new password: the old one no longer works, and their tokens are revoked.
    let (third, third_record) = person_token(&client_id, Some(&sub), now);
    app.store.insert_tokens(&[third_record]).await.unwrap();
    assert_problem(
        &api.put(
            "/admin/v1/users/alice/password",
            json!({"password": "1234567"}),
        )
        .await,
        422,
    );
    let set = api
        .put(
            "/admin/v1/users/alice/password",
            json!({"password": "battery staple"}),
        )
        .await;
    assert_eq!(set.status, 204);
    let user = app
        .store
        .get_user_by_username("alice")
        .await
        .unwrap()
        .unwrap();
    assert!(tessera_core::secret::verify_secret(
        &tessera_core::secret::Secret::new("battery staple"),
        Some(&user.password_hash)
    ));
    assert!(
        !app.store
            .find_token(&third.key())
            .await
            .unwrap()
            .unwrap()
            .is_active(now)
    );

    for path in ["/admin/v1/users/nobody", "/admin/v1/users/nobody/tokens"] {
        assert_problem(&api.get(path).await, 404);
    }
    assert_problem(&api.delete("/admin/v1/users/nobody/sessions").await, 404);
    assert_problem(
        &api.put(
            "/admin/v1/users/nobody/password",
            json!({"password": "long enough"}),
        )
        .await,
        404,
    );
    assert_eq!(api.delete("/admin/v1/users/alice").await.status, 204);
    assert_problem(&api.get("/admin/v1/users/alice").await, 404);
    assert!(app.store.find_token(&third.key()).await.unwrap().is_none());
}

async fn lists_come_in_pages_with_a_cursor(backend: Backend) {
    let Some((_app, api)) = admin_app(backend).await else {
        return;
    };
    let mut made = Vec::new();
    for n in 0..5 {
        let created = api
            .post("/admin/v1/clients", json!({"name": format!("c{n}")}))
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        made.push(created.body["client_id"].as_str().unwrap().to_owned());
    }
    made.sort();
    let mut seen = Vec::new();
    let mut path = "/admin/v1/clients?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|c| c["client_id"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match page.body["next"].as_str() {
            Some(next) => path = format!("/admin/v1/clients?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, made, "every client once, in order");
    assert_eq!(
        api.get("/admin/v1/clients").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        5,
        "50 by default"
    );
    for bad in ["limit=0", "limit=201", "after=%2A%2A"] {
        assert_problem(&api.get(&format!("/admin/v1/clients?{bad}")).await, 422);
    }
    assert_problem(&api.get("/admin/v1/clients?limit=-1").await, 400);
    assert_problem(&api.get("/admin/v1/users?limit=x").await, 400);
}

async fn refusals_without_a_live_admin_token(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let refused = |reply: &Reply| {
        assert_problem(reply, 401);
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer")),
            "{:?}",
            reply.headers
        );
    };
    let bare = Reply::from(
        api.http
            .get(api.url("/admin/v1/clients"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    refused(&bare);
    for wrong in ["tsm_nothing", "", "Basic abc"] {
        let other = Api {
            base: api.base.clone(),
            token: wrong.to_owned(),
            http: api.http.clone(),
        };
        refused(&other.get("/admin/v1/users").await);
    }

    // Expired: made with a minute to live, a minute and a second ago.
    let (expiring, record) = new_admin_token(app.clock.now(), Some(60)).unwrap();
    app.store.create_admin_token(&record).await.unwrap();
    let short = Api {
        base: api.base.clone(),
        token: expiring.expose().to_owned(),
        http: api.http.clone(),
    };
    assert_eq!(short.get("/admin/v1/users").await.status, 200);
    app.clock.advance(61);
    refused(&short.get("/admin/v1/users").await);

    // Revoked with the command line, from another process.
    let out = tessera_cli(&app.database_url, &["admin-token", "create", "--json"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(printed["token"].as_str().unwrap().starts_with("tsm_"));
    assert_eq!(printed["expires_at"], Value::Null);
    let expiring = tessera_cli(
        &app.database_url,
        &["admin-token", "create", "--expires-in", "60", "--json"],
        "",
    )
    .await;
    let expiring: Value = serde_json::from_slice(&expiring.stdout).unwrap();
    assert!(expiring["expires_at"].as_i64().is_some(), "{expiring}");
    let cli = Api {
        base: api.base.clone(),
        token: printed["token"].as_str().unwrap().to_owned(),
        http: api.http.clone(),
    };
    let id = printed["id"].as_str().unwrap();
    // SQLite readers see another process's commit within 100 ms.
    let mut admitted = cli.get("/admin/v1/clients").await;
    for _ in 0..20 {
        if admitted.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        admitted = cli.get("/admin/v1/clients").await;
    }
    assert_eq!(admitted.status, 200);
    let listed = tessera_cli(&app.database_url, &["admin-token", "list", "--json"], "").await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id && t["live"] == true)
    );
    let out = tessera_cli(&app.database_url, &["admin-token", "revoke", id], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = tessera_cli(&app.database_url, &["admin-token", "revoke", id], "").await;
    assert!(
        !again.status.success(),
        "a second revocation finds no live token"
    );
    let mut answer = cli.get("/admin/v1/clients").await;
    for _ in 0..20 {
        if answer.status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = cli.get("/admin/v1/clients").await;
    }
    refused(&answer);
    // The other token is untouched; the document needs none.
    assert_eq!(api.get("/admin/v1/clients").await.status, 200);
    let document = api.http.get(api.url("/openapi.json")).send().await.unwrap();
    assert_eq!(document.status(), 200);
}

async fn bad_input_is_a_problem_never_a_server_error(backend: Backend) {
    let Some((_app, api)) = admin_app(backend).await else {
        return;
    };
    let raw = |body: &'static str, content_type: &'static str| {
        api.http
            .post(api.url("/admin/v1/clients"))
            .bearer_auth(&api.token)
            .header("content-type", content_type)
            .body(body)
    };
    assert_problem(
        &Reply::from(raw("{not json", "application/json").send().await.unwrap()).await,
        400,
    );
    assert_problem(
        &Reply::from(
            raw(r#"{"name": 7}"#, "application/json")
                .send()
                .await
                .unwrap(),
        )
        .await,
        422,
    );
    assert_problem(
        &Reply::from(raw(r#"{"name": "x"}"#, "text/plain").send().await.unwrap()).await,
        415,
    );
    let huge = json!({"name": "x".repeat(100 * 1024)});
    assert_problem(&api.post("/admin/v1/clients", huge).await, 413);
    let long = json!({"name": "x".repeat(201)});
    assert_problem(&api.post("/admin/v1/clients", long).await, 422);
    let wrong_method = api.put("/admin/v1/clients", json!({})).await;
    assert_problem(&wrong_method, 405);
    assert!(
        wrong_method
            .header("allow")
            .is_some_and(|a| a.contains("POST"))
    );
    for path in [
        "/admin/v1/clients/%00",
        "/admin/v1/clients/%FF%FE",
        "/admin/v1/users/%00/tokens",
        "/admin/v1/resources/%2F%2F%2F",
        "/admin/v1/resources/x",
        "/admin/v1/nothing",
    ] {
        let reply = api.get(path).await;
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path}: {}",
            reply.status
        );
        assert_problem(&reply, reply.status);
    }
}

/// Each admin change is in the audit trail as done by `admin:<token id>`, with the cause of
/// what it revoked; the trail reads oldest first, filtered, in pages.
async fn the_audit_trail_names_the_admin_token_and_reads_in_pages(backend: Backend) {
    let Some((app, api)) = admin_app(backend).await else {
        return;
    };
    let token_id = app.store.list_admin_tokens().await.unwrap()[0].id.clone();
    let created = api
        .post("/admin/v1/clients", json!({"name": "Audited"}))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let client_id = created.body["client_id"].as_str().unwrap().to_owned();
    let user = json!({"username": "dora", "password": "correct horse"});
    assert_eq!(api.post("/admin/v1/users", user).await.status, 201);
    let password = json!({"password": "battery staple"});
    let set = api.put("/admin/v1/users/dora/password", password).await;
    assert_eq!(set.status, 204, "{:?}", set.body);
    let deleted = api.delete(&format!("/admin/v1/clients/{client_id}")).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);

    let all = api.get("/admin/v1/audit?limit=200").await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    assert_eq!(all.header("cache-control"), Some("no-store"));
    let items = all.body["items"].as_array().unwrap();
    let said: Vec<(String, String, Value)> = items
        .iter()
        .map(|e| {
            let concerning = e["user"].as_str().or(e["client_id"].as_str());
            (
                e["actor"].as_str().unwrap().to_owned(),
                concerning.unwrap_or("-").to_owned(),
                e["detail"].clone(),
            )
        })
        .collect();
    let actor = format!("admin:{token_id}");
    for (concerning, detail) in [
        (client_id.as_str(), json!({"command": "client create"})),
        ("dora", json!({"command": "user create"})),
        ("dora", json!({"command": "user set-password"})),
        ("dora", json!({"cause": "password_changed"})),
        (client_id.as_str(), json!({"command": "client delete"})),
        (client_id.as_str(), json!({"cause": "client_deleted"})),
    ] {
        let wanted = (actor.clone(), concerning.to_owned(), detail);
        assert!(said.contains(&wanted), "{wanted:?} not in {said:?}");
    }
    let ids: Vec<u64> = items.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let text = all.body.to_string();
    for secret in [
        "correct horse",
        "battery staple",
        api.token.as_str(),
        created.body["client_secret"].as_str().unwrap(),
    ] {
        assert!(!text.contains(secret), "the trail holds a secret");
    }

    // Filtered by user, two at a time: the same events as unfiltered, in order.
    let of_dora: Vec<&Value> = items.iter().filter(|e| e["user"] == "dora").collect();
    let mut paged = Vec::new();
    let mut path = "/admin/v1/audit?user=dora&limit=2".to_owned();
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        paged.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next"].as_str() {
            Some(next) => path = format!("/admin/v1/audit?user=dora&limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!(paged.iter().collect::<Vec<_>>(), of_dora);
    let by_client = api
        .get(&format!("/admin/v1/audit?client_id={client_id}"))
        .await;
    let by_client = by_client.body["items"].as_array().unwrap();
    assert!(by_client.len() >= 3);
    assert!(
        by_client
            .iter()
            .all(|e| e["client_id"] == client_id.as_str())
    );
    let future = api.get("/admin/v1/audit?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["items"], json!([]));
    for bad in ["since=yesterday", "after=%2A%2A", "limit=0"] {
        assert_problem(&api.get(&format!("/admin/v1/audit?{bad}")).await, 422);
    }
    let anonymous = api
        .http
        .get(api.url("/admin/v1/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_every_operation_and_the_bearer_scheme() {
    let Some((_app, api)) = admin_app(Backend::Sqlite).await else {
        return;
    };
    let doc: Value = api
        .http
        .get(api.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    let operations: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    assert_eq!(operations.len(), 22, "{operations:#?}");
    for op in [
        "PUT /admin/v1/users/{username}/password",
        "DELETE /admin/v1/users/{username}/sessions",
        "GET /admin/v1/clients/{client_id}/tokens",
        "PATCH /admin/v1/resources/{resource}",
        "GET /admin/v1/audit",
    ] {
        assert!(operations.contains(&op.to_owned()), "{op}");
    }
    let create = &doc["paths"]["/admin/v1/clients"]["post"]["responses"];
    for status in ["201", "400", "401", "422", "503"] {
        assert!(create.get(status).is_some(), "{status}");
    }
    assert!(
        create["401"]["content"]
            .get("application/problem+json")
            .is_some()
    );
}

/// Whether `schemathesis` runs, and if not, why.
async fn schemathesis_version() -> Result<String, String> {
    let out = tokio::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .await
        .map_err(|e| format!("schemathesis cannot be run: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err("`schemathesis --version` failed".into())
    }
}

/// schemathesis generates requests from the document, valid and invalid, alone and in
/// sequences that follow the links it infers (create, then read, change, delete), and checks
/// every answer against it: no 5xx, documented statuses, content types and schemas, invalid
/// data refused, a missing token refused, created records found. Seeded: a failure
/// reproduces.
#[tokio::test]
async fn schemathesis_finds_no_answer_outside_the_document() {
    if let Err(e) = schemathesis_version().await {
        if std::env::var_os("CI").is_none() {
            eprintln!(
                "SKIPPED: {e}; scripts/test installs the pinned schemathesis; set CI=1 to make \
                 this fail"
            );
            return;
        }
        panic!("schemathesis is required in CI: {e}");
    }
    let Some((_app, api)) = admin_app(Backend::Sqlite).await else {
        return;
    };
    let report = std::env::temp_dir().join(format!("tessera-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&report).unwrap();
    let run = tokio::process::Command::new("schemathesis")
        .args(["run", &api.url("/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {}", api.token)])
        .args(["--checks", "all"])
        // Two checks do not apply, each for a reason JSON Schema cannot carry:
        // - positive_data_acceptance: schema-valid data can still break a rule (a redirect
        //   URI's scheme, a public client asking for client_credentials, a username with a
        //   space, a cursor this API never gave), and a 422 for it is right;
        // - use_after_free: `DELETE .../tokens` revokes a user's or client's tokens and
        //   `DELETE .../sessions` ends a user's sessions; the owner stays, so a `GET .../tokens`
        //   after it is a 200 (an empty page) by design. The tests above check that deleted
        //   clients, resources and users are gone.
        .args([
            "--exclude-checks",
            "positive_data_acceptance,use_after_free",
        ])
        // A generator's limit, not the API's: few random strings survive as path parameters
        // of `/resources/{resource}`.
        .args(["--suppress-health-check", "filter_too_much"])
        .args(["--max-examples", "30", "--seed", "28", "--workers", "2"])
        .args(["--request-timeout", "10", "--no-color"])
        .args(["--generation-database", "none"])
        .arg("--report-dir")
        .arg(report.join("report"))
        // Its cache (`.schemathesis/`) goes there too, not into the source tree.
        .current_dir(&report)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(110), run)
        .await
        .expect("schemathesis finished within 110 s")
        .unwrap();
    let _ = std::fs::remove_dir_all(&report);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
