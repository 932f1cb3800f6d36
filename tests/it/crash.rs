//! Crash safety: `tessera serve` killed with SIGKILL in the middle of a burst loses nothing it
//! acknowledged and resurrects nothing it revoked, on both backends.

use std::time::Duration;

use tessera_core::client::ClientRegistration;

use crate::both_backends;
use crate::cli::Node;
use crate::helpers::{Backend, TestClient, fresh_database, http_client};

const KILLS: usize = 20;

both_backends!(acknowledged_writes_survive_sigkill);

async fn acknowledged_writes_survive_sigkill(backend: Backend) {
    let _alone = crate::machine::load_alone().await;
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let store = tessera_store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut r = tessera_core::client::register(
        &ClientRegistration {
            name: "burst".into(),
            scope: "api".into(),
            ..Default::default()
        },
        tessera_core::clock::UnixTime::from_secs(0),
    )
    .unwrap();
    r.client.secret_hash =
        Some(tessera_core::secret::hash_secret(r.secret.as_ref().unwrap()).unwrap());
    store.create_client(&r.client).await.unwrap();
    let client = TestClient {
        id: r.client.id.to_string(),
        secret: r.secret.map(|s| s.expose().to_owned()),
    };

    let mut issued: Vec<String> = Vec::new();
    let mut revoked: Vec<String> = Vec::new();
    for kill in 0..KILLS {
        let mut node = Node::start(&url).await;
        // Each client task issues a token, and revokes every other one, until the kill.
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (base, client) = (node.base.clone(), client.clone());
            tasks.push(tokio::spawn(async move {
                let http = http_client();
                let mut acked = (Vec::new(), Vec::new());
                for i in 0..500 {
                    let Ok(r) = http
                        .post(format!("{base}/token"))
                        .basic_auth(&client.id, client.secret.as_deref())
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status() != 200 {
                        break;
                    }
                    let Ok(body) = r.json::<serde_json::Value>().await else {
                        break;
                    };
                    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
                    if (i + worker) % 2 == 0 {
                        let revoked = http
                            .post(format!("{base}/revoke"))
                            .basic_auth(&client.id, client.secret.as_deref())
                            .form(&[("token", token.as_str())])
                            .send()
                            .await;
                        match revoked {
                            Ok(r) if r.status() == 200 => acked.1.push(token),
                            // Unacknowledged revocation: the token may be either; skip it.
                            _ => break,
                        }
                    } else {
                        acked.0.push(token);
                    }
                }
                acked
            }));
        }
        // Kill at a different point of the burst each time.
        tokio::time::sleep(Duration::from_millis(300 + (37 * kill as u64) % 400)).await;
        node.child.start_kill().unwrap();
        node.child.wait().await.unwrap();
        for t in tasks {
            let (i, r) = t.await.unwrap();
            issued.extend(i);
            revoked.extend(r);
        }
    }
    assert!(
        issued.len() > KILLS,
        "the bursts issued tokens before the kills ({})",
        issued.len()
    );

    // Every acknowledged issuance is active, every acknowledged revocation inactive.
    let node = Node::start(&url).await;
    for token in &issued {
        let info = node.post("/introspect", &client, &[("token", token)]).await;
        assert_eq!(
            info["active"], true,
            "acknowledged token lost after a crash"
        );
    }
    for token in &revoked {
        let info = node.post("/introspect", &client, &[("token", token)]).await;
        assert_eq!(
            info["active"], false,
            "acknowledged revocation lost after a crash"
        );
    }
    if backend == Backend::Sqlite {
        let path = url.trim_start_matches("sqlite://");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(check, "ok");
    }
}
