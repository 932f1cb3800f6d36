//! A PostgreSQL outage under a running server: clean 503s (never a guessed `active: false`),
//! `/readyz` failing, and recovery by itself once the database is back.

use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use tessera_store::testing::postgres_admin_url;

use crate::helpers::{Backend, spawn_app};

async fn admin(sql: &str) {
    let mut conn = PgConnection::connect(&postgres_admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn database_outage_gives_503_and_recovers_without_restart() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let db = app.database_url.rsplit('/').next().unwrap().to_owned();
    let client = app.m2m_client("api").await;
    let token = app.access_token(&client, None).await;

    // Load runs through the whole outage: four workers issuing tokens until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (base, client, stop) = (app.base.clone(), client.clone(), stop.clone());
            tokio::spawn(async move {
                let http = crate::helpers::http_client();
                let (mut acked, mut unavailable) = (Vec::new(), 0);
                for _ in 0..2000 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let r = http
                        .post(format!("{base}/token"))
                        .basic_auth(&client.id, client.secret.as_deref())
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .unwrap();
                    match r.status().as_u16() {
                        200 => {
                            let body: serde_json::Value = r.json().await.unwrap();
                            acked.push(body["access_token"].as_str().unwrap().to_owned());
                        }
                        503 => {
                            unavailable += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("only 200 or 503 during an outage, got {other}"),
                    }
                }
                (acked, unavailable)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The database goes away for this server: no new connections, existing ones killed.
    admin(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false")).await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    ))
    .await;

    let started = Instant::now();
    let issued = app
        .post_basic("/token", &client, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(issued.status, 503, "{:?}", issued.body);
    assert_eq!(issued.body["error"], "temporarily_unavailable");
    let asked = app
        .post_basic("/introspect", &client, &[("token", &token)])
        .await;
    assert_eq!(
        asked.status, 503,
        "never a guessed active:false: {:?}",
        asked.body
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answers are bounded in time"
    );

    // The database is back: the same server recovers on its own, and nothing was lost.
    admin(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true")).await;
    let mut recovered = false;
    for _ in 0..50 {
        if app
            .http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "ready again within seconds");
    assert_eq!(app.introspect(&client, &token).await["active"], true);
    app.access_token(&client, None).await;

    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut acked, mut unavailable) = (Vec::new(), 0);
    for w in workers {
        let (a, u) = w.await.unwrap();
        acked.extend(a);
        unavailable += u;
    }
    assert!(unavailable > 0, "the load saw the outage");
    assert!(!acked.is_empty(), "the load was served before and after it");
    for t in &acked {
        assert_eq!(
            app.introspect(&client, t).await["active"],
            true,
            "no acknowledged token lost"
        );
    }
}
