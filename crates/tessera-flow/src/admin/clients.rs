//! Clients, as an operator registers, changes and removes them.

use tessera_core::audit::RevocationCause;
use tessera_core::client::{Client, ClientRegistration, RegistrationError, register};
use tessera_core::secret::Secret;
use tessera_store::{ClientOidc, FamilyOwner, StoreError, TokenFamily};

use crate::admin::{Admin, AdminError, Page, PageRequest, check_length, not_found};
use crate::hashing;

/// What an operator changes of a client; what is `None` stays.
#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scope: Option<String>,
    pub skip_consent: Option<bool>,
    /// Accept http redirect URIs on hosts other than loopback, as the CLI's
    /// `--allow-insecure-redirect-uri`.
    pub allow_insecure_redirect_uri: bool,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub id_token_signed_response_alg: Option<String>,
}

/// OpenID Connect settings as an operator gives them, checked as `client create` checks them.
fn checked_oidc(
    uris: &[String],
    alg: Option<&str>,
    allow_insecure_http: bool,
) -> Result<ClientOidc, AdminError> {
    crate::register::checked_oidc(uris, alg, allow_insecure_http).map_err(AdminError::Invalid)
}

impl Admin<'_> {
    pub async fn list_clients(&self, page: &PageRequest) -> Result<Page<Client>, AdminError> {
        let (limit, after) = page.parse()?;
        let found = self.flows.store.clients_after(&after, limit + 1).await?;
        Ok(Page::of(found, limit, |c| c.id.as_str()))
    }

    /// Registers a client under the CLI's rules, with its OpenID Connect settings (the
    /// post-logout redirect URIs and the ID token algorithm); returns them, and its secret, if
    /// confidential, in clear once.
    pub async fn create_client(
        &self,
        registration: &ClientRegistration,
        post_logout_redirect_uris: &[String],
        id_token_signed_response_alg: Option<&str>,
    ) -> Result<(Client, Option<Secret>, ClientOidc), AdminError> {
        check_length("name", &registration.name)?;
        let oidc = checked_oidc(
            post_logout_redirect_uris,
            id_token_signed_response_alg,
            registration.allow_insecure_http,
        )?;
        let mut registered = register(registration, self.flows.now()).map_err(refused)?;
        if let Some(secret) = &registered.secret {
            let hash = hashing::hash(secret.clone())
                .await?
                .map_err(|e| AdminError::Internal(e.to_string()))?;
            registered.client.secret_hash = Some(hash);
        }
        self.flows
            .store
            .create_client(&registered.client)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AdminError::Conflict("the client id is taken".into()),
                e => e.into(),
            })?;
        let id = registered.client.id.as_str();
        if oidc != ClientOidc::default() {
            self.flows.store.put_client_oidc(id, &oidc).await?;
        }
        tracing::info!(event = "admin_client_created", client_id = %registered.client.id);
        self.record([self.change("client create").client(id)]).await;
        Ok((registered.client, registered.secret, oidc))
    }

    pub async fn client(&self, client_id: &str) -> Result<Client, AdminError> {
        self.flows
            .store
            .get_client(client_id)
            .await?
            .ok_or_else(|| not_found("client"))
    }

    /// A client's OpenID Connect settings (the defaults if none were set).
    pub async fn client_oidc(&self, client_id: &str) -> Result<ClientOidc, AdminError> {
        Ok(self
            .flows
            .store
            .get_client_oidc(client_id)
            .await?
            .unwrap_or_default())
    }

    /// Changes a client under the rules of its registration: the result must be a client
    /// `client::register` would accept. A resource server's client is changed as a resource.
    /// Returns it with its OpenID Connect settings.
    pub async fn update_client(
        &self,
        client_id: &str,
        change: ClientChange,
    ) -> Result<(Client, ClientOidc), AdminError> {
        let existing = self.client(client_id).await?;
        if existing.resource.is_some() {
            return Err(AdminError::Conflict(
                "this client is a resource server's credentials; change the resource instead"
                    .into(),
            ));
        }
        let registration = ClientRegistration {
            name: change.name.unwrap_or_else(|| existing.name.clone()),
            public: existing.is_public(),
            redirect_uris: change.redirect_uris.unwrap_or_else(|| {
                existing
                    .redirect_uris
                    .iter()
                    .map(|u| u.as_str().to_owned())
                    .collect()
            }),
            grant_types: change.grant_types.unwrap_or_else(|| {
                existing
                    .grant_types
                    .iter()
                    .map(|g| g.as_str().to_owned())
                    .collect()
            }),
            scope: change.scope.unwrap_or_else(|| existing.scope.to_string()),
            skip_consent: change.skip_consent.unwrap_or(existing.skip_consent),
            allow_insecure_http: change.allow_insecure_redirect_uri,
        };
        check_length("name", &registration.name)?;
        let held = self.client_oidc(client_id).await?;
        let oidc_changed = change.post_logout_redirect_uris.is_some()
            || change.id_token_signed_response_alg.is_some();
        let oidc = if oidc_changed {
            let uris = change
                .post_logout_redirect_uris
                .unwrap_or(held.post_logout_redirect_uris);
            let alg = change
                .id_token_signed_response_alg
                .or(held.id_token_signed_response_alg);
            checked_oidc(&uris, alg.as_deref(), change.allow_insecure_redirect_uri)?
        } else {
            held
        };
        let fresh = register(&registration, existing.created_at)
            .map_err(refused)?
            .client;
        let updated = Client {
            name: fresh.name,
            grant_types: fresh.grant_types,
            scope: fresh.scope,
            redirect_uris: fresh.redirect_uris,
            skip_consent: fresh.skip_consent,
            ..existing
        };
        if !self.flows.store.update_client(&updated).await? {
            return Err(not_found("client"));
        }
        if oidc_changed {
            self.flows.store.put_client_oidc(client_id, &oidc).await?;
        }
        self.flows.clients.forget(client_id).await;
        tracing::info!(event = "admin_client_updated", client_id = %updated.id);
        let id = updated.id.as_str();
        self.record([self.change("client update").client(id)]).await;
        Ok((updated, oidc))
    }

    /// Deletes a client with its tokens (each live access token announced).
    pub async fn delete_client(&self, client_id: &str) -> Result<(), AdminError> {
        if !self
            .flows
            .store
            .delete_client(client_id, self.flows.now())
            .await?
        {
            return Err(not_found("client"));
        }
        self.flows.clients.forget(client_id).await;
        tracing::info!(event = "admin_client_deleted", client_id = %client_id);
        let events = [
            self.change("client delete"),
            self.revoked(RevocationCause::ClientDeleted),
        ];
        self.record(events.map(|e| e.client(client_id))).await;
        Ok(())
    }

    pub async fn client_families(
        &self,
        client_id: &str,
        page: &PageRequest,
    ) -> Result<Page<TokenFamily>, AdminError> {
        self.client(client_id).await?;
        let owner = FamilyOwner::Client {
            client_id: client_id.to_owned(),
        };
        self.families(owner, page).await
    }

    /// Revokes every live token of a client; returns how many.
    pub async fn revoke_client_tokens(&self, client_id: &str) -> Result<u64, AdminError> {
        let revoked = self
            .flows
            .store
            .revoke_client_tokens(client_id, self.flows.now())
            .await?
            .ok_or_else(|| not_found("client"))?;
        tracing::info!(event = "admin_client_tokens_revoked", client_id = %client_id, revoked);
        let events = [
            self.change("client revoke-tokens").client(client_id),
            self.revoked(RevocationCause::ClientRevokeTokens)
                .client(client_id)
                .with("count", revoked),
        ];
        self.record(events).await;
        Ok(revoked)
    }
}

/// A registration refused by the rules: the request's fault, unless randomness failed.
fn refused(e: RegistrationError) -> AdminError {
    match e {
        RegistrationError::Random => AdminError::Internal(e.to_string()),
        e => AdminError::Invalid(e.to_string()),
    }
}
