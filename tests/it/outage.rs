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
}
