//! Issue 26: revocations pushed to resource servers. The operator's commands that revoke a
//! user's or a client's tokens, and the stream (`GET /revocations`, Server-Sent Events) that
//! tells each resource server of the revoked tokens for it.

use std::time::Duration;

use serde_json::Value;
use tessera_core::clock::UnixTime;
use tessera_core::token::TokenKey;
use tokio::time::Instant;

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, TestClient, spawn_app, spawn_app_with, start_app, tessera_cli,
};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url};

const CALLBACK: &str = "http://127.0.0.1:5000/authorize";

both_backends!(
    issue_26_revoke_tokens_commands_revoke_and_leave_events,
    issue_26_a_resource_hears_of_a_revocation_for_it_and_no_other,
    issue_26_only_a_resource_server_may_open_a_stream,
    issue_26_a_stream_starts_at_the_present_and_resumes_after_its_last_event_id,
    issue_26_a_resume_from_before_the_events_kept_starts_with_a_reset,
    issue_26_a_stream_outlives_the_idle_deadline_and_ends_with_the_server,
    issue_26_streams_are_bounded_per_resource,
    issue_26_a_stream_on_one_node_hears_a_revocation_on_another,
    issue_26_the_janitor_purges_events_past_their_retention,
);

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

/// The keys of the revocation events after `mark`, as the server's store has them.
async fn revoked_since(app: &TestApp, mark: u64) -> Vec<TokenKey> {
    let events = app.store.revocation_events_after(mark, 100).await.unwrap();
    events.into_iter().map(|e| e.token_key).collect()
}

async fn run(app: &TestApp, args: &[&str]) -> (bool, String) {
    let out = tessera_cli(&app.database_url, args, "").await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tessera user revoke-tokens` and `tessera client revoke-tokens` revoke every token of the
/// user or client, say how many, leave an event for each live access token, and refuse a
/// name that does not exist.
async fn issue_26_revoke_tokens_commands_revoke_and_leave_events(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let web = app.web_client(CALLBACK, "api").await;
    let params = Person::new(&app)
        .authorize(&authorize_url(&app, &web.id, CALLBACK, &[]), "alice")
        .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let pair = app.post_basic("/token", &web, &form).await.body;
    let m2m = app.m2m_client("api").await;
    let machine = [
        app.access_token(&m2m, None).await,
        app.access_token(&m2m, None).await,
    ];

    let (ok, said) = run(&app, &["user", "revoke-tokens", "alice"]).await;
    assert!(ok, "{said}");
    assert!(said.contains("revoked 2 tokens of alice"), "{said}");
    // Another process wrote: the server's readers see it within their snapshot age.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for token in [&pair["access_token"], &pair["refresh_token"]] {
        assert_eq!(app.introspect(&web, s(token)).await["active"], false);
    }
    assert_eq!(app.introspect(&m2m, &machine[0]).await["active"], true);
    let alices = revoked_since(&app, 0).await;
    assert_eq!(alices, [TokenKey::of(s(&pair["access_token"]))]);
    let mark = app.store.revocation_window().await.unwrap().latest;

    let (ok, said) = run(&app, &["client", "revoke-tokens", &m2m.id]).await;
    assert!(ok, "{said}");
    assert!(said.contains("revoked 2 tokens of client"), "{said}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut revoked = revoked_since(&app, mark).await;
    revoked.sort_by_key(|k| *k.as_bytes());
    let mut expected = machine.clone().map(|t| TokenKey::of(&t));
    expected.sort_by_key(|k| *k.as_bytes());
    assert_eq!(revoked, expected);
    assert_eq!(app.introspect(&m2m, &machine[1]).await["active"], false);

    let (ok, said) = run(&app, &["user", "revoke-tokens", "nobody"]).await;
    assert!(!ok && said.contains("no user named nobody"), "{said}");
    let (ok, said) = run(&app, &["client", "revoke-tokens", "-nobody"]).await;
    assert!(!ok && said.contains("no client with id -nobody"), "{said}");
}

/// One Server-Sent Event, as an `EventSource` would see its fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Sse {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

/// A revocation stream, read as it arrives.
struct Stream {
    response: reqwest::Response,
    buffer: String,
    ended: bool,
    /// Blocks of comments only: heartbeats.
    heartbeats: usize,
    /// The id alone the stream opened with: where it starts.
    start: Option<String>,
    /// An event read while looking for that id.
    pending: Option<Sse>,
}

impl Stream {
    /// Opens `/revocations` as `caller`, with `Last-Event-ID` if given.
    async fn open(app: &TestApp, caller: &TestClient, last_event_id: Option<&str>) -> Self {
        let response = request(app, caller, last_event_id).await;
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers["content-type"], "text/event-stream");
        let mut stream = Self {
            response,
            buffer: String::new(),
            ended: false,
            heartbeats: 0,
            start: None,
            pending: None,
        };
        // A stream that starts without a reset says at once where it starts.
        match stream.next(Duration::from_secs(2)).await {
            Some(Sse {
                id,
                event: None,
                data: None,
            }) => stream.start = id,
            other => stream.pending = other,
        }
        stream
    }

    /// The next event (comments skipped) within `wait`, or `None`.
    async fn next(&mut self, wait: Duration) -> Option<Sse> {
        if let Some(event) = self.pending.take() {
            return Some(event);
        }
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                match parse(&block) {
                    Some(event) => return Some(event),
                    None => self.heartbeats += 1,
                }
            }
            if self.ended {
                return None;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Err(_) => return None,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None) | Err(_)) => self.ended = true,
            }
        }
    }

    /// The events that arrive within `wait`.
    async fn all_within(&mut self, wait: Duration) -> Vec<Sse> {
        let deadline = Instant::now() + wait;
        let mut events = Vec::new();
        while let Some(e) = self
            .next(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            events.push(e);
        }
        events
    }
}

async fn request(
    app: &TestApp,
    caller: &TestClient,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.url("/revocations"))
        .basic_auth(&caller.id, caller.secret.as_deref());
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    tokio::time::timeout(Duration::from_secs(5), request.send())
        .await
        .expect("the stream's headers come at once")
        .unwrap()
}

/// The fields of one block; `None` for a block of comments only (a heartbeat).
fn parse(block: &str) -> Option<Sse> {
    let mut event = Sse::default();
    let mut any = false;
    for line in block
        .lines()
        .filter(|l| !l.starts_with(':') && !l.is_empty())
    {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => event.id = Some(value),
            "event" => event.event = Some(value),
            "data" => event.data = Some(value),
            other => panic!("unexpected field {other} in {block:?}"),
        }
        any = true;
    }
    any.then_some(event)
}

/// The `revoked` event of `token`, numbered `id`.
fn revoked(id: &str, token: &str) -> Sse {
    Sse {
        id: Some(id.to_owned()),
        event: Some("revoked".into()),
        data: Some(format!(
            r#"{{"token_key":"{}"}}"#,
            TokenKey::of(token).to_base64url()
        )),
    }
}

fn id_of(event: &Sse) -> &str {
    event.id.as_deref().unwrap()
}

/// Two resource servers (scopes `api` and `other`) and a client allowed `api`, whose tokens
/// are therefore for the first alone.
async fn resources(app: &TestApp) -> (TestClient, TestClient, TestClient) {
    let (api, _) = app.resource_server("api").await;
    let (other, _) = app.resource_server("other").await;
    let m2m = app.m2m_client("api").await;
    (api, other, m2m)
}

async fn revoke(app: &TestApp, client: &TestClient, token: &str) {
    let reply = app.post_basic("/revoke", client, &[("token", token)]).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
}

async fn issue_26_a_resource_hears_of_a_revocation_for_it_and_no_other(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (api, other, m2m) = resources(&app).await;
    let mut for_api = Stream::open(&app, &api, None).await;
    let mut for_other = Stream::open(&app, &other, None).await;
    let token = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &token).await;
    let event = for_api
        .next(Duration::from_secs(1))
        .await
        .expect("the revocation within a second");
    assert_eq!(event, revoked(id_of(&event), &token));
    assert_eq!(for_other.all_within(Duration::from_secs(1)).await, []);
    // Revoking it again changes nothing and tells nobody.
    revoke(&app, &m2m, &token).await;
    assert_eq!(for_api.all_within(Duration::from_millis(500)).await, []);
}

async fn issue_26_only_a_resource_server_may_open_a_stream(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (api, _, m2m) = resources(&app).await;
    let impostor = TestClient {
        secret: Some("wrong".into()),
        ..api.clone()
    };
    for caller in [&m2m, &impostor] {
        let response = request(&app, caller, None).await;
        assert_eq!(response.status(), 401, "{}", caller.id);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Basic"), "{challenge}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    let anonymous = app.http.get(app.url("/revocations")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
}

async fn issue_26_a_stream_starts_at_the_present_and_resumes_after_its_last_event_id(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (api, _, m2m) = resources(&app).await;
    let before = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &before).await;
    let mut stream = Stream::open(&app, &api, None).await;
    let start: u64 = stream
        .start
        .as_deref()
        .expect("the id it starts at")
        .parse()
        .unwrap();
    assert_eq!(start, app.store.revocation_window().await.unwrap().latest);
    let first = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &first).await;
    let event = stream.next(Duration::from_secs(1)).await.unwrap();
    assert_eq!(event, revoked(id_of(&event), &first), "no history");
    drop(stream);

    let missed = [
        app.access_token(&m2m, None).await,
        app.access_token(&m2m, None).await,
    ];
    for token in &missed {
        revoke(&app, &m2m, token).await;
    }
    let mut resumed = Stream::open(&app, &api, event.id.as_deref()).await;
    let replayed = resumed.all_within(Duration::from_secs(1)).await;
    assert_eq!(replayed.len(), 2, "{replayed:?}");
    for (event, token) in replayed.iter().zip(&missed) {
        assert_eq!(event, &revoked(id_of(event), token));
    }
    assert!(id_of(&replayed[0]).parse::<u64>().unwrap() > id_of(&event).parse().unwrap());

    // The same from a query parameter, for a client that cannot set the header.
    let url = format!("/revocations?last_event_id={}", id_of(&replayed[0]));
    let response = app
        .http
        .get(app.url(&url))
        .basic_auth(&api.id, api.secret.as_deref())
        .send()
        .await
        .unwrap();
    let mut by_query = Stream {
        response,
        buffer: String::new(),
        ended: false,
        heartbeats: 0,
        start: None,
        pending: None,
    };
    let start = by_query.next(Duration::from_secs(1)).await.unwrap();
    assert_eq!(start.id.as_deref(), Some(id_of(&replayed[0])), "{start:?}");
    assert_eq!((start.event, start.data), (None, None));
    let again = by_query.next(Duration::from_secs(1)).await.unwrap();
    assert_eq!(again, replayed[1]);
}

async fn issue_26_a_resume_from_before_the_events_kept_starts_with_a_reset(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (api, _, m2m) = resources(&app).await;
    let mut stream = Stream::open(&app, &api, None).await;
    let token = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &token).await;
    let seen = stream.next(Duration::from_secs(1)).await.unwrap();
    drop(stream);
    for _ in 0..2 {
        let token = app.access_token(&m2m, None).await;
        revoke(&app, &m2m, &token).await;
    }
    let later = UnixTime::from_secs(i64::MAX / 2);
    assert_eq!(
        app.store.purge_revocation_events(later, 100).await.unwrap(),
        3
    );
    let ahead = |latest: u64| (latest + 1).to_string();
    for last_event_id in [Some(id_of(&seen).to_owned()), Some("x".into()), None] {
        // Each round revokes one more: the last number moves on.
        let latest = app.store.revocation_window().await.unwrap().latest;
        let last_event_id = last_event_id.unwrap_or_else(|| ahead(latest));
        let reset = Sse {
            id: Some(latest.to_string()),
            event: Some("reset".into()),
            data: Some("{}".into()),
        };
        let mut stream = Stream::open(&app, &api, Some(&last_event_id)).await;
        let first = stream.next(Duration::from_secs(1)).await;
        assert_eq!(first.as_ref(), Some(&reset), "after {last_event_id:?}");
        // And on from there.
        let token = app.access_token(&m2m, None).await;
        revoke(&app, &m2m, &token).await;
        let next = stream.next(Duration::from_secs(1)).await.unwrap();
        assert_eq!(next, revoked(id_of(&next), &token));
    }
}

/// A stream is a request in flight for as long as it lasts: neither the idle deadline nor
/// the request timeout cut it, heartbeats keep it busy, and it ends when the server stops.
async fn issue_26_a_stream_outlives_the_idle_deadline_and_ends_with_the_server(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.idle_timeout = Duration::from_secs(1);
        c.revocation_heartbeat = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    let (api, _, m2m) = resources(&app).await;
    let mut stream = Stream::open(&app, &api, None).await;
    assert_eq!(stream.all_within(Duration::from_millis(2500)).await, []);
    assert!(!stream.ended, "the idle deadline closed the stream");
    assert!(stream.heartbeats >= 3, "{} heartbeats", stream.heartbeats);
    let token = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &token).await;
    let event = stream.next(Duration::from_secs(1)).await.unwrap();
    assert_eq!(event, revoked(id_of(&event), &token));
    let stopped = Instant::now();
    drop(app);
    assert_eq!(stream.all_within(Duration::from_secs(5)).await, []);
    assert!(stream.ended, "the stream outlived its server");
    assert!(stopped.elapsed() < Duration::from_secs(3));
}

async fn issue_26_streams_are_bounded_per_resource(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (api, other, _) = resources(&app).await;
    let mut open = Vec::new();
    // tessera_flow::revocation_stream::STREAMS_PER_RESOURCE
    for _ in 0..8 {
        open.push(Stream::open(&app, &api, None).await);
    }
    let refused = request(&app, &api, None).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another resource still may; and a place comes back when a stream closes.
    let _other = Stream::open(&app, &other, None).await;
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        let response = request(&app, &api, None).await;
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        reopened.is_some(),
        "the closed stream's place never came back"
    );
}

/// Two nodes on one database: a revocation answered by one reaches the streams of the
/// other, woken by PostgreSQL's notification, or by its look at the file every second (a
/// second SQLite server on one file, as the command line would be).
async fn issue_26_a_stream_on_one_node_hears_a_revocation_on_another(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let other_node = start_app(&app.database_url, app.clock.clone(), |_| {}).await;
    let (api, _, m2m) = resources(&app).await;
    let mut stream = Stream::open(&other_node, &api, None).await;
    let token = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &token).await;
    let wait = match backend {
        Backend::Postgres => Duration::from_secs(1),
        Backend::Sqlite => Duration::from_millis(2500),
    };
    let event = stream
        .next(wait)
        .await
        .expect("the other node's revocation");
    assert_eq!(event, revoked(id_of(&event), &token));
}

async fn issue_26_the_janitor_purges_events_past_their_retention(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.janitor_interval = Duration::from_millis(100);
        c.revocation_event_retention = Duration::from_secs(60);
    })
    .await
    else {
        return;
    };
    let (_, _, m2m) = resources(&app).await;
    let token = app.access_token(&m2m, None).await;
    revoke(&app, &m2m, &token).await;
    let window = app.store.revocation_window().await.unwrap();
    assert_eq!(window.horizon, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.store.revocation_window().await.unwrap(),
        window,
        "kept for a minute"
    );
    app.clock.advance(61);
    let mut horizon = 0;
    for _ in 0..50 {
        horizon = app.store.revocation_window().await.unwrap().horizon;
        if horizon > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(horizon, window.latest, "purged once past the retention");
}
