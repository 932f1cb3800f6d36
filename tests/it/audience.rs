//! Issue 25's audiences: registered resource servers, RFC 8707 `resource` on every grant,
//! introspection only by a token's audience (RFC 7662 §4), and guards bound to a resource
//! that publish RFC 9728 metadata.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_guard::{Guard, ProtectedResource, RemoteConfig, RemoteIntrospection};
use tessera_server::local_guard::LocalValidator;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, TestClient, serve_api, spawn_app, tessera_cli};
use crate::person::{Person, VERIFIER, authorize_url, query_of};

both_backends!(
    introspection_answers_only_the_audience_and_the_client,
    a_token_for_one_resource_is_refused_by_a_guard_for_another,
    resource_on_client_credentials_selects_and_refuses,
    the_code_flow_binds_resources_and_refresh_narrows_never_widens,
    an_unknown_resource_at_authorize_goes_back_to_the_client,
);

const CALLBACK: &str = "http://127.0.0.1:5000/authorize";

/// A client_credentials request with `resource`s; the reply as it came.
async fn token_for(app: &TestApp, client: &TestClient, scope: &str, resources: &[&str]) -> Reply {
    let mut form = vec![("grant_type", "client_credentials"), ("scope", scope)];
    form.extend(resources.iter().map(|r| ("resource", *r)));
    app.post_basic("/token", client, &form).await
}

fn access_token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn introspection_answers_only_the_audience_and_the_client(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (a, a_uri) = app.resource_server("api").await;
    let (b, _) = app.resource_server("admin").await;
    let owner = app.m2m_client("api admin").await;
    let stranger = app.m2m_client("api").await;
    // No resource asked: the audience is every resource defining a granted scope.
    let token = access_token(&token_for(&app, &owner, "api", &[]).await);
    let seen = app.introspect(&a, &token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["aud"], json!([a_uri]));
    assert_eq!(app.introspect(&owner, &token).await["aud"], json!([a_uri]));
    for outsider in [&b, &stranger] {
        assert_eq!(
            app.introspect(outsider, &token).await,
            json!({"active": false})
        );
    }
    // Both scopes reach both resources.
    let both = access_token(&token_for(&app, &owner, "api admin", &[]).await);
    assert_eq!(app.introspect(&a, &both).await["active"], true);
    assert_eq!(app.introspect(&b, &both).await["active"], true);
    assert_eq!(
        app.introspect(&b, &both).await["aud"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // A scope no resource defines: no audience, so only the client itself learns about it.
    let plain = app.m2m_client("read").await;
    let unbound = access_token(&token_for(&app, &plain, "read", &[]).await);
    let own = app.introspect(&plain, &unbound).await;
    assert_eq!(own["active"], true);
    assert!(own.get("aud").is_none(), "{own}");
    assert_eq!(app.introspect(&a, &unbound).await, json!({"active": false}));
}

/// A guard bound to B, remote or local, refuses A's token with 401 `invalid_token` naming
/// B's metadata, serves that metadata, and lets B's own tokens through.
async fn a_token_for_one_resource_is_refused_by_a_guard_for_another(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, a_uri) = app.resource_server("api").await;
    let b_uri = "https://b.example/mcp";
    let b = app.resource_server_at(b_uri, "api").await;
    let owner = app.m2m_client("api").await;
    let for_a = access_token(&token_for(&app, &owner, "api", &[&a_uri]).await);
    let for_b = access_token(&token_for(&app, &owner, "api", &[b_uri]).await);

    let bound = ProtectedResource::new(b_uri, &app.base)
        .unwrap()
        .scopes_supported(["api"]);
    let mut config = RemoteConfig::new(app.url("/introspect"), &b.id, b.secret());
    config.cache_ttl = Duration::ZERO;
    config.clock = app.clock.clone();
    let remote =
        Guard::new(RemoteIntrospection::new(config).unwrap(), "b").for_resource(bound.clone());
    let local = Guard::new(
        LocalValidator::new(app.store.clone(), app.clock.clone()),
        "b",
    )
    .for_resource(bound);
    let metadata_url = "https://b.example/.well-known/oauth-protected-resource/mcp";
    for guard in [remote, local] {
        let api = serve_api(&guard).await;
        let call = |token: String| {
            let url = format!("{api}/api/data");
            async move {
                let reply = reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                Reply::from(reply).await
            }
        };
        let refused = call(for_a.clone()).await;
        assert_eq!(refused.status, 401, "{:?}", refused.body);
        let challenge = refused.header("www-authenticate").unwrap();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
            "{challenge}"
        );
        assert_eq!(call(for_b.clone()).await.status, 200);

        let anonymous = Reply::from(reqwest::get(format!("{api}/api/data")).await.unwrap()).await;
        assert_eq!(anonymous.status, 401);
        assert!(
            anonymous
                .header("www-authenticate")
                .unwrap()
                .contains("resource_metadata=")
        );

        for path in [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ] {
            let metadata: Value = reqwest::get(format!("{api}{path}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(metadata["resource"], b_uri, "{path}");
            assert_eq!(metadata["authorization_servers"], json!([app.base]));
            assert_eq!(metadata["scopes_supported"], json!(["api"]));
            assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
        }
    }
}

async fn resource_on_client_credentials_selects_and_refuses(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (a, a_uri) = app.resource_server("api").await;
    let (b, b_uri) = app.resource_server("api").await;
    let (_, admin_uri) = app.resource_server("admin").await;
    let owner = app.m2m_client("api").await;
    let only_b = access_token(&token_for(&app, &owner, "api", &[&b_uri]).await);
    assert_eq!(app.introspect(&a, &only_b).await, json!({"active": false}));
    assert_eq!(app.introspect(&b, &only_b).await["aud"], json!([b_uri]));
    // The same identifier spelt differently is the same resource.
    let spelt = b_uri.trim_end_matches('/').replace("https://", "HTTPS://");
    let same = access_token(&token_for(&app, &owner, "api", &[&spelt]).await);
    assert_eq!(app.introspect(&b, &same).await["aud"], json!([b_uri]));
    let two = access_token(&token_for(&app, &owner, "api", &[&a_uri, &b_uri]).await);
    assert_eq!(
        app.introspect(&a, &two).await["aud"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    for (why, resources) in [
        ("unregistered", vec!["https://nowhere.example/"]),
        ("not an absolute URI", vec!["api"]),
        ("a fragment", vec!["https://x.example/#f"]),
        (
            "a resource for scopes the client may not have",
            vec![admin_uri.as_str()],
        ),
        (
            "one good, one unknown",
            vec![a_uri.as_str(), "https://nowhere.example/"],
        ),
    ] {
        let reply = token_for(&app, &owner, "api", &resources).await;
        assert_eq!(reply.status, 400, "{why}: {:?}", reply.body);
        assert_eq!(reply.body["error"], "invalid_target", "{why}");
    }
}

/// RFC 8707 §2.1 and §2.2: the code carries the resources of the authorization request; the
/// token request picks some of them; a refresh narrows to any of them and never beyond.
async fn the_code_flow_binds_resources_and_refresh_narrows_never_widens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", crate::person::PASSWORD).await;
    let (a, a_uri) = app.resource_server("api").await;
    let (b, b_uri) = app.resource_server("api").await;
    let (c, c_uri) = app.resource_server("api").await;
    let web = app.web_client(CALLBACK, "api").await;
    let url = authorize_url(
        &app,
        &web.id,
        CALLBACK,
        &[("scope", "api"), ("resource", &a_uri), ("resource", &b_uri)],
    );
    let code = Person::new(&app).authorize(&url, "alice").await["code"].clone();
    let exchange = |resource: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ];
        form.extend(resource.map(|r| ("resource", r)));
        form.into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect::<Vec<_>>()
    };
    // Asking the token endpoint for a resource the code is not for fails and keeps the code.
    let wrong = app
        .post_basic("/token", &web, &pairs(&exchange(Some(&c_uri))))
        .await;
    assert_eq!(wrong.body["error"], "invalid_target", "{:?}", wrong.body);
    let issued = app
        .post_basic("/token", &web, &pairs(&exchange(Some(&a_uri))))
        .await;
    let access = access_token(&issued);
    assert_eq!(app.introspect(&a, &access).await["aud"], json!([a_uri]));
    assert_eq!(app.introspect(&b, &access).await, json!({"active": false}));
    assert_eq!(app.introspect(&c, &access).await, json!({"active": false}));

    // The refresh token keeps the whole grant's audience: it can narrow to B now.
    let mut refresh = issued.body["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = app
        .post_basic(
            "/token",
            &web,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", &b_uri),
            ],
        )
        .await;
    let narrowed = access_token(&refreshed);
    assert_eq!(app.introspect(&b, &narrowed).await["aud"], json!([b_uri]));
    assert_eq!(
        app.introspect(&a, &narrowed).await,
        json!({"active": false})
    );
    refresh = refreshed.body["refresh_token"].as_str().unwrap().to_owned();

    let widened = app
        .post_basic(
            "/token",
            &web,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh),
                ("resource", &c_uri),
            ],
        )
        .await;
    assert_eq!(widened.status, 400);
    assert_eq!(widened.body["error"], "invalid_target");
    // Refused before rotation: the refresh token still works, and without `resource` the
    // new access token is for the whole grant again.
    let whole = app
        .post_basic(
            "/token",
            &web,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
    let whole = access_token(&whole);
    assert_eq!(
        app.introspect(&a, &whole).await["aud"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn pairs<'a>(owned: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    owned.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn an_unknown_resource_at_authorize_goes_back_to_the_client(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let web = app.web_client(CALLBACK, "api").await;
    let url = authorize_url(
        &app,
        &web.id,
        CALLBACK,
        &[("scope", "api"), ("resource", "https://nowhere.example/")],
    );
    // Before anyone signs in: the error goes straight to the registered redirect URI.
    let page = Person::new(&app).get(&url).await;
    let location = page.location().expect("a redirect to the client");
    assert!(location.starts_with(CALLBACK), "{location}");
    let query = query_of(location);
    assert_eq!(query["error"], "invalid_target");
    assert_eq!(query["state"], "s-123");
    assert_eq!(query["iss"], app.base);
}

/// `tessera resource create|list|delete`, and the credentials it prints introspect.
#[tokio::test]
async fn the_cli_registers_lists_and_deletes_resources() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let url = &app.database_url;
    let created = tessera_cli(
        url,
        &[
            "resource",
            "create",
            "--uri",
            "https://API.example",
            "--name",
            "API",
            "--scope",
            "api read",
            "--json",
        ],
        "",
    )
    .await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["resource"], "https://api.example/");
    let rs = TestClient {
        id: created["client_id"].as_str().unwrap().to_owned(),
        secret: Some(created["client_secret"].as_str().unwrap().to_owned()),
    };
    let again = tessera_cli(
        url,
        &["resource", "create", "--uri", "https://api.example/"],
        "",
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already registered"));
    let bad = tessera_cli(url, &["resource", "create", "--uri", "not a uri"], "").await;
    assert!(!bad.status.success());

    let listed = tessera_cli(url, &["resource", "list", "--json"], "").await;
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        listed,
        json!([{ "resource": "https://api.example/", "name": "API", "scope": "api read",
                 "client_id": rs.id }])
    );

    let owner = app.m2m_client("read").await;
    let token = access_token(&token_for(&app, &owner, "read", &[]).await);
    assert_eq!(
        app.introspect(&rs, &token).await["aud"],
        json!(["https://api.example/"])
    );
    // A resource server cannot get tokens of its own.
    let own = token_for(&app, &rs, "read", &[]).await;
    assert_eq!(own.body["error"], "unauthorized_client", "{:?}", own.body);

    let deleted = tessera_cli(url, &["resource", "delete", "https://api.example"], "").await;
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    let gone = tessera_cli(url, &["resource", "delete", "https://api.example"], "").await;
    assert!(!gone.status.success());
    let listed = tessera_cli(url, &["resource", "list", "--json"], "").await;
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
        json!([])
    );
}
