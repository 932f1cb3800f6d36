//! Issue 28: the admin API's flows, without HTTP: who is admitted, and changes held to the
//! rules of the command line, with the revocation events its store methods append.

use tessera_core::admin::new_admin_token;
use tessera_core::audit::AuditFilter;
use tessera_core::client::ClientRegistration;
use tessera_core::oidc::Profile;
use tessera_core::resource::Audience;
use tessera_core::scope::Scope;
use tessera_core::secret::{Secret, verify_secret};
use tessera_core::token::{RawToken, TokenKind, TokenRecord, new_family_id};
use tessera_flow::Flows;
use tessera_flow::admin::{AdminError, AuditQuery, ClientChange, NewUser, PageRequest};

both_backends!(
    issue_28_admin_tokens_admit_only_while_live,
    issue_28_admin_changes_follow_the_cli_rules,
);

async fn issue_28_admin_tokens_admit_only_while_live(flows: Flows) {
    let (token, record) = new_admin_token(flows.now(), Some(60)).unwrap();
    flows.store.create_admin_token(&record).await.unwrap();
    let header = format!("Bearer {}", token.expose()).into_bytes();
    let operator = flows.admin_operator(Some(&header)).await.unwrap();
    assert_eq!(operator.token_id(), record.id);
    for refused in [
        None,
        Some(&b"Bearer tsm_guess"[..]),
        Some(&b"Basic abc"[..]),
    ] {
        assert!(matches!(
            flows.admin_operator(refused).await,
            Err(AdminError::Unauthorized)
        ));
    }
    flows.settings.clock.advance(60);
    assert!(matches!(
        flows.admin_operator(Some(&header)).await,
        Err(AdminError::Unauthorized)
    ));

    let (forever, record) = new_admin_token(flows.now(), None).unwrap();
    flows.store.create_admin_token(&record).await.unwrap();
    let header = format!("Bearer {}", forever.expose()).into_bytes();
    assert!(flows.admin_operator(Some(&header)).await.is_ok());
    assert!(
        flows
            .store
            .revoke_admin_token(&record.id, flows.now())
            .await
            .unwrap()
    );
    assert!(matches!(
        flows.admin_operator(Some(&header)).await,
        Err(AdminError::Unauthorized)
    ));
}

async fn issue_28_admin_changes_follow_the_cli_rules(flows: Flows) {
    let (token, record) = new_admin_token(flows.now(), None).unwrap();
    flows.store.create_admin_token(&record).await.unwrap();
    let header = format!("Bearer {}", token.expose()).into_bytes();
    let operator = flows.admin_operator(Some(&header)).await.unwrap();
    let admin = flows.admin(&operator);
    let registration = ClientRegistration {
        name: "Web".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scope: "api".into(),
        ..Default::default()
    };
    let (client, secret, _) = admin.create_client(&registration, &[], None).await.unwrap();
    assert!(verify_secret(
        &secret.unwrap(),
        client.secret_hash.as_deref()
    ));
    let unsafe_uri = ClientChange {
        redirect_uris: Some(vec!["http://app.example/cb".into()]),
        ..Default::default()
    };
    assert!(matches!(
        admin.update_client(&client.id, unsafe_uri).await,
        Err(AdminError::Invalid(_))
    ));
    let insecure_allowed = ClientChange {
        redirect_uris: Some(vec!["http://app.example/cb".into()]),
        allow_insecure_redirect_uri: true,
        ..Default::default()
    };
    let (changed, _) = admin
        .update_client(&client.id, insecure_allowed)
        .await
        .unwrap();
    assert_eq!(changed.redirect_uris[0].as_str(), "http://app.example/cb");
    assert_eq!(changed.secret_hash, client.secret_hash, "the secret stays");

    let new = |name: &str, password: &str| NewUser {
        username: name.into(),
        password: Secret::new(password),
        profile: Profile::default(),
    };
    assert!(matches!(
        admin.create_user(new("alice", "short")).await,
        Err(AdminError::Invalid(_))
    ));
    let (alice, _) = admin
        .create_user(new("alice", "long enough"))
        .await
        .unwrap();
    assert!(matches!(
        admin.create_user(new("alice", "long enough")).await,
        Err(AdminError::Conflict(_))
    ));

    let now = flows.now();
    let raw = RawToken::generate(TokenKind::Access).unwrap();
    flows
        .store
        .insert_tokens(&[TokenRecord {
            hash: raw.key(),
            kind: TokenKind::Access,
            client_id: client.id.clone(),
            subject: Some(alice.id.clone()),
            scope: Scope::parse("api").unwrap(),
            issued_at: now,
            expires_at: now.saturating_add(600),
            revoked_at: None,
            rotated_at: None,
            family_id: Some(new_family_id().unwrap()),
            audience: Audience::stored("https://api.example/"),
            username: None,
        }])
        .await
        .unwrap();
    let page = admin
        .user_families("alice", &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    // A new password revokes the user's tokens, with the event their audience is told.
    admin
        .set_password("alice", Secret::new("battery staple"))
        .await
        .unwrap();
    let found = flows.store.find_token(&raw.key()).await.unwrap().unwrap();
    assert!(!found.is_active(now));
    let events = flows.store.revocation_events_after(0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].token_key, raw.key());
    // The audit trail names the operator's token, the change and the revocation's cause.
    let by_alice = AuditFilter {
        user: Some("alice".into()),
        ..Default::default()
    };
    let trail = flows.store.audit_events(&by_alice).await.unwrap();
    let said: Vec<(String, String)> = trail
        .iter()
        .map(|r| (r.event.actor.to_string(), r.event.detail_text()))
        .collect();
    let actor = format!("admin:{}", record.id);
    for detail in [
        r#"{"command":"user create"}"#,
        r#"{"command":"user set-password"}"#,
        r#"{"cause":"password_changed"}"#,
    ] {
        assert!(
            said.contains(&(actor.clone(), detail.to_owned())),
            "{said:?}"
        );
    }
    let page = admin
        .audit_events(&AuditQuery {
            user: Some("alice".into()),
            page: PageRequest {
                limit: Some(2),
                after: None,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items, trail[..2]);
    let rest = admin
        .audit_events(&AuditQuery {
            user: Some("alice".into()),
            page: PageRequest {
                limit: Some(200),
                after: page.next,
            },
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.items, trail[2..]);
    assert_eq!(rest.next, None);
    assert!(matches!(
        admin.user_families("nobody", &PageRequest::default()).await,
        Err(AdminError::NotFound(_))
    ));
}
