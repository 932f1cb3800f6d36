//! Client authentication at the token, introspection and revocation endpoints.
//!
//! Secrets are Argon2id-hashed at rest, and verifying one costs tens of milliseconds of CPU.
//! A resource server authenticates on every introspection, so successful verifications are
//! remembered in [`AppState::verified_credentials`], keyed by SHA-256 of the stored hash and
//! the presented secret: the clear secret is never kept, and rotating a secret changes the
//! stored hash, which makes every old entry unreachable.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tessera_core::OAuthError;
use tessera_core::client::Client;
use tessera_core::client_auth::presented_client;
use tessera_core::form::FormParams;
use tessera_core::secret::Secret;

use crate::error::WebError;
use crate::state::AppState;

/// Who may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Only clients with a secret (introspection: a public client cannot prove anything).
    ConfidentialOnly,
    /// Confidential clients with their secret, public clients by `client_id` (RFC 7009 §2.1).
    AnyClient,
}

/// Authenticates the client a request claims to be, or answers `invalid_client`.
///
/// No span of its own: this runs on every token, introspection and revocation request, and
/// a span with a field costs a formatted string each time. The failure says who it was.
pub async fn authenticate(
    state: &AppState,
    authorization: Option<&[u8]>,
    form: &FormParams,
    allowed: Allowed,
) -> Result<Arc<Client>, WebError> {
    let presented =
        presented_client(authorization, form)?.ok_or_else(|| OAuthError::invalid_client(false))?;
    let basic = presented.used_basic();
    let client = state.client(presented.client_id()).await?;
    let authenticated = match (&client, presented.secret()) {
        (Some(c), None) => c.is_public() && allowed == Allowed::AnyClient,
        (Some(c), Some(secret)) => match &c.secret_hash {
            Some(hash) => verify_cached(state, hash, secret).await?,
            None => false,
        },
        (None, Some(secret)) => {
            // Spend the same time as for a real client so timing reveals no client ids.
            verify_blocking(None, secret.clone()).await?;
            false
        }
        (None, None) => false,
    };
    match client {
        Some(c) if authenticated => Ok(c),
        _ => {
            tracing::info!(
                client_id = presented.client_id(),
                basic,
                "client authentication failed"
            );
            Err(OAuthError::invalid_client(basic).into())
        }
    }
}

async fn verify_cached(state: &AppState, stored: &str, secret: &Secret) -> Result<bool, WebError> {
    let key: [u8; 32] = Sha256::new()
        .chain_update(stored.as_bytes())
        .chain_update([0u8])
        .chain_update(secret.expose().as_bytes())
        .finalize()
        .into();
    // Concurrent first requests with the same credentials share one Argon2 run. Only a
    // success is cached: a wrong secret is an `Err` here, which moka does not store.
    let verified = state
        .verified_credentials
        .try_get_with(key, async {
            match verify_blocking(Some(stored.to_owned()), secret.clone()).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(None),
                Err(e) => Err(Some(e.to_string())),
            }
        })
        .await;
    match verified {
        Ok(()) => Ok(true),
        Err(e) => match e.as_ref() {
            None => Ok(false),
            Some(internal) => Err(WebError::internal(internal)),
        },
    }
}

/// Argon2 is CPU-bound: it runs on the hashing threads ([`crate::hashing`]), one per core.
pub async fn verify_blocking(stored: Option<String>, secret: Secret) -> Result<bool, WebError> {
    crate::hashing::verify(stored, secret)
        .await
        .ok_or_else(|| WebError::internal("no password-hashing thread"))
}
