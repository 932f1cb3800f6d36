//! Revocation (RFC 7009): what a client may revoke, and how far a revocation reaches.

use std::net::IpAddr;

use tessera_core::OAuthError;
use tessera_core::audit::{Actor, AuditEvent, RevocationCause};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::form::FormParams;
use tessera_core::revocation::{Reach, reach};
use tessera_core::token::{TokenKey, TokenRecord};
use tessera_store::{Store, StoreError};

use crate::Flows;
use crate::audit;
use crate::client_auth::Allowed;
use crate::error::FlowError;

/// What a revocation request came to. Every outcome is answered 200 (RFC 7009 §2.2), so the
/// endpoint cannot be used to probe for tokens; the difference is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The token was the caller's; this many tokens were revoked with it (0 if it was
    /// revoked already).
    Revoked { count: u64 },
    /// The token belongs to another client: nothing was revoked.
    NotOwned,
    /// No such token.
    Unknown,
}

impl Flows {
    /// `POST /revoke`: authenticates the client, then revokes the token if it is its own.
    pub async fn revoke(
        &self,
        authorization: Option<&[u8]>,
        form: &FormParams,
        caller: Option<IpAddr>,
    ) -> Result<Revocation, FlowError> {
        let now = self.now();
        let client = self
            .clients
            .authenticate(authorization, form, Allowed::AnyClient, caller, now)
            .await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("missing token"))?;
        let outcome = revoke(&*self.store, &client, &TokenKey::of(token), caller, now).await?;
        self.meters.revocation(match outcome {
            Revocation::Revoked { .. } => crate::measure::RevocationOutcome::Revoked,
            Revocation::NotOwned => crate::measure::RevocationOutcome::NotOwned,
            Revocation::Unknown => crate::measure::RevocationOutcome::Unknown,
        });
        match outcome {
            Revocation::Revoked { .. } => tracing::debug!(client_id = %client.id, "token revoked"),
            Revocation::NotOwned => {
                tracing::warn!(client_id = %client.id, "refused to revoke another client's token")
            }
            Revocation::Unknown => {}
        }
        Ok(outcome)
    }
}

/// Revokes the token under `key` if `client` owns it, and records that in the audit trail
/// if it revoked anything (a token revoked already is not a new revocation).
pub async fn revoke(
    store: &dyn Store,
    client: &Client,
    key: &TokenKey,
    caller: Option<IpAddr>,
    now: UnixTime,
) -> Result<Revocation, FlowError> {
    Ok(match store.find_token(key).await? {
        Some(record) if record.client_id == client.id => {
            let count = revoke_reach(store, &record, now).await?;
            if count > 0 {
                let username = record.username.as_deref();
                let cause = RevocationCause::RevocationEndpoint;
                let event = revoked_by_client(&record.client_id, username, cause, count, now);
                audit::record(store, event.address(caller)).await;
            }
            Revocation::Revoked { count }
        }
        Some(_) => Revocation::NotOwned,
        None => Revocation::Unknown,
    })
}

/// The audit event of `count` tokens revoked by a request of the client `client_id` (the
/// owner at the revocation endpoint, or whoever holds its credentials and presented a used
/// code or refresh token), for `username` if the grant was a person's.
pub(crate) fn revoked_by_client(
    client_id: &str,
    username: Option<&str>,
    cause: RevocationCause,
    count: u64,
    now: UnixTime,
) -> AuditEvent {
    let event = AuditEvent::revoked(now, Actor::Client(client_id.into()), cause)
        .client(client_id)
        .with("count", count);
    match username {
        Some(name) => event.user(name),
        None => event,
    }
}

/// Revokes what `record` reaches (see [`reach`]); returns how many tokens that revoked.
pub async fn revoke_reach(
    store: &dyn Store,
    record: &TokenRecord,
    now: UnixTime,
) -> Result<u64, StoreError> {
    match reach(record) {
        Reach::Family(family) => store.revoke_family(family, now).await,
        Reach::Single => store.revoke_token(&record.hash, now).await.map(u64::from),
    }
}
