//! The grant flows without HTTP, on SQLite and PostgreSQL: each flow over a real store, a
//! manual clock and typed inputs. PostgreSQL cases skip without a server, except in CI.

// A test crate: a failed unwrap is a failed test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tessera_core::authorize::PkcePolicy;
use tessera_core::client::{ClientRegistration, register};
use tessera_core::clock::{Clock, UnixTime};
use tessera_core::form::FormParams;
use tessera_core::grant::{Lifetimes, TokenResponse};
use tessera_core::oidc::KeyEncryptionKey;
use tessera_core::resource::Audience;
use tessera_core::secret::{Secret, hash_secret};
use tessera_core::token::{AuthorizationCode, SessionId, TokenKey};
use tessera_flow::authorize::AuthorizeStep;
use tessera_flow::login::SignIn;
use tessera_flow::revoke::Revocation;
use tessera_flow::token::{CodeExchange, CodePresented, Narrowing, Rotation};
use tessera_flow::{FlowError, Flows, Settings};
use tessera_store::{Store, testing};

const START: UnixTime = UnixTime::from_secs(1_700_000_000);
const REDIRECT: &str = "https://app.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A node's flows over a fresh store, or `None` (skip) for PostgreSQL without a server.
async fn flows(postgres: bool) -> Option<Flows> {
    let url = if postgres {
        testing::postgres_test_database()
            .await
            .expect("PostgreSQL is required in CI")?
    } else {
        testing::fresh_sqlite_url().unwrap().0
    };
    let store: Arc<dyn Store> = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    Some(Flows::new(
        store,
        Settings {
            issuer: "https://as.example".into(),
            lifetimes: Lifetimes::default(),
            pkce: PkcePolicy::default(),
            clock: Clock::manual(START),
            session_ttl: 3600,
            client_cache_ttl: Duration::from_secs(2),
            registration: Default::default(),
            key_encryption_key: None,
            key_reload_interval: Duration::from_secs(10),
        },
    ))
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    if let Some(f) = crate::flows(false).await { super::$name(f).await }
                }
                #[tokio::test]
                async fn postgres() {
                    if let Some(f) = crate::flows(true).await { super::$name(f).await }
                }
            }
        )*
    };
}

/// Issue 28: the admin API's flows.
mod admin;

both_backends!(
    client_credentials_issues_an_active_token,
    a_code_is_exchanged_once_and_a_replay_revokes_its_tokens,
    a_code_presented_by_another_client_is_refused_and_not_consumed,
    a_reused_refresh_token_revokes_its_family,
    revocation_reaches_the_family_of_a_refresh_token_only,
    sign_in_starts_a_session_and_sign_out_ends_it,
    consent_is_asked_once_and_a_denial_goes_back_to_the_client,
    an_unknown_client_is_refused_without_a_redirect,
    issue_24_a_burst_of_correct_first_authentications_is_not_throttled,
    issue_24_wrong_client_secrets_are_throttled_without_hashing,
    issue_26_a_replayed_code_and_a_reused_refresh_token_append_revocation_events,
    issue_26_a_resource_server_streams_the_revocations_for_it_alone,
);

/// A registered client and its Basic header (or `None` for a public client).
struct TestClient {
    id: String,
    basic: Option<Vec<u8>>,
}

async fn client(flows: &Flows, registration: ClientRegistration) -> TestClient {
    let mut registered = register(&registration, START).unwrap();
    let basic = registered.secret.as_ref().map(|secret| {
        registered.client.secret_hash = Some(hash_secret(secret).unwrap());
        let pair = format!("{}:{}", registered.client.id, secret.expose());
        format!("Basic {}", STANDARD.encode(pair)).into_bytes()
    });
    flows.store.create_client(&registered.client).await.unwrap();
    TestClient {
        id: registered.client.id.into_string(),
        basic,
    }
}

async fn web_client(flows: &Flows) -> TestClient {
    client(
        flows,
        ClientRegistration {
            name: "web".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "api read".into(),
            skip_consent: true,
            ..Default::default()
        },
    )
    .await
}

fn form(pairs: &[(&str, &str)]) -> FormParams {
    FormParams::from_pairs(pairs.iter().copied())
}

async fn token(
    flows: &Flows,
    c: &TestClient,
    pairs: &[(&str, &str)],
) -> Result<TokenResponse, FlowError> {
    flows.token(c.basic.as_deref(), &form(pairs), None).await
}

async fn active(flows: &Flows, caller: &TestClient, token: &str) -> bool {
    flows
        .introspect(caller.basic.as_deref(), &form(&[("token", token)]), None)
        .await
        .unwrap()
        .active
}

fn invalid_grant(result: Result<impl std::fmt::Debug, FlowError>) {
    match result {
        Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "invalid_grant"),
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

/// Signs `username` in (creating the user) and walks the authorization request to its code.
async fn code_for(flows: &Flows, c: &TestClient, username: &str) -> AuthorizationCode {
    let password = Secret::new("correct horse");
    let user = tessera_core::user::register(username, &password, START).unwrap();
    flows.store.create_user(&user).await.unwrap();
    let SignIn::SignedIn { session } = flows.sign_in(username, password, None, None).await.unwrap()
    else {
        panic!("sign-in refused");
    };
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={REDIRECT}&scope=api&state=s1\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        c.id
    );
    let step = flows
        .authorize(query.as_bytes(), Some(&session))
        .await
        .unwrap();
    let AuthorizeStep::Redirect(location) = step else {
        panic!("expected a redirect with a code, got {step:?}");
    };
    let url = url::Url::parse(&location).unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    let param = |name| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("s1"));
    assert_eq!(param("iss").as_deref(), Some("https://as.example"));
    AuthorizationCode::new(param("code").unwrap())
}

async fn client_credentials_issues_an_active_token(flows: Flows) {
    let m2m = client(
        &flows,
        ClientRegistration {
            name: "m2m".into(),
            scope: "api read".into(),
            ..Default::default()
        },
    )
    .await;
    let issued = token(
        &flows,
        &m2m,
        &[("grant_type", "client_credentials"), ("scope", "api")],
    )
    .await
    .unwrap();
    assert_eq!(issued.scope, "api");
    assert!(issued.refresh_token.is_none(), "RFC 6749 §4.4.3");
    let record = flows
        .store
        .find_token(&issued.access_token.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.client_id, m2m.id);
    assert!(active(&flows, &m2m, issued.access_token.expose()).await);
    let wider = token(
        &flows,
        &m2m,
        &[("grant_type", "client_credentials"), ("scope", "admin")],
    );
    match wider.await {
        Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "invalid_scope"),
        other => panic!("{other:?}"),
    }
}

async fn a_code_is_exchanged_once_and_a_replay_revokes_its_tokens(flows: Flows) {
    let web = web_client(&flows).await;
    let code = code_for(&flows, &web, "alice").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let issued = token(&flows, &web, &exchange).await.unwrap();
    let refresh = issued.refresh_token.clone().unwrap();
    assert!(active(&flows, &web, issued.access_token.expose()).await);

    // The same exchange again, through the grant function: a typed outcome.
    let registered = flows.clients.client(&web.id).await.unwrap().unwrap();
    let presented = CodePresented {
        code: &code,
        redirect_uri: Some(REDIRECT),
        code_verifier: Some(VERIFIER),
        resources: &Audience::default(),
    };
    let store = &*flows.store;
    let replay = tessera_flow::token::exchange_code(
        store,
        Lifetimes::default(),
        &registered,
        presented,
        flows.now(),
    )
    .await
    .unwrap();
    assert!(
        matches!(replay, CodeExchange::Replayed { revoked: 2, .. }),
        "{replay:?}"
    );
    assert!(!active(&flows, &web, issued.access_token.expose()).await);
    assert!(!active(&flows, &web, refresh.expose()).await);
    // And through the endpoint's flow: refused as an unknown code.
    invalid_grant(token(&flows, &web, &exchange).await);
}

async fn a_code_presented_by_another_client_is_refused_and_not_consumed(flows: Flows) {
    let web = web_client(&flows).await;
    let other = web_client(&flows).await;
    let code = code_for(&flows, &web, "bob").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    invalid_grant(token(&flows, &other, &exchange).await);
    let wrong_verifier = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &"a".repeat(43)),
    ];
    invalid_grant(token(&flows, &web, &wrong_verifier).await);
    let issued = token(&flows, &web, &exchange).await.unwrap();
    assert!(active(&flows, &web, issued.access_token.expose()).await);
}

async fn a_reused_refresh_token_revokes_its_family(flows: Flows) {
    let web = web_client(&flows).await;
    let code = code_for(&flows, &web, "carol").await;
    let first = token(
        &flows,
        &web,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
    .unwrap();
    let old = first.refresh_token.unwrap();
    let registered = flows.clients.client(&web.id).await.unwrap().unwrap();
    let store = &*flows.store;
    let no_resource = Audience::default();
    let keep_all = Narrowing {
        scope: None,
        resources: &no_resource,
    };
    let rotate = |now| {
        tessera_flow::token::refresh(
            store,
            Lifetimes::default(),
            &registered,
            &old,
            keep_all,
            now,
        )
    };
    let Rotation::Issued(second) = rotate(flows.now()).await.unwrap() else {
        panic!("the first rotation must issue");
    };
    assert_eq!(second.scope, "api");
    assert!(active(&flows, &web, second.access_token.expose()).await);
    let reused = rotate(flows.now() + 1).await.unwrap();
    // The whole family: the first pair (its refresh token rotated, not yet revoked) and the
    // second pair.
    assert!(
        matches!(reused, Rotation::Reused { revoked: 4, .. }),
        "{reused:?}"
    );
    let new_refresh = second.refresh_token.unwrap();
    for dead in [second.access_token.expose(), new_refresh.expose()] {
        assert!(!active(&flows, &web, dead).await);
    }
    let again = [
        ("grant_type", "refresh_token"),
        ("refresh_token", new_refresh.expose()),
    ];
    invalid_grant(token(&flows, &web, &again).await);
}

async fn revocation_reaches_the_family_of_a_refresh_token_only(flows: Flows) {
    let web = web_client(&flows).await;
    let other = web_client(&flows).await;
    let mut pairs = Vec::new();
    for username in ["dave", "erin"] {
        let code = code_for(&flows, &web, username).await;
        let exchange = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ];
        pairs.push(token(&flows, &web, &exchange).await.unwrap());
    }
    let revoke = |caller: &TestClient, token: &str| {
        let form = form(&[("token", token)]);
        let basic = caller.basic.clone();
        let flows = flows.clone();
        async move { flows.revoke(basic.as_deref(), &form, None).await.unwrap() }
    };
    let [dave, erin] = &pairs[..] else { panic!() };
    let dave_refresh = dave.refresh_token.clone().unwrap();
    assert_eq!(
        revoke(&other, dave_refresh.expose()).await,
        Revocation::NotOwned
    );
    assert!(active(&flows, &web, dave.access_token.expose()).await);
    assert_eq!(revoke(&web, "tsa_unknown").await, Revocation::Unknown);
    // An access token goes alone.
    assert_eq!(
        revoke(&web, erin.access_token.expose()).await,
        Revocation::Revoked { count: 1 }
    );
    assert!(active(&flows, &web, erin.refresh_token.clone().unwrap().expose()).await);
    // A refresh token takes its family along (RFC 7009 §2.1), and only its own.
    assert_eq!(
        revoke(&web, dave_refresh.expose()).await,
        Revocation::Revoked { count: 2 }
    );
    assert!(!active(&flows, &web, dave.access_token.expose()).await);
    let key = TokenKey::of(erin.refresh_token.clone().unwrap().expose());
    let erin_refresh = flows.store.find_token(&key).await.unwrap().unwrap();
    assert!(erin_refresh.revoked_at.is_none());
}

async fn sign_in_starts_a_session_and_sign_out_ends_it(flows: Flows) {
    let password = Secret::new("correct horse");
    let user = tessera_core::user::register("frank", &password, START).unwrap();
    flows.store.create_user(&user).await.unwrap();
    let wrong = flows
        .sign_in("frank", Secret::new("wrong horse"), None, None)
        .await
        .unwrap();
    assert!(matches!(wrong, SignIn::Failed), "{wrong:?}");
    let first = flows.sign_in("frank", password.clone(), None, None);
    let SignIn::SignedIn { session: first } = first.await.unwrap() else {
        panic!("sign-in refused");
    };
    let again = flows.sign_in("frank", password, None, Some(&first));
    let SignIn::SignedIn { session } = again.await.unwrap() else {
        panic!("sign-in refused");
    };
    // A second sign-in in the same browser ends the first session.
    assert!(flows.session_user(Some(&first)).await.unwrap().is_none());
    let signed_in = flows.session_user(Some(&session)).await.unwrap().unwrap();
    assert_eq!(signed_in.id, user.id);
    assert!(!format!("{session:?}").contains(session.expose()));
    let stranger = SessionId::new("not-a-session");
    assert!(flows.session_user(Some(&stranger)).await.unwrap().is_none());
    flows.sign_out(Some(&session)).await.unwrap();
    assert!(flows.session_user(Some(&session)).await.unwrap().is_none());
}

async fn consent_is_asked_once_and_a_denial_goes_back_to_the_client(flows: Flows) {
    let third_party = client(
        &flows,
        ClientRegistration {
            name: "third party".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "api read".into(),
            ..Default::default()
        },
    )
    .await;
    let password = Secret::new("correct horse");
    let user = tessera_core::user::register("grace", &password, START).unwrap();
    flows.store.create_user(&user).await.unwrap();
    let SignIn::SignedIn { session } = flows.sign_in("grace", password, None, None).await.unwrap()
    else {
        panic!("sign-in refused");
    };
    let query = |scope: &str| {
        format!(
            "response_type=code&client_id={}&scope={scope}&state=s2\
             &code_challenge={CHALLENGE}&code_challenge_method=S256",
            third_party.id
        )
    };
    let api = query("api");
    let step = flows
        .authorize(api.as_bytes(), Some(&session))
        .await
        .unwrap();
    assert!(matches!(step, AuthorizeStep::Consent { .. }), "{step:?}");

    // Without a session the consent form sends the person to sign in again.
    let step = flows.decide(api.as_bytes(), None, "approve").await.unwrap();
    let AuthorizeStep::SignIn { return_to, .. } = step else {
        panic!("{step:?}");
    };
    assert!(return_to.starts_with("/authorize?response_type=code&client_id="));

    let step = flows
        .decide(api.as_bytes(), Some(&session), "approve")
        .await
        .unwrap();
    let AuthorizeStep::Redirect(location) = step else {
        panic!("{step:?}");
    };
    assert!(
        location.contains("code=") && location.contains("state=s2"),
        "{location}"
    );
    // Remembered: the same scope again goes straight to a code, a wider one asks again.
    let step = flows
        .authorize(api.as_bytes(), Some(&session))
        .await
        .unwrap();
    assert!(
        matches!(&step, AuthorizeStep::Redirect(l) if l.contains("code=")),
        "{step:?}"
    );
    let wider = query("api%20read");
    let step = flows
        .authorize(wider.as_bytes(), Some(&session))
        .await
        .unwrap();
    assert!(matches!(step, AuthorizeStep::Consent { .. }), "{step:?}");

    let step = flows
        .decide(wider.as_bytes(), Some(&session), "deny")
        .await
        .unwrap();
    let AuthorizeStep::Redirect(location) = step else {
        panic!("{step:?}");
    };
    assert!(location.starts_with(REDIRECT), "{location}");
    assert!(location.contains("error=access_denied") && location.contains("state=s2"));
    assert!(!location.contains("code="), "{location}");
    let step = flows
        .decide(wider.as_bytes(), Some(&session), "maybe")
        .await
        .unwrap();
    assert!(matches!(step, AuthorizeStep::Refused { .. }), "{step:?}");
}

async fn an_unknown_client_is_refused_without_a_redirect(flows: Flows) {
    let query = format!("response_type=code&client_id=nobody&redirect_uri={REDIRECT}");
    let step = flows.authorize(query.as_bytes(), None).await.unwrap();
    let AuthorizeStep::Refused { title, .. } = step else {
        panic!("nothing may go to an unproven redirect URI: {step:?}");
    };
    assert_eq!(title, "Unknown application");
}

async fn m2m(flows: &Flows) -> TestClient {
    client(
        flows,
        ClientRegistration {
            name: "m2m".into(),
            scope: "api".into(),
            ..Default::default()
        },
    )
    .await
}

const CALLER: Option<std::net::IpAddr> =
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 30)));

/// A resource server's first requests after a restart come all at once with the same
/// secret: they share one Argon2 run and are never mistaken for guessing.
async fn issue_24_a_burst_of_correct_first_authentications_is_not_throttled(flows: Flows) {
    let rs = m2m(&flows).await;
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (flows, basic) = (flows.clone(), rs.basic.clone());
        burst.spawn(async move {
            let form = form(&[("grant_type", "client_credentials")]);
            flows
                .token(basic.as_deref(), &form, CALLER)
                .await
                .map(|_| ())
        });
    }
    for answer in burst.join_all().await {
        answer.unwrap();
    }
}

async fn issue_24_wrong_client_secrets_are_throttled_without_hashing(flows: Flows) {
    let rs = m2m(&flows).await;
    let mut throttled = 0;
    for i in 0..40 {
        let pair = format!("{}:tss_wrong-{i}", rs.id);
        let basic = format!("Basic {}", STANDARD.encode(pair)).into_bytes();
        let form = form(&[("grant_type", "client_credentials")]);
        match flows.token(Some(&basic), &form, CALLER).await {
            Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "invalid_client", "attempt {i}"),
            Err(FlowError::Throttled { retry_after }) => {
                assert!(i >= 30 && retry_after > 0, "attempt {i}");
                throttled += 1;
            }
            other => panic!("attempt {i}: {other:?}"),
        }
    }
    assert_eq!(throttled, 10);
    // The right secret, verified before, is never throttled; one not verified before is,
    // until the window passes.
    let form = form(&[("grant_type", "client_credentials")]);
    let refused = flows.token(rs.basic.as_deref(), &form, CALLER).await;
    assert!(
        matches!(refused, Err(FlowError::Throttled { .. })),
        "{refused:?}"
    );
    flows.settings.clock.advance(61);
    flows
        .token(rs.basic.as_deref(), &form, CALLER)
        .await
        .unwrap();
    let elsewhere = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 1, 31));
    flows
        .token(rs.basic.as_deref(), &form, Some(elsewhere))
        .await
        .unwrap();
}

/// The keys named by the revocation events appended since `mark`, the last event before.
async fn revoked_since(flows: &Flows, mark: u64) -> Vec<TokenKey> {
    let events = flows
        .store
        .revocation_events_after(mark, 100)
        .await
        .unwrap();
    events.into_iter().map(|e| e.token_key).collect()
}

async fn last_event(flows: &Flows) -> u64 {
    flows.store.revocation_window().await.unwrap().latest
}

/// A replayed code and a reused refresh token end their family: each live access token of
/// it gets a revocation event, for the resource servers that cache it.
async fn issue_26_a_replayed_code_and_a_reused_refresh_token_append_revocation_events(
    flows: Flows,
) {
    let web = web_client(&flows).await;
    let code = code_for(&flows, &web, "gina").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let issued = token(&flows, &web, &exchange).await.unwrap();
    let mark = last_event(&flows).await;
    invalid_grant(token(&flows, &web, &exchange).await);
    assert_eq!(
        revoked_since(&flows, mark).await,
        [issued.access_token.key()]
    );

    let code = code_for(&flows, &web, "hank").await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let first = token(&flows, &web, &exchange).await.unwrap();
    let old = first.refresh_token.unwrap();
    let rotate = [
        ("grant_type", "refresh_token"),
        ("refresh_token", old.expose()),
    ];
    let second = token(&flows, &web, &rotate).await.unwrap();
    let mark = last_event(&flows).await;
    invalid_grant(token(&flows, &web, &rotate).await);
    let mut revoked = revoked_since(&flows, mark).await;
    revoked.sort_by_key(|k| *k.as_bytes());
    let mut expected = [first.access_token.key(), second.access_token.key()];
    expected.sort_by_key(|k| *k.as_bytes());
    assert_eq!(revoked, expected);
}

/// A resource server registered as the command line does, with its Basic header.
async fn resource_server(flows: &Flows, uri: &str, scope: &str) -> TestClient {
    let mut registered =
        tessera_core::resource::register_resource(uri, None, scope, START).unwrap();
    registered.client.secret_hash = Some(hash_secret(&registered.secret).unwrap());
    let store = &flows.store;
    store
        .create_resource(&registered.resource, &registered.client)
        .await
        .unwrap();
    let pair = format!("{}:{}", registered.client.id, registered.secret.expose());
    TestClient {
        id: registered.client.id.into_string(),
        basic: Some(format!("Basic {}", STANDARD.encode(pair)).into_bytes()),
    }
}

/// Each resource server hears of the revoked tokens of its audience, and of no other; a
/// client that is not a resource server gets no stream.
async fn issue_26_a_resource_server_streams_the_revocations_for_it_alone(flows: Flows) {
    use tessera_flow::revocation_stream::StreamItem;
    let api = resource_server(&flows, "https://api.example/", "api").await;
    let other = resource_server(&flows, "https://other.example/", "read").await;
    let m2m = m2m(&flows).await;
    let open = |caller: &TestClient| {
        let (flows, basic) = (flows.clone(), caller.basic.clone());
        async move { flows.revocation_stream(basic.as_deref(), None, None).await }
    };
    let mut for_api = open(&api).await.unwrap();
    let mut for_other = open(&other).await.unwrap();
    // Each stream says first where it starts: after the last event, none yet.
    for stream in [&mut for_api, &mut for_other] {
        assert_eq!(stream.next().await, Some(StreamItem::Progress { seq: 0 }));
    }
    match open(&m2m).await {
        Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "invalid_client"),
        other => panic!("{other:?}"),
    }
    let issued = token(
        &flows,
        &m2m,
        &[("grant_type", "client_credentials"), ("scope", "api")],
    )
    .await
    .unwrap();
    let form = form(&[("token", issued.access_token.expose())]);
    flows
        .revoke(m2m.basic.as_deref(), &form, None)
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(1), for_api.next()).await;
    match next.expect("the revocation within a second") {
        Some(StreamItem::Revoked { token_key, .. }) => {
            assert_eq!(token_key, issued.access_token.key())
        }
        other => panic!("{other:?}"),
    }
    let quiet = tokio::time::timeout(Duration::from_millis(500), for_other.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    flows.stop_revocation_streams();
    assert_eq!(
        for_api.next().await,
        None,
        "streams end when the node stops"
    );
}

both_backends!(
    issue_27_the_code_exchange_adds_an_id_token_and_userinfo_reads_the_access_token,
    issue_27_prompt_none_and_max_age_decide_before_any_page,
    issue_27_logout_requests_are_checked_against_the_hint_and_the_registration,
);

/// The same store, with signing keys under a fresh key-encryption key.
async fn with_oidc(flows: Flows) -> Flows {
    let mut settings = flows.settings.clone();
    settings.key_encryption_key = Some(KeyEncryptionKey::generate().unwrap().0);
    let flows = Flows::new(flows.store.clone(), settings);
    assert!(flows.keys.start(START).await.unwrap().enabled());
    flows
}

async fn oidc_client(flows: &Flows) -> TestClient {
    client(
        flows,
        ClientRegistration {
            name: "rp".into(),
            redirect_uris: vec![REDIRECT.into()],
            scope: "openid profile api".into(),
            skip_consent: true,
            ..Default::default()
        },
    )
    .await
}

/// A user signed in now; their id and session.
async fn signed_in_user(flows: &Flows, username: &str) -> (String, SessionId) {
    let password = Secret::new("correct horse");
    let user = tessera_core::user::register(username, &password, START).unwrap();
    flows.store.create_user(&user).await.unwrap();
    let SignIn::SignedIn { session } = flows.sign_in(username, password, None, None).await.unwrap()
    else {
        panic!("sign-in refused");
    };
    (user.id.into_string(), session)
}

fn oidc_query(c: &TestClient, extra: &str) -> String {
    format!(
        "response_type=code&client_id={}&redirect_uri={REDIRECT}&state=s1\
         &code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        c.id
    )
}

/// The parameter `name` of a redirect's query.
fn param_of(location: &str, name: &str) -> Option<String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn issue_27_the_code_exchange_adds_an_id_token_and_userinfo_reads_the_access_token(
    flows: Flows,
) {
    let flows = with_oidc(flows).await;
    let rp = oidc_client(&flows).await;
    let (sub, session) = signed_in_user(&flows, "alice").await;
    flows.settings.clock.advance(30);
    let query = oidc_query(&rp, "&scope=openid%20profile&nonce=n-1&max_age=60");
    let step = flows
        .authorize(query.as_bytes(), Some(&session))
        .await
        .unwrap();
    let AuthorizeStep::Redirect(location) = step else {
        panic!("expected a code, got {step:?}");
    };
    let code = param_of(&location, "code").unwrap();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let issued = token(&flows, &rp, &exchange).await.unwrap();
    let claims = claims_of(issued.id_token.as_deref().expect("an ID token"));
    assert_eq!(claims["iss"], "https://as.example");
    assert_eq!(claims["sub"], sub.as_str());
    assert_eq!(claims["aud"], rp.id.as_str());
    assert_eq!(claims["azp"], rp.id.as_str());
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["auth_time"], START.as_secs());
    assert_eq!(claims["iat"], START.as_secs() + 30);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(
        claims["at_hash"],
        tessera_core::oidc::at_hash(issued.access_token.expose())
    );

    let info = flows
        .userinfo(Some(issued.access_token.expose()))
        .await
        .unwrap();
    assert_eq!(info.sub, sub);
    assert_eq!(info.claims.preferred_username.as_deref(), Some("alice"));
    for bad in [None, issued.refresh_token.as_ref().map(|r| r.expose())] {
        match flows.userinfo(bad).await {
            Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "invalid_token"),
            other => panic!("{other:?}"),
        }
    }
    // Without `openid` the exchange has no ID token, and userinfo refuses its token.
    let query = oidc_query(&rp, "&scope=api");
    let AuthorizeStep::Redirect(location) = flows
        .authorize(query.as_bytes(), Some(&session))
        .await
        .unwrap()
    else {
        panic!("expected a code");
    };
    let code = param_of(&location, "code").unwrap();
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let plain = token(&flows, &rp, &exchange).await.unwrap();
    assert!(plain.id_token.is_none());
    match flows.userinfo(Some(plain.access_token.expose())).await {
        Err(FlowError::OAuth(e)) => assert_eq!(e.code(), "insufficient_scope"),
        other => panic!("{other:?}"),
    }
}

async fn issue_27_prompt_none_and_max_age_decide_before_any_page(flows: Flows) {
    let flows = with_oidc(flows).await;
    let rp = oidc_client(&flows).await;
    let none = oidc_query(&rp, "&scope=openid&prompt=none");
    let step = flows.authorize(none.as_bytes(), None).await.unwrap();
    let AuthorizeStep::Redirect(location) = step else {
        panic!("{step:?}");
    };
    assert_eq!(
        param_of(&location, "error").as_deref(),
        Some("login_required")
    );
    assert_eq!(param_of(&location, "state").as_deref(), Some("s1"));

    let (_, session) = signed_in_user(&flows, "bob").await;
    flows.settings.clock.advance(100);
    let old = oidc_query(&rp, "&scope=openid&max_age=60");
    let step = flows
        .authorize(old.as_bytes(), Some(&session))
        .await
        .unwrap();
    let AuthorizeStep::SignIn { return_to, .. } = step else {
        panic!("{step:?}");
    };
    // Resumed after the sign-in without `max_age`, so it does not ask again.
    assert!(!return_to.contains("max_age"), "{return_to}");
    let step = flows
        .authorize(
            oidc_query(&rp, "&scope=openid&max_age=600").as_bytes(),
            Some(&session),
        )
        .await
        .unwrap();
    assert!(matches!(step, AuthorizeStep::Redirect(_)), "{step:?}");
}

async fn issue_27_logout_requests_are_checked_against_the_hint_and_the_registration(flows: Flows) {
    use tessera_flow::oidc::LogoutCheck;
    let flows = with_oidc(flows).await;
    let rp = oidc_client(&flows).await;
    let back = "https://app.example/bye";
    let settings = tessera_store::ClientOidc {
        post_logout_redirect_uris: vec![back.into()],
        ..Default::default()
    };
    flows
        .store
        .put_client_oidc(&rp.id, &settings)
        .await
        .unwrap();
    let check = |pairs: Vec<(&'static str, String)>| {
        let flows = flows.clone();
        async move {
            let params = FormParams::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            flows.check_logout(&params).await.unwrap()
        }
    };
    assert_eq!(
        check(vec![]).await,
        LogoutCheck::Valid {
            redirect: None,
            fields: vec![]
        }
    );
    let ok = check(vec![
        ("client_id", rp.id.clone()),
        ("post_logout_redirect_uri", back.into()),
        ("state", "x".into()),
    ])
    .await;
    let LogoutCheck::Valid { redirect, .. } = ok else {
        panic!("{ok:?}");
    };
    assert_eq!(redirect.as_deref(), Some("https://app.example/bye?state=x"));
    for refused in [
        vec![("post_logout_redirect_uri", back.to_owned())],
        vec![
            ("client_id", rp.id.clone()),
            ("post_logout_redirect_uri", format!("{back}/")),
        ],
        vec![("id_token_hint", "e30.e30.sig".to_owned())],
    ] {
        assert!(
            matches!(check(refused.clone()).await, LogoutCheck::Refused(_)),
            "{refused:?}"
        );
    }
}
