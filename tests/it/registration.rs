//! Clients registering themselves (RFC 7591) and managing that (RFC 7592), under each
//! `--registration` policy.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::registration::{RegistrationPolicy, new_initial_access_token};
use tessera_server::Config;

use crate::both_backends;
use crate::helpers::{
    Backend, Reply, TestApp, TestClient, fresh_database, spawn_app, spawn_app_with, start_app,
    tessera_cli,
};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url, query_of};

const CALLBACK: &str = "http://127.0.0.1:5000/cb";
/// Open registrations per address and minute (`tessera_flow::throttle::REGISTRATION_LIMIT`).
const REGISTRATION_LIMIT: usize = 10;

both_backends!(
    off_has_no_endpoint_and_advertises_none,
    open_registers_a_confidential_client_that_gets_a_token,
    token_policy_needs_a_live_initial_access_token,
    bad_metadata_is_refused_with_rfc_7591_errors,
    a_public_client_runs_the_code_flow_after_consent_marked_unverified,
    management_needs_the_registration_access_token,
    a_burst_from_one_address_registers_at_most_the_limit,
    the_cli_creates_initial_access_tokens,
);

async fn app_with(backend: Backend, policy: RegistrationPolicy) -> Option<TestApp> {
    spawn_app_with(backend, |c: &mut Config| c.registration = policy).await
}

/// POSTs `metadata` to /register, with `bearer` as the initial access token if given.
async fn register(app: &TestApp, metadata: &Value, bearer: Option<&str>) -> Reply {
    let mut request = app.http.post(app.url("/register")).json(metadata);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    Reply::from(request.send().await.unwrap()).await
}

async fn metadata_document(app: &TestApp) -> Value {
    let reply = Reply::from(
        app.http
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200);
    reply.body
}

fn client_of(reply: &Reply) -> TestClient {
    TestClient {
        id: reply.body["client_id"].as_str().unwrap().to_owned(),
        secret: reply.body["client_secret"].as_str().map(str::to_owned),
    }
}

async fn off_has_no_endpoint_and_advertises_none(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    let reply = register(&app, &json!({"grant_types": ["client_credentials"]}), None).await;
    assert_eq!(reply.status, 404);
    let reply = Reply::from(app.http.get(app.url("/register/x")).send().await.unwrap()).await;
    assert_eq!(reply.status, 404);
    assert!(
        metadata_document(&app)
            .await
            .get("registration_endpoint")
            .is_none()
    );
    assert!(app.store.list_clients().await.unwrap().len() == 1);
}

async fn open_registers_a_confidential_client_that_gets_a_token(backend: Backend) {
    let Some(app) = app_with(backend, RegistrationPolicy::Open).await else {
        return;
    };
    assert_eq!(
        metadata_document(&app).await["registration_endpoint"],
        app.url("/register")
    );
    let _ = app.resource_server("api read").await;
    let reply = register(
        &app,
        &json!({
            "client_name": "Robot",
            "grant_types": ["client_credentials"],
            "scope": "api",
            "client_uri": "https://robot.example/",
            "software_statement_unknown_field": {"nested": true},
        }),
        None,
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = &reply.body;
    let id = body["client_id"].as_str().unwrap();
    assert!(body["client_secret"].as_str().unwrap().starts_with("tss_"));
    assert_eq!(body["client_secret_expires_at"], 0);
    assert_eq!(body["client_id_issued_at"], app.clock.now().as_secs());
    assert_eq!(body["client_name"], "Robot");
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
    assert_eq!(body["response_types"], json!([]));
    assert_eq!(body["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(body["scope"], "api");
    assert!(body.get("client_uri").is_none());
    assert!(
        body["registration_access_token"]
            .as_str()
            .unwrap()
            .starts_with("tsg_")
    );
    assert_eq!(
        body["registration_client_uri"],
        app.url(&format!("/register/{id}"))
    );
    let stored = app.store.get_client(id).await.unwrap().unwrap();
    assert!(stored.self_registered && !stored.skip_consent);

    let client = client_of(&reply);
    let token = app.access_token(&client, None).await;
    let introspected = app.introspect(&client, &token).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["scope"], "api");
    // Without a scope the client is given everything offered: every resource's scope.
    let reply = register(&app, &json!({"grant_types": ["client_credentials"]}), None).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["scope"], "api read");
    assert_eq!(reply.body["client_name"], reply.body["client_id"]);
}

async fn token_policy_needs_a_live_initial_access_token(backend: Backend) {
    let Some(app) = app_with(backend, RegistrationPolicy::Token).await else {
        return;
    };
    assert_eq!(
        metadata_document(&app).await["registration_endpoint"],
        app.url("/register")
    );
    let metadata = json!({"grant_types": ["client_credentials"]});
    let (token, record) = new_initial_access_token(app.clock.now(), 600).unwrap();
    app.store
        .create_initial_access_token(&record)
        .await
        .unwrap();
    for bearer in [None, Some("tsi_wrong"), Some("")] {
        let reply = register(&app, &metadata, bearer).await;
        assert_eq!(reply.status, 401, "{bearer:?}");
        assert_eq!(reply.body["error"], "invalid_token");
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let basic = app
        .http
        .post(app.url("/register"))
        .basic_auth("x", Some(token.expose()))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert!(app.store.list_clients().await.unwrap().is_empty());

    // One token serves several registrations until it expires.
    for _ in 0..2 {
        let reply = register(&app, &metadata, Some(token.expose())).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
    }
    app.clock.advance(600);
    let reply = register(&app, &metadata, Some(token.expose())).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body["error"], "invalid_token");
    assert_eq!(app.store.list_clients().await.unwrap().len(), 2);
}

async fn bad_metadata_is_refused_with_rfc_7591_errors(backend: Backend) {
    // Under `token`, so that the many attempts meet no per-address limit.
    let Some(app) = app_with(backend, RegistrationPolicy::Token).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    let (token, record) = new_initial_access_token(app.clock.now(), 600).unwrap();
    app.store
        .create_initial_access_token(&record)
        .await
        .unwrap();
    let bearer = Some(token.expose());
    let eleven: Vec<String> = (0..11).map(|i| format!("https://a.example/{i}")).collect();
    let cases = [
        (
            json!({"grant_types": ["password"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "response_types": ["code"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [CALLBACK], "response_types": ["token"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": [CALLBACK], "grant_types": ["authorization_code"], "response_types": []}),
            "invalid_client_metadata",
        ),
        (
            json!({"redirect_uris": ["javascript:alert(1)"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": ["http://app.example/cb"]}),
            "invalid_redirect_uri",
        ),
        (
            json!({"redirect_uris": [format!("https://a.example/{}", "x".repeat(2000))]}),
            "invalid_redirect_uri",
        ),
        (json!({"redirect_uris": eleven}), "invalid_redirect_uri"),
        (json!({}), "invalid_redirect_uri"),
        (
            json!({"client_name": "n".repeat(201), "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_method": "none", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (
            json!({"grant_types": ["client_credentials"], "scope": "api admin"}),
            "invalid_client_metadata",
        ),
        (
            json!({"client_name": 5, "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
        ),
        (json!(["not", "an", "object"]), "invalid_client_metadata"),
    ];
    for (metadata, error) in &cases {
        let reply = register(&app, metadata, bearer).await;
        assert_eq!(reply.status, 400, "{metadata}: {:?}", reply.body);
        assert_eq!(reply.body["error"], *error, "{metadata}: {:?}", reply.body);
        assert!(reply.body["error_description"].as_str().is_some());
    }
    let huge = json!({"client_name": "x".repeat(17 * 1024)});
    assert_eq!(register(&app, &huge, bearer).await.status, 413);
    let fine = json!({"grant_types": ["client_credentials"], "scope": "api"});
    assert_eq!(register(&app, &fine, bearer).await.status, 201);
    assert_eq!(app.store.list_clients().await.unwrap().len(), 2);
}

async fn a_public_client_runs_the_code_flow_after_consent_marked_unverified(backend: Backend) {
    let Some(app) = app_with(backend, RegistrationPolicy::Open).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    app.user("alice", PASSWORD).await;
    let reply = register(
        &app,
        &json!({
            "client_name": "Gadget <Official>",
            "redirect_uris": [CALLBACK],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }),
        None,
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert!(reply.body.get("client_secret").is_none());
    assert!(reply.body.get("client_secret_expires_at").is_none());
    assert_eq!(reply.body["token_endpoint_auth_method"], "none");
    let client = client_of(&reply);

    // No PKCE: refused, as for any public client.
    let person = Person::new(&app);
    let mut no_pkce = url::Url::parse(&app.url("/authorize")).unwrap();
    no_pkce
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", CALLBACK);
    let page = person.get(no_pkce.as_str()).await;
    let location = page.location().unwrap_or_default();
    assert!(
        location.starts_with(CALLBACK) && query_of(location).contains_key("error"),
        "{} {location}",
        page.status
    );

    let login = person
        .get(&authorize_url(&app, &client.id, CALLBACK, &[]))
        .await;
    let after = person.log_in(&login, "alice", PASSWORD).await;
    let consent = person.get(after.location().unwrap()).await;
    assert!(consent.is_consent(), "{}", consent.body);
    assert!(
        consent.body.contains("Gadget &#60;Official&#62;")
            || consent.body.contains("Gadget &lt;Official&gt;"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("(unverified)"), "{}", consent.body);
    let done = person.decide(&consent, "approve").await;
    let query = query_of(done.location().unwrap());
    let code = &query["code"];
    let reply = app
        .post_basic(
            "/token",
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["scope"], "api");
    assert!(reply.body["refresh_token"].as_str().is_some());

    // An operator's client of the same name is not marked.
    let web = app.web_client(CALLBACK, "api").await;
    let page = person
        .get(&authorize_url(&app, &web.id, CALLBACK, &[]))
        .await;
    assert!(page.is_consent() && !page.body.contains("(unverified)"));
}

async fn management_needs_the_registration_access_token(backend: Backend) {
    let Some(app) = app_with(backend, RegistrationPolicy::Open).await else {
        return;
    };
    let _ = app.resource_server("api read").await;
    let reply = register(
        &app,
        &json!({"client_name": "Managed", "grant_types": ["client_credentials"], "scope": "api"}),
        None,
    )
    .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let client = client_of(&reply);
    let token = reply.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let uri = reply.body["registration_client_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = register(&app, &json!({"grant_types": ["client_credentials"]}), None).await;
    let other_token = other.body["registration_access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let operated = app.m2m_client("api").await;

    // Refusals say nothing about whether the client exists.
    let unknown = app.url("/register/no-such-client");
    let operated_uri = app.url(&format!("/register/{}", operated.id));
    for (target, bearer) in [
        (uri.as_str(), None),
        (uri.as_str(), Some("tsg_wrong")),
        (uri.as_str(), Some(other_token.as_str())),
        (unknown.as_str(), Some(token.as_str())),
        (operated_uri.as_str(), Some(token.as_str())),
    ] {
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let mut request = app
                .http
                .request(method.clone(), target)
                .json(&json!({"client_id": client.id, "grant_types": ["client_credentials"]}));
            if let Some(b) = bearer {
                request = request.bearer_auth(b);
            }
            let reply = Reply::from(request.send().await.unwrap()).await;
            assert_eq!(reply.status, 401, "{method} {target} {bearer:?}");
            assert_eq!(reply.body["error"], "invalid_token");
        }
    }

    let read = Reply::from(app.http.get(&uri).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(read.body["client_id"], client.id);
    assert_eq!(read.body["client_name"], "Managed");
    assert_eq!(read.body["scope"], "api");
    assert!(read.body.get("client_secret").is_none());
    assert_eq!(read.body["registration_access_token"], token);

    // An update replaces the metadata; the secret stays.
    let put = |body: Value| app.http.put(&uri).bearer_auth(&token).json(&body).send();
    let mismatched = Reply::from(
        put(json!({"client_id": other.body["client_id"], "grant_types": ["client_credentials"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mismatched.status, 400);
    assert_eq!(mismatched.body["error"], "invalid_client_metadata");
    let wrong_secret = Reply::from(
        put(json!({"client_id": client.id, "client_secret": "tss_wrong", "grant_types": ["client_credentials"]}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(wrong_secret.status, 400);
    let updated = Reply::from(
        put(json!({
            "client_id": client.id,
            "client_secret": client.secret(),
            "client_name": "Renamed",
            "grant_types": ["client_credentials"],
            "scope": "read",
        }))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.body["client_name"], "Renamed");
    assert_eq!(updated.body["scope"], "read");
    let token_reply = app
        .post_basic("/token", &client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(token_reply.status, 200, "{:?}", token_reply.body);
    assert_eq!(token_reply.body["scope"], "read");

    let deleted = app
        .http
        .delete(&uri)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(deleted.headers()["cache-control"], "no-store");
    let again = Reply::from(app.http.get(&uri).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(again.status, 401);
    assert!(app.store.get_client(&client.id).await.unwrap().is_none());
    let token_reply = app
        .post_basic("/token", &client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(token_reply.status, 401);
    assert!(app.store.get_client(&operated.id).await.unwrap().is_some());
}

async fn a_burst_from_one_address_registers_at_most_the_limit(backend: Backend) {
    let Some(app) = app_with(backend, RegistrationPolicy::Open).await else {
        return;
    };
    let _ = app.resource_server("api").await;
    // Public clients: no secret to hash, so the hashing queue (shared by every test in this
    // process) cannot answer 503, and only the throttle decides.
    let metadata = json!({"redirect_uris": [CALLBACK], "token_endpoint_auth_method": "none"});
    // Each request on a connection of its own, all at once, from 127.0.0.1.
    let requests = (0..30).map(|_| {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let (url, metadata) = (app.url("/register"), metadata.clone());
        tokio::spawn(async move {
            Reply::from(http.post(url).json(&metadata).send().await.unwrap()).await
        })
    });
    let replies = tokio::time::timeout(
        Duration::from_secs(60),
        futures_join_all(requests.collect()),
    )
    .await
    .expect("the burst was answered in time");
    let created = replies.iter().filter(|r| r.status == 201).count();
    let throttled: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(created, REGISTRATION_LIMIT, "{replies:?}");
    assert_eq!(created + throttled.len(), 30, "{replies:?}");
    for reply in throttled {
        let retry: i64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    assert_eq!(
        app.store.list_clients().await.unwrap().len(),
        REGISTRATION_LIMIT + 1
    );
    // Another address is not held back; this one is again after the window.
    let elsewhere = Person::from_address(&app, "127.0.0.9".parse().unwrap());
    let reply = elsewhere
        .http
        .post(app.url("/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    app.clock.advance(60);
    assert_eq!(register(&app, &metadata, None).await.status, 201);
}

async fn futures_join_all(handles: Vec<tokio::task::JoinHandle<Reply>>) -> Vec<Reply> {
    let mut replies = Vec::new();
    for handle in handles {
        replies.push(handle.await.unwrap());
    }
    replies
}

async fn the_cli_creates_initial_access_tokens(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let out = tessera_cli(
        &url,
        &[
            "registration-token",
            "create",
            "--expires-in",
            "600",
            "--json",
        ],
        "",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("tsi_"));
    let refused = tessera_cli(
        &url,
        &["registration-token", "create", "--expires-in", "0"],
        "",
    )
    .await;
    assert!(!refused.status.success());

    let clock = tessera_core::clock::Clock::system();
    let app = start_app(&url, clock, |c| c.registration = RegistrationPolicy::Token).await;
    let metadata = json!({"grant_types": ["client_credentials"]});
    assert_eq!(register(&app, &metadata, Some(token)).await.status, 201);
    assert_eq!(
        register(&app, &metadata, Some("tsi_other")).await.status,
        401
    );
    // The store keeps its hash only.
    assert!(!app.store.list_clients().await.unwrap().is_empty());
}
