//! Clients registering themselves (RFC 7591) and managing their registration (RFC 7592).
//!
//! Registration is open to anyone (a few times a minute per address), to holders of an
//! initial access token, or to nobody, as the node's [`RegistrationPolicy`] says. A request
//! naming a registration with a missing or wrong registration access token is answered
//! `invalid_token` whether or not the client exists, so the endpoint reveals nothing.

use std::net::IpAddr;

use tessera_core::OAuthError;
use tessera_core::audit::{Actor, AuditEvent, AuditKind, RevocationCause};
use tessera_core::oidc::{IDENTITY_SCOPES, SigningAlg, post_logout_redirect_uris};
use tessera_core::registration::{
    ClientInformation, ClientMetadata, Registration, RegistrationPolicy, bearer_token,
    register_client, update_client,
};
use tessera_core::scope::Scope;
use tessera_core::token::{InitialAccessToken, RegistrationAccessToken};
use tessera_store::ClientOidc;

use crate::Flows;
use crate::audit;
use crate::error::FlowError;
use crate::hashing::{self, Purpose};
use crate::throttle::Verdict;

impl Flows {
    /// Registers a client under this node's policy: `authorization` carries the initial
    /// access token where one is needed, `caller` is counted where registration is open.
    pub async fn register(
        &self,
        authorization: Option<&[u8]>,
        metadata: &ClientMetadata,
        caller: Option<IpAddr>,
    ) -> Result<ClientInformation, FlowError> {
        let now = self.now();
        match self.settings.registration {
            RegistrationPolicy::Off => {
                return Err(OAuthError::AccessDenied("client registration is off".into()).into());
            }
            RegistrationPolicy::Open => match self.throttle.begin_registration(caller, now) {
                Verdict::Proceed { attempt, .. } => attempt.counted(now),
                Verdict::Refuse(retry_after) => return Err(FlowError::Throttled { retry_after }),
            },
            RegistrationPolicy::Token => {
                let presented = bearer_token(authorization).map(InitialAccessToken::new);
                let live = match &presented {
                    Some(token) => {
                        self.store
                            .initial_access_token_is_live(&token.key(), now)
                            .await?
                    }
                    None => false,
                };
                if !live {
                    return Err(OAuthError::InvalidToken(
                        "a valid initial access token is required to register a client".into(),
                    )
                    .into());
                }
            }
        }
        let offered = self.offered_scope().await?;
        let oidc = oidc_metadata(metadata)?;
        let mut new = register_client(metadata, &offered, now)?;
        if let Some(secret) = &new.secret {
            let hash = hashing::hash(secret.clone())
                .await?
                .map_err(FlowError::internal)?;
            new.registration.client.secret_hash = Some(hash);
        }
        self.store.create_registration(&new.registration).await?;
        let client = &new.registration.client;
        if oidc != ClientOidc::default() {
            self.store
                .put_client_oidc(client.id.as_str(), &oidc)
                .await?;
        }
        tracing::info!(event = "client_registered", client_id = %client.id, public = client.is_public());
        let event = AuditEvent::new(now, AuditKind::ClientRegistered, Actor::Anonymous)
            .client(client.id.as_str())
            .address(caller)
            .with("via", "register")
            .with("public", client.is_public());
        audit::record(&*self.store, event).await;
        let info = ClientInformation::of(client, new.secret, new.access_token, self.issuer());
        Ok(with_oidc(info, oidc))
    }

    /// RFC 7592 read: the registration of `client_id`, to the holder of its token.
    pub async fn read_registration(
        &self,
        client_id: &str,
        authorization: Option<&[u8]>,
    ) -> Result<ClientInformation, FlowError> {
        let (registration, token) = self.managed(client_id, authorization).await?;
        let info = ClientInformation::of(&registration.client, None, token, self.issuer());
        let oidc = self.store.get_client_oidc(client_id).await?;
        Ok(with_oidc(info, oidc.unwrap_or_default()))
    }

    /// RFC 7592 update: the metadata replaced in full. The secret stays (it is not rotated);
    /// a `client_secret` in the request must be the current one.
    pub async fn update_registration(
        &self,
        client_id: &str,
        authorization: Option<&[u8]>,
        metadata: &ClientMetadata,
    ) -> Result<ClientInformation, FlowError> {
        let (registration, token) = self.managed(client_id, authorization).await?;
        if let Some(secret) = &metadata.client_secret {
            let stored = registration.client.secret_hash.clone();
            if !hashing::verify(Purpose::ClientAuthentication, stored, secret.clone()).await? {
                return Err(OAuthError::InvalidClientMetadata(
                    "client_secret is not the client's current secret".into(),
                )
                .into());
            }
        }
        let offered = self.offered_scope().await?;
        let oidc = oidc_metadata(metadata)?;
        let updated = update_client(&registration.client, metadata, &offered)?;
        if !self.store.update_registration(&updated).await? {
            // Deleted since it was read.
            return Err(invalid_token().into());
        }
        self.store.put_client_oidc(client_id, &oidc).await?;
        self.clients.forget(client_id).await;
        tracing::info!(event = "client_registration_updated", client_id = %updated.id);
        let actor = Actor::Client(client_id.to_owned());
        let event = AuditEvent::new(self.now(), AuditKind::RegistrationUpdated, actor);
        audit::record(&*self.store, event.client(client_id)).await;
        let info = ClientInformation::of(&updated, None, token, self.issuer());
        Ok(with_oidc(info, oidc))
    }

    /// RFC 7592 delete: the client goes, with its tokens, codes and consents.
    pub async fn delete_registration(
        &self,
        client_id: &str,
        authorization: Option<&[u8]>,
    ) -> Result<(), FlowError> {
        let (registration, _) = self.managed(client_id, authorization).await?;
        let now = self.now();
        let id = registration.client.id.as_str();
        let deleted = self.store.delete_client(id, now).await?;
        self.clients.forget(client_id).await;
        if !deleted {
            // Deleted since it was read, by itself or an operator: nothing done here.
            return Ok(());
        }
        tracing::info!(event = "client_registration_deleted", client_id = %id);
        // The deletion, and the end of its tokens under the kind every revocation has.
        let actor = Actor::Client(id.to_owned());
        let deleted = AuditEvent::new(now, AuditKind::RegistrationDeleted, actor.clone());
        audit::record(&*self.store, deleted.client(id)).await;
        let cause = RevocationCause::RegistrationDeleted;
        let revoked = AuditEvent::revoked(now, actor, cause).client(id);
        audit::record(&*self.store, revoked).await;
        Ok(())
    }

    /// The registration of `client_id` if `authorization` holds its access token; the same
    /// `invalid_token` otherwise, whether or not the client exists.
    async fn managed(
        &self,
        client_id: &str,
        authorization: Option<&[u8]>,
    ) -> Result<(Registration, RegistrationAccessToken), FlowError> {
        let Some(token) = bearer_token(authorization).map(RegistrationAccessToken::new) else {
            return Err(invalid_token().into());
        };
        match self.store.find_registration(client_id).await? {
            Some(registration) if registration.is_managed_by(&token) => Ok((registration, token)),
            _ => Err(invalid_token().into()),
        }
    }
}

fn invalid_token() -> OAuthError {
    OAuthError::InvalidToken("the registration access token is missing or invalid".into())
}

impl Flows {
    /// The scopes a client may register for itself: those registered resources define, and
    /// the identity scopes while OpenID Connect is on.
    async fn offered_scope(&self) -> Result<Scope, FlowError> {
        let offered = self.resources.offered_scope().await?;
        if !self.openid_enabled().await? {
            return Ok(offered);
        }
        let identity = Scope::parse(&IDENTITY_SCOPES.join(" "))
            .map_err(|_| FlowError::internal("the identity scopes do not parse"))?;
        Ok(offered.union(&identity))
    }
}

/// A client's OpenID Connect metadata, checked as the operator's `client create` checks it.
fn oidc_metadata(metadata: &ClientMetadata) -> Result<ClientOidc, OAuthError> {
    let uris = metadata
        .post_logout_redirect_uris
        .as_deref()
        .unwrap_or_default();
    let alg = metadata.id_token_signed_response_alg.as_deref();
    checked_oidc(uris, alg, false).map_err(OAuthError::InvalidClientMetadata)
}

/// OpenID Connect settings as a client or an operator gives them: the algorithm is one the
/// server signs with, the URIs follow the redirect URI rules.
pub(crate) fn checked_oidc(
    uris: &[String],
    alg: Option<&str>,
    allow_insecure_http: bool,
) -> Result<ClientOidc, String> {
    let id_token_signed_response_alg = match alg {
        Some(alg) => Some(
            SigningAlg::parse(alg)
                .ok_or("id_token_signed_response_alg must be ES256 or RS256")?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    Ok(ClientOidc {
        post_logout_redirect_uris: post_logout_redirect_uris(uris, allow_insecure_http)?,
        id_token_signed_response_alg,
    })
}

fn with_oidc(mut info: ClientInformation, oidc: ClientOidc) -> ClientInformation {
    info.post_logout_redirect_uris = oidc.post_logout_redirect_uris;
    info.id_token_signed_response_alg = oidc.id_token_signed_response_alg;
    info
}
