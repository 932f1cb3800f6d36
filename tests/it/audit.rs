//! Issue 28's audit trail: what the flows and the command line record, read back with
//! `tessera audit`, filtered, purged past the retention, and free of secrets.

use std::time::Duration;

use serde_json::{Value, json};
use tessera_core::audit::AuditFilter;
use tessera_core::oidc::KeyEncryptionKey;
use tessera_core::registration::RegistrationPolicy;

use crate::both_backends;
use crate::cli::tessera;
use crate::helpers::{Backend, Reply, TestApp, TestClient, fresh_database, spawn_app_with};
use crate::person::{PASSWORD, Person, VERIFIER, authorize_url};

const CALLBACK: &str = "http://127.0.0.1:5000/cb";
const WRONG_PASSWORD: &str = "not alice's password";

both_backends!(
    issue_28_sign_ins_consents_revocations_and_registrations_are_recorded,
    issue_28_every_cli_change_is_recorded_with_actor_cli,
    issue_28_the_janitor_purges_audit_events_past_the_retention,
    issue_28_a_trail_that_cannot_be_written_fails_no_sign_in_or_revocation,
);

/// `tessera audit --json` with `args`: the events it printed.
async fn audit(database_url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let out = tessera(database_url, &all).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let Value::Array(events) = serde_json::from_slice(&out.stdout).unwrap() else {
        panic!("not a JSON array: {}", String::from_utf8_lossy(&out.stdout));
    };
    events
}

/// The one event of `kind` whose `detail` has `key` = `value`.
fn the_event<'a>(events: &'a [Value], kind: &str, key: &str, value: &str) -> &'a Value {
    let found: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == kind && e["detail"][key] == value)
        .collect();
    assert_eq!(found.len(), 1, "{kind} with {key}={value} in {events:#?}");
    found[0]
}

/// Fails if any of `secrets` appears anywhere in `text`.
fn assert_no_secret(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret),
            "{secret} in the audit trail: {text}"
        );
    }
}

async fn exchange(app: &TestApp, client: &TestClient, code: &str) -> Reply {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    app.post_basic("/token", client, &form).await
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}

async fn issue_28_sign_ins_consents_revocations_and_registrations_are_recorded(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| c.registration = RegistrationPolicy::Open).await
    else {
        return;
    };
    let _ = app.resource_server("api").await;
    app.user("alice", PASSWORD).await;
    let web = app.web_client(CALLBACK, "api").await;
    let person = Person::new(&app);
    let url = authorize_url(&app, &web.id, CALLBACK, &[]);

    // A wrong password, then the right one and a consent: the first grant.
    let login = person.get(&url).await;
    let refused = person.log_in(&login, "alice", WRONG_PASSWORD).await;
    assert!(refused.is_login(), "{}", refused.body);
    let code = person.authorize(&url, "alice").await["code"].clone();
    let first = exchange(&app, &web, &code).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    // The same code again: refused, and its grant revoked.
    let replayed = exchange(&app, &web, &code).await;
    assert_eq!(replayed.status, 400);

    // A second grant (consent remembered): its rotated refresh token presented again.
    let code = person.authorize(&url, "alice").await["code"].clone();
    let second = exchange(&app, &web, &code).await.body;
    let refresh = |token: String| {
        let (app, web) = (&app, &web);
        async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", &token)];
            app.post_basic("/token", web, &form).await
        }
    };
    let rotated = refresh(s(&second["refresh_token"]).to_owned()).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let reused = refresh(s(&second["refresh_token"]).to_owned()).await;
    assert_eq!(reused.status, 400);

    // A third grant, revoked at /revoke by its refresh token: the family, two tokens.
    let code = person.authorize(&url, "alice").await["code"].clone();
    let third = exchange(&app, &web, &code).await.body;
    let revoked = app
        .post_basic("/revoke", &web, &[("token", s(&third["refresh_token"]))])
        .await;
    assert_eq!(revoked.status, 200);
    // Revoking it again revokes nothing, and records nothing.
    app.post_basic("/revoke", &web, &[("token", s(&third["refresh_token"]))])
        .await;

    let registered = Reply::from(
        app.http
            .post(app.url("/register"))
            .json(
                &json!({"client_name": "Robot", "grant_types": ["client_credentials"],
                "scope": "api"}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(registered.status, 201, "{:?}", registered.body);
    let robot = s(&registered.body["client_id"]);
    // RFC 7592: the client renames itself, then deletes itself.
    let managed = s(&registered.body["registration_client_uri"]);
    let bearer = s(&registered.body["registration_access_token"]);
    let renamed = json!({"client_id": robot, "client_name": "Robot 2",
        "grant_types": ["client_credentials"], "scope": "api"});
    let put = app.http.put(managed).bearer_auth(bearer).json(&renamed);
    assert_eq!(put.send().await.unwrap().status(), 200);
    let delete = app.http.delete(managed).bearer_auth(bearer);
    assert_eq!(delete.send().await.unwrap().status(), 204);

    let events = audit(&app.database_url, &[]).await;
    let kinds: Vec<_> = events.iter().map(|e| s(&e["kind"])).collect();
    assert_eq!(
        kinds,
        [
            "sign_in_failed",
            "sign_in",
            "consent",
            "token_revoked",
            "token_revoked",
            "token_revoked",
            "client_registered",
            "registration_updated",
            "registration_deleted",
            "token_revoked",
        ]
    );
    let ids: Vec<_> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
    let now = app.clock.now();
    for event in &events {
        assert_eq!(event["at"], now.as_secs());
        assert_eq!(event["time"], now.rfc3339());
    }
    let at_loopback = |e: &Value| e["address"] == "127.0.0.1";
    let [failed, signed_in, consent] = &events[..3] else {
        unreachable!()
    };
    assert_eq!(
        (&failed["actor"], &failed["user"], &failed["client_id"]),
        (&json!("anonymous"), &json!("alice"), &Value::Null)
    );
    assert!(at_loopback(failed) && at_loopback(signed_in));
    assert_eq!(
        (&signed_in["actor"], &signed_in["user"]),
        (&json!("user:alice"), &json!("alice"))
    );
    assert_eq!(
        (
            &consent["actor"],
            &consent["user"],
            s(&consent["client_id"])
        ),
        (&json!("user:alice"), &json!("alice"), web.id.as_str())
    );
    assert_eq!(consent["detail"]["scope"], "api");

    let actor = format!("client:{}", web.id);
    for (cause, count) in [
        ("code_replayed", 2),
        // Both pairs of the grant: the rotated one and its successors.
        ("refresh_reused", 4),
        ("revocation_endpoint", 2),
    ] {
        let event = the_event(&events, "token_revoked", "cause", cause);
        assert_eq!(event["actor"], actor.as_str(), "{event}");
        assert_eq!(event["user"], "alice", "{event}");
        assert_eq!(event["client_id"], web.id.as_str(), "{event}");
        assert_eq!(event["detail"]["count"], count, "{event}");
        assert!(at_loopback(event), "{event}");
    }
    let registration = the_event(&events, "client_registered", "via", "register");
    assert_eq!(
        (&registration["actor"], s(&registration["client_id"])),
        (&json!("anonymous"), robot)
    );
    assert!(at_loopback(registration));
    let robot_actor = format!("client:{robot}");
    for event in &events[7..] {
        assert_eq!(event["actor"], robot_actor.as_str(), "{event}");
        assert_eq!(event["client_id"], robot, "{event}");
    }
    assert_eq!(events[9]["detail"]["cause"], "registration_deleted");

    // Filters: by user, by client, both, and a time after everything.
    let of_alice = audit(&app.database_url, &["--user", "alice"]).await;
    assert_eq!(of_alice.len(), 6);
    assert!(of_alice.iter().all(|e| e["user"] == "alice"));
    let of_robot = audit(&app.database_url, &["--client", robot]).await;
    assert_eq!(of_robot, events[6..]);
    let of_both = audit(&app.database_url, &["--user", "alice", "--client", &web.id]).await;
    assert_eq!(of_both, events[2..6]);
    let later = (now + 1).rfc3339();
    assert!(
        audit(&app.database_url, &["--since", &later])
            .await
            .is_empty()
    );
    let page = audit(
        &app.database_url,
        &["--limit", "2", "--after", &ids[1].to_string()],
    )
    .await;
    assert_eq!(page, events[2..4]);

    // No password, token, code or secret anywhere in the trail.
    let text = serde_json::to_string(&events).unwrap();
    let mut secrets = vec![PASSWORD, WRONG_PASSWORD, web.secret(), code.as_str()];
    for reply in [&first.body, &second, &rotated.body, &third] {
        secrets.push(s(&reply["access_token"]));
        secrets.push(s(&reply["refresh_token"]));
    }
    secrets.push(s(&registered.body["client_secret"]));
    secrets.push(s(&registered.body["registration_access_token"]));
    assert_no_secret(&text, &secrets);
}

async fn issue_28_every_cli_change_is_recorded_with_actor_cli(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let run = |args: Vec<&'static str>, stdin: &'static str| {
        let url = url.clone();
        async move {
            let out = crate::helpers::tessera_cli(&url, &args, stdin).await;
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let json_of = |out: String| serde_json::from_str::<Value>(&out).unwrap();
    let client = json_of(run(vec!["client", "create", "--name", "Web", "--json"], "").await);
    let client_id = s(&client["client_id"]).to_owned();
    let client_secret = s(&client["client_secret"]).to_owned();
    let resource = json_of(
        run(
            vec![
                "resource",
                "create",
                "--uri",
                "https://api.example/",
                "--json",
            ],
            "",
        )
        .await,
    );
    let initial = json_of(run(vec!["registration-token", "create", "--json"], "").await);
    run(
        vec!["user", "create", "alice", "--password-stdin"],
        "first password\n",
    )
    .await;
    run(vec!["user", "update", "alice", "--name", "Alice"], "").await;
    run(
        vec!["user", "set-password", "alice", "--password-stdin"],
        "second password\n",
    )
    .await;
    run(vec!["user", "revoke-tokens", "alice"], "").await;
    run(vec!["user", "delete", "alice"], "").await;
    run(vec!["resource", "delete", "https://api.example/"], "").await;

    // The client's own commands: the id is only known now.
    for command in [["client", "revoke-tokens"], ["client", "delete"]] {
        let mut args: Vec<&str> = command.to_vec();
        args.push(&client_id);
        let out = crate::helpers::tessera_cli(&url, &args, "").await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let (_, kek) = KeyEncryptionKey::generate().unwrap();
    let kek_file = std::env::temp_dir().join(format!("tessera-audit-kek-{}", std::process::id()));
    let kek_file = kek_file.with_extension(format!("{backend:?}"));
    std::fs::write(&kek_file, &kek).unwrap();
    let kek_path = kek_file.to_str().unwrap();
    let out = crate::helpers::tessera_cli(
        &url,
        &["keys", "rotate", "--key-encryption-key-file", kek_path],
        "",
    )
    .await;
    std::fs::remove_file(&kek_file).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run(vec!["keys", "prune"], "").await;

    let events = audit(&url, &[]).await;
    assert!(events.iter().all(|e| e["actor"] == "cli"), "{events:#?}");
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "change")
        .map(|e| s(&e["detail"]["command"]))
        .collect();
    assert_eq!(
        changes,
        [
            "client create",
            "resource create",
            "registration-token create",
            "user create",
            "user update",
            "user set-password",
            "user revoke-tokens",
            "user delete",
            "resource delete",
            "client revoke-tokens",
            "client delete",
            "keys rotate",
            "keys prune",
        ]
    );
    let causes: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "token_revoked")
        .map(|e| s(&e["detail"]["cause"]))
        .collect();
    assert_eq!(
        causes,
        [
            "password_changed",
            "user_revoke_tokens",
            "user_deleted",
            "resource_deleted",
            "client_revoke_tokens",
            "client_deleted",
        ]
    );
    let on = |command: &str| the_event(&events, "change", "command", command);
    assert_eq!(on("client create")["client_id"], client_id.as_str());
    assert_eq!(on("client delete")["client_id"], client_id.as_str());
    assert_eq!(on("user set-password")["user"], "alice");
    let resource_client = s(&resource["client_id"]);
    assert_eq!(on("resource create")["client_id"], resource_client);
    assert_eq!(on("resource delete")["client_id"], resource_client);
    assert_eq!(
        on("resource delete")["detail"]["resource"],
        "https://api.example/"
    );
    let revoked_of_user = the_event(&events, "token_revoked", "cause", "user_revoke_tokens");
    assert_eq!(
        (
            &revoked_of_user["user"],
            &revoked_of_user["detail"]["count"]
        ),
        (&json!("alice"), &json!(0))
    );

    // Filters and the text form.
    let of_alice = audit(&url, &["--user", "alice"]).await;
    assert_eq!(of_alice.len(), 8);
    assert_eq!(audit(&url, &["--client", &client_id]).await.len(), 5);
    assert_eq!(audit(&url, &["--since", "1h"]).await, events);
    let text = run(vec!["audit", "--user", "alice", "--limit", "1"], "").await;
    let fields: Vec<_> = text.trim_end().split('\t').collect();
    assert_eq!(
        fields[2..6],
        ["change", "cli", "user=alice", "client=-"],
        "{text}"
    );
    assert!(fields[7].contains(r#""command":"user create""#), "{text}");

    let text = serde_json::to_string(&events).unwrap();
    assert_no_secret(
        &text,
        &[
            &client_secret,
            s(&resource["client_secret"]),
            s(&initial["token"]),
            "first password",
            "second password",
            &kek,
        ],
    );
}

async fn issue_28_the_janitor_purges_audit_events_past_the_retention(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |c| {
        c.janitor_interval = Duration::from_millis(100);
        c.audit_retention = Duration::from_secs(60);
    })
    .await
    else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let web = app.web_client(CALLBACK, "api").await;
    let person = Person::new(&app);
    let login = person
        .get(&authorize_url(&app, &web.id, CALLBACK, &[]))
        .await;
    person.log_in(&login, "alice", WRONG_PASSWORD).await;
    let all = AuditFilter::default();
    assert_eq!(app.store.audit_events(&all).await.unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.store.audit_events(&all).await.unwrap().len(),
        1,
        "kept for a minute"
    );
    app.clock.advance(61);
    for _ in 0..50 {
        if app.store.audit_events(&all).await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not purged once past the retention");
}

async fn issue_28_a_trail_that_cannot_be_written_fails_no_sign_in_or_revocation(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |_| {}).await else {
        return;
    };
    app.user("alice", PASSWORD).await;
    let web = app.web_client(CALLBACK, "api").await;
    rename_table(&app, "audit_events", "audit_events_away").await;

    let person = Person::new(&app);
    let url = authorize_url(&app, &web.id, CALLBACK, &[]);
    let login = person.get(&url).await;
    let refused = person.log_in(&login, "alice", WRONG_PASSWORD).await;
    assert!(refused.is_login(), "{}", refused.body);
    let code = person.authorize(&url, "alice").await["code"].clone();
    let tokens = exchange(&app, &web, &code).await;
    assert_eq!(tokens.status, 200, "{:?}", tokens.body);
    let refresh_token = s(&tokens.body["refresh_token"]);
    let revoked = app
        .post_basic("/revoke", &web, &[("token", refresh_token)])
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(
        app.introspect(&web, refresh_token).await,
        json!({"active": false})
    );

    rename_table(&app, "audit_events_away", "audit_events").await;
    let all = AuditFilter::default();
    assert!(app.store.audit_events(&all).await.unwrap().is_empty());
}

/// Renames a table behind the server's back, on either backend.
async fn rename_table(app: &TestApp, from: &str, to: &str) {
    let sql = sqlx::AssertSqlSafe(format!("ALTER TABLE {from} RENAME TO {to}"));
    if app.database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
}
