//! Issue 24's smaller findings, each reproduced over HTTP or through the CLI: HSTS, what a
//! code exchange tells about other clients' codes, unsafe redirect URIs, a second sign-in.

use serde_json::Value;

use crate::both_backends;
use crate::cli::tessera;
use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url};

const CALLBACK: &str = "http://127.0.0.1:5000/authorize";

both_backends!(
    issue_24_every_answer_carries_hsts_when_the_issuer_is_https,
    issue_24_another_clients_code_is_answered_like_an_unknown_one,
    issue_24_unsafe_redirect_uris_are_refused_at_registration,
    issue_24_a_second_sign_in_ends_the_first_session,
    issue_24_forwarded_addresses_are_believed_only_from_trusted_proxies,
);

async fn issue_24_every_answer_carries_hsts_when_the_issuer_is_https(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.issuer = Some("https://as.example".into())).await
    else {
        return;
    };
    let m2m = app.m2m_client("api").await;
    let token = app
        .post_basic("/token", &m2m, &[("grant_type", "client_credentials")])
        .await;
    for (what, hsts) in [
        (
            "/token",
            token.header("strict-transport-security").map(str::to_owned),
        ),
        ("/healthz", get_header(&app, "/healthz").await),
        ("/login", get_header(&app, "/login").await),
        ("/no-such-page", get_header(&app, "/no-such-page").await),
    ] {
        assert_eq!(hsts.as_deref(), Some("max-age=31536000"), "{what}");
    }
    let Some(plain) = spawn_app(backend).await else {
        return;
    };
    assert_eq!(get_header(&plain, "/healthz").await, None, "not over http");
}

async fn get_header(app: &TestApp, path: &str) -> Option<String> {
    let r = app.http.get(app.url(path)).send().await.unwrap();
    r.headers()
        .get("strict-transport-security")
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn issue_24_another_clients_code_is_answered_like_an_unknown_one(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let owner = app.web_client(CALLBACK, "api").await;
    let thief = app.web_client(CALLBACK, "api").await;
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &owner.id, CALLBACK, &[]), "alice")
        .await;
    let exchange = |code: &str| {
        [
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", CALLBACK.to_owned()),
            ("code_verifier", VERIFIER.to_owned()),
        ]
    };
    let (stolen, invented) = (exchange(&params["code"]), exchange("tsc_never-issued"));
    let stolen: Vec<(&str, &str)> = stolen.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let invented: Vec<(&str, &str)> = invented.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let by_thief = app.post_basic("/token", &thief, &stolen).await;
    let unknown = app.post_basic("/token", &thief, &invented).await;
    assert_eq!(by_thief.status, 400);
    assert_eq!(
        by_thief.body, unknown.body,
        "the answer must not tell the two apart"
    );
    // And the code still works for its own client.
    let own = app.post_basic("/token", &owner, &stolen).await;
    assert_eq!(own.status, 200, "{:?}", own.body);
}

async fn issue_24_unsafe_redirect_uris_are_refused_at_registration(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let create = |uri: &str, insecure: bool| {
        let mut args = vec!["client", "create", "--name", "x", "--redirect-uri"];
        args.push(uri);
        if insecure {
            args.push("--allow-insecure-redirect-uri");
        }
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        let url = app.database_url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tessera(&url, &args).await
        }
    };
    for bad in [
        "javascript://example.com/%0aalert(1)",
        "data:text/html,hi",
        "vbscript:x",
        "file:///etc/passwd",
        "https://user@app.example/cb",
        "myapp:/cb",
    ] {
        for insecure in [false, true] {
            let out = create(bad, insecure).await;
            assert!(!out.status.success(), "{bad} was registered");
        }
    }
    let plain = "http://app.example/cb";
    let out = create(plain, false).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--allow-insecure-redirect-uri"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(create(plain, true).await.status.success());
    for good in [
        "https://app.example/cb",
        "http://127.0.0.1:8000/cb",
        "http://[::1]:8000/cb",
        "http://localhost:8000/cb",
        "com.example.app:/oauth2redirect",
    ] {
        let out = create(good, false).await;
        assert!(
            out.status.success(),
            "{good}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let clients: Value = serde_json::from_slice(
        &tessera(&app.database_url, &["client", "list", "--json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(clients.as_array().unwrap().len(), 6);
}

async fn issue_24_a_second_sign_in_ends_the_first_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let person = Person::new(&app);
    let first_cookie = sign_in(&person).await;
    let second_cookie = sign_in(&person).await;
    assert_ne!(first_cookie, second_cookie);
    let signed_in = |cookie: String| {
        let app_http = app.http.clone();
        let url = app.url("/");
        async move {
            let page = app_http
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            page.contains("signed in as alice")
        }
    };
    assert!(signed_in(second_cookie).await);
    assert!(
        !signed_in(first_cookie).await,
        "the first session still works"
    );
}

/// Signs in through the login page; returns the `Cookie` header value of the new session.
async fn sign_in(person: &Person) -> String {
    let page = person.get("/login").await;
    let done = person.log_in(&page, "alice", PASSWORD).await;
    assert_eq!(done.status, 303);
    let set = done.header("set-cookie").unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Behind a load balancer every caller shares its address; with `--trusted-proxy` the
/// throttle keys on the address the proxy forwards, and from anyone else that header is
/// ignored, or every guesser could name a fresh address for each guess.
async fn issue_24_forwarded_addresses_are_believed_only_from_trusted_proxies(backend: Backend) {
    for trusted in [true, false] {
        let Some(app) = spawn_app_with(backend, |c| {
            if trusted {
                c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            }
        })
        .await
        else {
            return;
        };
        app.user("carol", PASSWORD).await;
        let attacker = Person::behind_proxy(&app, "203.0.113.5");
        let page = attacker.get("/login").await;
        for _ in 0..5 {
            assert_eq!(attacker.log_in(&page, "carol", "guess").await.status, 401);
        }
        assert_eq!(attacker.log_in(&page, "carol", PASSWORD).await.status, 429);
        let carol = Person::behind_proxy(&app, "198.51.100.7, 203.0.113.6");
        let page = carol.get("/login").await;
        let status = carol.log_in(&page, "carol", PASSWORD).await.status;
        if trusted {
            assert_eq!(status, 303, "carol's own address is not the guesser's");
        } else {
            assert_eq!(
                status, 429,
                "an untrusted X-Forwarded-For must change nothing"
            );
        }
    }
}
