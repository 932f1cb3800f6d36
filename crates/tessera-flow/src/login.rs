//! Signing a person in and out at the server (the login page's work, without the page).
//!
//! Session ids are 256 random bits; the store keeps only their key (SHA-256), like every
//! other bearer secret. A new id at every sign-in means an id planted before it (fixation)
//! is worthless.

use std::net::IpAddr;

use tessera_core::audit::{Actor, AuditEvent, AuditKind};
use tessera_core::random::random_b64;
use tessera_core::secret::Secret;
use tessera_core::token::SessionId;
use tessera_core::user::{User, Username};
use tessera_store::Session;

use crate::Flows;
use crate::audit;
use crate::client_auth::verify_blocking;
use crate::error::FlowError;
use crate::hashing::Purpose;
use crate::logged::{Quota, loggable};
use crate::throttle::Verdict;

/// Failed and throttled sign-ins are security events, but a flood of them must not flood the
/// log: a few lines a second, each saying how many were left out before it.
static FAILED: Quota = Quota::new();
static THROTTLED: Quota = Quota::new();

/// What a sign-in attempt came to.
#[derive(Debug)]
pub enum SignIn {
    /// A new session; its id goes into the browser's cookie.
    SignedIn { session: SessionId },
    /// Wrong username or password (which of the two is not said).
    Failed,
    /// Too many failures lately: refused without checking, retry after this many seconds.
    Throttled { retry_after: i64 },
}

impl Flows {
    /// Checks a username and password (throttled, see [`crate::throttle`]) and starts a
    /// session if they match, ending the session the browser presented (`previous`), so one
    /// browser never holds two sign-ins.
    pub async fn sign_in(
        &self,
        username: &str,
        password: Secret,
        address: Option<IpAddr>,
        previous: Option<&SessionId>,
    ) -> Result<SignIn, FlowError> {
        // No user can have a name of another shape: refused before any lookup, hashing or
        // throttle entry, so attacker-chosen garbage costs nothing and is stored nowhere.
        if Username::parse(username).is_err() {
            if let Some(left_out) = FAILED.admit() {
                let username = loggable(username);
                tracing::warn!(event = "login_failed", %username, ip = ?address, left_out);
            }
            crate::measure::sign_in_failed();
            return Ok(SignIn::Failed);
        }
        let now = self.now();
        let attempt = match self.throttle.begin(username, address, now) {
            Verdict::Refuse(retry_after) => {
                if let Some(left_out) = THROTTLED.admit() {
                    tracing::warn!(event = "login_throttled", username, ip = ?address, left_out);
                }
                return Ok(SignIn::Throttled { retry_after });
            }
            Verdict::Proceed { attempt, delay } => {
                if let Some(delay) = delay {
                    tokio::time::sleep(delay).await;
                }
                attempt
            }
        };
        let user = self.store.get_user_by_username(username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let verified = verify_blocking(Purpose::SignIn, stored, password).await?;
        match user {
            Some(user) if verified => {
                attempt.succeeded();
                crate::measure::signed_in();
                tracing::info!(event = "login_succeeded", username, ip = ?address);
                if let Some(previous) = previous {
                    self.store.delete_session(&previous.key()).await?;
                }
                let session = self.start_session(&user).await?;
                let name = user.username.as_str();
                let event = AuditEvent::new(now, AuditKind::SignIn, Actor::User(name.into()));
                audit::record(&*self.store, event.user(name).address(address)).await;
                Ok(SignIn::SignedIn { session })
            }
            _ => {
                attempt.failed(self.now());
                crate::measure::sign_in_failed();
                if let Some(left_out) = FAILED.admit() {
                    tracing::warn!(event = "login_failed", username, ip = ?address, left_out);
                }
                // Only attempts the throttle let through reach here, so it bounds the rows.
                let event = AuditEvent::new(now, AuditKind::SignInFailed, Actor::Anonymous);
                audit::record(&*self.store, event.user(username).address(address)).await;
                Ok(SignIn::Failed)
            }
        }
    }

    /// The signed-in person, if `session` names a live session.
    pub async fn session_user(
        &self,
        session: Option<&SessionId>,
    ) -> Result<Option<User>, FlowError> {
        let Some(session) = session else {
            return Ok(None);
        };
        Ok(self
            .store
            .find_session_user(&session.key(), self.now())
            .await?)
    }

    /// Ends `session`, if the browser had one.
    pub async fn sign_out(&self, session: Option<&SessionId>) -> Result<(), FlowError> {
        let Some(session) = session else {
            return Ok(());
        };
        if let Some(user) = self.session_user(Some(session)).await? {
            tracing::info!(event = "logout", username = user.username.as_str());
        }
        self.store.delete_session(&session.key()).await?;
        Ok(())
    }

    async fn start_session(&self, user: &User) -> Result<SessionId, FlowError> {
        let id = SessionId::new(random_b64::<32>().map_err(FlowError::internal)?);
        let now = self.now();
        self.store
            .create_session(&Session {
                hash: id.key(),
                user_id: user.id.clone(),
                created_at: now,
                expires_at: now.saturating_add(self.settings.session_ttl),
            })
            .await?;
        Ok(id)
    }
}
