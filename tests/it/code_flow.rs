//! The authorization code flow over HTTP: login, consent, code, tokens, refresh rotation.

use serde_json::{Value, json};
use tessera_core::client::ClientRegistration;

use crate::both_backends;
use crate::helpers::{Backend, Reply, TestApp, TestClient, spawn_app, spawn_app_with, tessera_cli};
use crate::person::{CHALLENGE, PASSWORD, Person, VERIFIER, authorize_url};

const CALLBACK: &str = "http://127.0.0.1:5000/authorize";

both_backends!(
    login_consent_code_and_tokens,
    consent_is_remembered_until_more_is_asked,
    first_party_clients_skip_consent,
    deny_sends_access_denied_with_state,
    a_reused_code_is_refused_and_revokes_its_tokens,
    code_checks_bind_client_redirect_verifier_and_time,
    refresh_rotates_and_reuse_revokes_the_family,
    refresh_may_narrow_but_not_widen_the_scope,
    public_client_uses_pkce_and_rotating_refresh_tokens,
    authorization_request_by_post_form,
    logout_ends_the_session,
    issue_24_a_refresh_family_ends_at_its_lifetime_however_often_it_rotates,
    issue_24_set_password_and_delete_end_every_token_of_the_user,
    issue_24_within_the_grace_period_a_rotated_token_rotates_again,
);

async fn setup(backend: Backend, scope: &str) -> Option<(TestApp, TestClient, String)> {
    let app = spawn_app(backend).await?;
    let user_id = app.user("alice", PASSWORD).await;
    let client = app.web_client(CALLBACK, scope).await;
    Some((app, client, user_id))
}

async fn exchange(app: &TestApp, client: &TestClient, code: &str, verifier: &str) -> Reply {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier),
    ];
    app.post_basic("/token", client, &form).await
}

async fn refresh(app: &TestApp, client: &TestClient, token: &str, scope: Option<&str>) -> Reply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    app.post_basic("/token", client, &form).await
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

async fn login_consent_code_and_tokens(backend: Backend) {
    let Some((app, client, user_id)) = setup(backend, "api restricted").await else {
        return;
    };
    let person = Person::new(&app);
    let url = authorize_url(&app, &client.id, CALLBACK, &[("scope", "api")]);

    let login = person.get(&url).await;
    assert_eq!(login.status, 200);
    assert!(login.is_login());
    assert!(
        login.body.contains("Web App"),
        "the login page names the client"
    );
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(login.header(name), Some(value), "{name}");
    }
    let csp = login.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );

    let after_login = person.log_in(&login, "alice", PASSWORD).await;
    assert_eq!(after_login.status, 303);
    let cookie = after_login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let consent = person.get(after_login.location().unwrap()).await;
    assert!(consent.is_consent());
    assert!(
        consent.body.contains("<code>api</code>")
            && !consent.body.contains("<code>restricted</code>")
    );

    let done = person.decide(&consent, "approve").await;
    assert_eq!(done.status, 303);
    let location = done.location().unwrap();
    assert!(
        location.starts_with("http://127.0.0.1:5000/authorize?code=tsc_"),
        "{location}"
    );
    let params = crate::person::query_of(location);
    assert_eq!(params["state"], "s-123");
    assert_eq!(params["iss"], app.base);

    let reply = exchange(&app, &client, &params["code"], VERIFIER).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.body["scope"], "api");
    assert!(s(&reply.body["refresh_token"]).starts_with("tsr_"));
    let info = app
        .introspect(&client, s(&reply.body["access_token"]))
        .await;
    assert_eq!(info["sub"], user_id);
    assert_eq!(info["username"], "alice");
    assert_eq!(info["client_id"], client.id);
    assert_eq!(info["active"], true);
}

async fn consent_is_remembered_until_more_is_asked(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api restricted").await else {
        return;
    };
    let person = Person::new(&app);
    person
        .authorize(
            &authorize_url(&app, &client.id, CALLBACK, &[("scope", "api")]),
            "alice",
        )
        .await;
    // Same scope again: straight back with a code, no page at all.
    let again = person
        .get(&authorize_url(
            &app,
            &client.id,
            CALLBACK,
            &[("scope", "api")],
        ))
        .await;
    assert_eq!(again.status, 302);
    assert!(again.location().unwrap().contains("code=tsc_"));
    // More than was approved: the consent page again, listing what is asked now.
    let more = person
        .get(&authorize_url(
            &app,
            &client.id,
            CALLBACK,
            &[("scope", "api restricted")],
        ))
        .await;
    assert!(more.is_consent());
    assert!(more.body.contains("<code>restricted</code>"));
}

async fn first_party_clients_skip_consent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let client = app
        .client(ClientRegistration {
            name: "First party".into(),
            redirect_uris: vec![CALLBACK.into()],
            scope: "api".into(),
            skip_consent: true,
            ..Default::default()
        })
        .await;
    let person = Person::new(&app);
    let login = person
        .get(&authorize_url(&app, &client.id, CALLBACK, &[]))
        .await;
    let after = person.log_in(&login, "alice", PASSWORD).await;
    let next = person.get(after.location().unwrap()).await;
    assert_eq!(next.status, 302, "no consent page: {}", next.body);
    assert!(next.location().unwrap().contains("code=tsc_"));
}

async fn deny_sends_access_denied_with_state(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let person = Person::new(&app);
    let login = person
        .get(&authorize_url(&app, &client.id, CALLBACK, &[]))
        .await;
    let after = person.log_in(&login, "alice", PASSWORD).await;
    let consent = person.get(after.location().unwrap()).await;
    let denied = person.decide(&consent, "deny").await;
    let params = crate::person::query_of(denied.location().unwrap());
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "s-123");
    assert!(!params.contains_key("code"));
    // Denial is not remembered as consent.
    assert!(
        person
            .get(&authorize_url(&app, &client.id, CALLBACK, &[]))
            .await
            .is_consent()
    );
}

async fn a_reused_code_is_refused_and_revokes_its_tokens(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &client.id, CALLBACK, &[]), "alice")
        .await;
    let first = exchange(&app, &client, &params["code"], VERIFIER).await;
    assert_eq!(first.status, 200);
    let second = exchange(&app, &client, &params["code"], VERIFIER).await;
    assert_eq!(
        (second.status, s(&second.body["error"])),
        (400, "invalid_grant")
    );
    // RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert_eq!(
        app.introspect(&client, s(&first.body["access_token"]))
            .await,
        json!({"active": false})
    );
    let r = refresh(&app, &client, s(&first.body["refresh_token"]), None).await;
    assert_eq!(s(&r.body["error"]), "invalid_grant");
}

async fn code_checks_bind_client_redirect_verifier_and_time(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let other = app.web_client(CALLBACK, "api").await;
    let person = Person::new(&app);
    let url = authorize_url(&app, &client.id, CALLBACK, &[]);
    let code = person.authorize(&url, "alice").await["code"].clone();

    let wrong_verifier = "a".repeat(43);
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a TestClient);
    let cases: Vec<Case> = vec![
        (
            "wrong verifier",
            vec![
                ("code_verifier", &wrong_verifier),
                ("redirect_uri", CALLBACK),
            ],
            &client,
        ),
        (
            "missing verifier",
            vec![("redirect_uri", CALLBACK)],
            &client,
        ),
        (
            "malformed verifier",
            vec![("code_verifier", "short"), ("redirect_uri", CALLBACK)],
            &client,
        ),
        (
            "missing redirect_uri",
            vec![("code_verifier", VERIFIER)],
            &client,
        ),
        (
            "other redirect_uri",
            vec![
                ("code_verifier", VERIFIER),
                ("redirect_uri", "http://127.0.0.1:5000/other"),
            ],
            &client,
        ),
        (
            "other client",
            vec![("code_verifier", VERIFIER), ("redirect_uri", CALLBACK)],
            &other,
        ),
        (
            "verifier as challenge",
            vec![("code_verifier", CHALLENGE), ("redirect_uri", CALLBACK)],
            &client,
        ),
    ];
    for (name, extra, who) in cases {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ];
        form.extend(extra);
        let r = app.post_basic("/token", who, &form).await;
        assert_eq!(
            (r.status, s(&r.body["error"])),
            (400, "invalid_grant"),
            "{name}"
        );
    }
    // None of the failures consumed the code.
    assert_eq!(exchange(&app, &client, &code, VERIFIER).await.status, 200);

    // Codes live 60 seconds.
    let late = person.authorize(&url, "alice").await["code"].clone();
    app.clock.advance(60);
    let r = exchange(&app, &client, &late, VERIFIER).await;
    assert_eq!(s(&r.body["error"]), "invalid_grant");
    let r = exchange(&app, &client, "tsc_never-issued", VERIFIER).await;
    assert_eq!(s(&r.body["error"]), "invalid_grant");
}

async fn refresh_rotates_and_reuse_revokes_the_family(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &client.id, CALLBACK, &[]), "alice")
        .await;
    let first = exchange(&app, &client, &params["code"], VERIFIER)
        .await
        .body;
    let second = refresh(&app, &client, s(&first["refresh_token"]), None).await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_ne!(second.body["refresh_token"], first["refresh_token"]);
    assert_eq!(second.body["scope"], "api");
    // The rotated token is dead for introspection too.
    assert_eq!(
        app.introspect(&client, s(&first["refresh_token"])).await,
        json!({"active": false})
    );
    let third = refresh(&app, &client, s(&second.body["refresh_token"]), None)
        .await
        .body;

    // Someone replays the first refresh token: refused, and every token of the grant dies.
    let replay = refresh(&app, &client, s(&first["refresh_token"]), None).await;
    assert_eq!(
        (replay.status, s(&replay.body["error"])),
        (400, "invalid_grant")
    );
    for token in [
        &third["access_token"],
        &third["refresh_token"],
        &second.body["access_token"],
        &first["access_token"],
    ] {
        assert_eq!(
            app.introspect(&client, s(token)).await,
            json!({"active": false})
        );
    }
    let r = refresh(&app, &client, s(&third["refresh_token"]), None).await;
    assert_eq!(s(&r.body["error"]), "invalid_grant");
}

async fn refresh_may_narrow_but_not_widen_the_scope(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api restricted").await else {
        return;
    };
    let url = authorize_url(&app, &client.id, CALLBACK, &[("scope", "api restricted")]);
    let params = Person::new(&app).authorize(&url, "alice").await;
    let tokens = exchange(&app, &client, &params["code"], VERIFIER)
        .await
        .body;
    let narrow = refresh(&app, &client, s(&tokens["refresh_token"]), Some("api")).await;
    assert_eq!(narrow.status, 200);
    assert_eq!(narrow.body["scope"], "api");
    let wide = refresh(
        &app,
        &client,
        s(&narrow.body["refresh_token"]),
        Some("api restricted"),
    )
    .await;
    assert_eq!(
        (wide.status, s(&wide.body["error"])),
        (400, "invalid_scope")
    );
    let other = app.m2m_client("api").await;
    let stolen = refresh(&app, &other, s(&narrow.body["refresh_token"]), None).await;
    assert_eq!(s(&stolen.body["error"]), "unauthorized_client");
}

async fn public_client_uses_pkce_and_rotating_refresh_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let spa = app
        .client(ClientRegistration {
            name: "SPA".into(),
            public: true,
            redirect_uris: vec![CALLBACK.into()],
            scope: "api".into(),
            ..Default::default()
        })
        .await;
    let person = Person::new(&app);
    // Without PKCE the request is refused back to the client.
    let no_pkce = format!(
        "{}/authorize?response_type=code&client_id={}&state=z",
        app.base, spa.id
    );
    let page = person.get(&no_pkce).await;
    let params = crate::person::query_of(page.location().unwrap());
    assert_eq!(
        (params["error"].as_str(), params["state"].as_str()),
        ("invalid_request", "z")
    );

    let params = person
        .authorize(&authorize_url(&app, &spa.id, CALLBACK, &[]), "alice")
        .await;
    let tokens = exchange(&app, &spa, &params["code"], VERIFIER).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let rotated = refresh(&app, &spa, s(&tokens.body["refresh_token"]), None).await;
    assert_eq!(rotated.status, 200);
    let replay = refresh(&app, &spa, s(&tokens.body["refresh_token"]), None).await;
    assert_eq!(s(&replay.body["error"]), "invalid_grant");
    // A public client can revoke its own tokens by client_id (RFC 7009 §2.1).
    let token = s(&rotated.body["access_token"]);
    let r = app
        .http
        .post(app.url("/revoke"))
        .form(&[("token", token), ("client_id", spa.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn authorization_request_by_post_form(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let person = Person::new(&app);
    let fields: Vec<(String, String)> = [
        ("response_type", "code"),
        ("client_id", client.id.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let login = person.post("/authorize", &fields).await;
    assert!(login.is_login(), "{}", login.body);
    let after = person.log_in(&login, "alice", PASSWORD).await;
    assert!(person.get(after.location().unwrap()).await.is_consent());
}

async fn logout_ends_the_session(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    let person = Person::new(&app);
    let url = authorize_url(&app, &client.id, CALLBACK, &[]);
    person.authorize(&url, "alice").await;
    let home = person.get("/").await;
    assert!(home.body.contains("signed in as alice"));
    let confirm = person.get("/logout").await;
    let csrf = confirm.field("csrf_token").unwrap();
    let out = person.post("/logout", &[("csrf_token".into(), csrf)]).await;
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(person.get(&url).await.is_login());
}

/// A stolen refresh token used once in a while must not live forever: rotation hands out a
/// new token, never a longer sign-in.
async fn issue_24_a_refresh_family_ends_at_its_lifetime_however_often_it_rotates(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.lifetimes.refresh = 100).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let client = app.web_client(CALLBACK, "api").await;
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &client.id, CALLBACK, &[]), "alice")
        .await;
    let first = exchange(&app, &client, &params["code"], VERIFIER)
        .await
        .body;
    let signed_in_until = app.introspect(&client, s(&first["refresh_token"])).await["exp"]
        .as_i64()
        .unwrap();
    let mut token = s(&first["refresh_token"]).to_owned();
    for _ in 0..3 {
        app.clock.advance(30);
        let next = refresh(&app, &client, &token, None).await;
        assert_eq!(next.status, 200, "{:?}", next.body);
        token = s(&next.body["refresh_token"]).to_owned();
        let exp = app.introspect(&client, &token).await["exp"]
            .as_i64()
            .unwrap();
        assert_eq!(
            exp, signed_in_until,
            "rotation must not move the end of the sign-in"
        );
        let access_exp = app.introspect(&client, s(&next.body["access_token"])).await["exp"]
            .as_i64()
            .unwrap();
        assert!(access_exp <= signed_in_until);
        let left = signed_in_until - app.clock.now().as_secs();
        assert_eq!(next.body["expires_in"].as_i64().unwrap(), left.min(3600));
    }
    app.clock.advance(10);
    let late = refresh(&app, &client, &token, None).await;
    assert_eq!(
        (late.status, s(&late.body["error"])),
        (400, "invalid_grant")
    );
}

/// `tessera user set-password` is how an operator throws a thief out: every token of the
/// user ends with it, not only the sign-in sessions; `user delete` ends them too.
async fn issue_24_set_password_and_delete_end_every_token_of_the_user(backend: Backend) {
    let Some((app, client, _)) = setup(backend, "api").await else {
        return;
    };
    app.user("bob", PASSWORD).await;
    let mut pairs = Vec::new();
    for username in ["alice", "bob"] {
        let params = Person::new(&app)
            .authorize(&authorize_url(&app, &client.id, CALLBACK, &[]), username)
            .await;
        pairs.push(
            exchange(&app, &client, &params["code"], VERIFIER)
                .await
                .body,
        );
    }
    let m2m = app.m2m_client("api").await;
    let machine = app.access_token(&m2m, None).await;
    let out = tessera_cli(
        &app.database_url,
        &["user", "set-password", "alice", "--password-stdin"],
        "a new password\n",
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another process wrote: the server's readers see it within their snapshot age.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let [alice, bob] = &pairs[..] else { panic!() };
    for token in [&alice["access_token"], &alice["refresh_token"]] {
        assert_eq!(
            app.introspect(&client, s(token)).await,
            json!({"active": false})
        );
    }
    let r = refresh(&app, &client, s(&alice["refresh_token"]), None).await;
    assert_eq!(s(&r.body["error"]), "invalid_grant");
    // Nobody else's tokens.
    assert_eq!(
        app.introspect(&client, s(&bob["access_token"])).await["active"],
        true
    );
    assert_eq!(app.introspect(&m2m, &machine).await["active"], true);

    let out = tessera_cli(&app.database_url, &["user", "delete", "bob"], "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for token in [&bob["access_token"], &bob["refresh_token"]] {
        assert_eq!(
            app.introspect(&client, s(token)).await,
            json!({"active": false})
        );
    }
    assert_eq!(app.introspect(&m2m, &machine).await["active"], true);
}

/// Optional graceful rotation: a client whose response was lost presents the rotated token
/// again within the grace period and gets a fresh pair; after it, reuse revokes the family.
async fn issue_24_within_the_grace_period_a_rotated_token_rotates_again(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.lifetimes.refresh_grace = 10).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let client = app.web_client(CALLBACK, "api").await;
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &client.id, CALLBACK, &[]), "alice")
        .await;
    let first = exchange(&app, &client, &params["code"], VERIFIER)
        .await
        .body;
    let old = s(&first["refresh_token"]).to_owned();
    let second = refresh(&app, &client, &old, None).await.body;
    app.clock.advance(5);
    let again = refresh(&app, &client, &old, None).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    for token in [&second["access_token"], &again.body["access_token"]] {
        assert_eq!(app.introspect(&client, s(token)).await["active"], true);
    }
    app.clock.advance(6);
    let late = refresh(&app, &client, &old, None).await;
    assert_eq!(s(&late.body["error"]), "invalid_grant");
    for token in [&second["refresh_token"], &again.body["refresh_token"]] {
        assert_eq!(
            app.introspect(&client, s(token)).await,
            json!({"active": false})
        );
    }
}
