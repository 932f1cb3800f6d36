//! Users, their passwords, tokens and sessions, as an operator manages them.

use tessera_core::audit::RevocationCause;
use tessera_core::oidc::Profile;
use tessera_core::secret::Secret;
use tessera_core::user::{User, UserError, new_password_hash, register};
use tessera_store::{FamilyOwner, StoreError, TokenFamily};

use crate::admin::{Admin, AdminError, Page, PageRequest, check_length, not_found};
use crate::hashing::{self, Purpose};

/// A new user: the CLI's `user create`.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub password: Secret,
    pub profile: Profile,
}

/// What an operator changes of a profile; what is `None` stays. An empty name or email
/// removes it; a new email is unverified unless `email_verified` says otherwise.
#[derive(Debug, Clone, Default)]
pub struct ProfileChange {
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

impl Admin<'_> {
    pub async fn list_users(
        &self,
        page: &PageRequest,
    ) -> Result<Page<(User, Profile)>, AdminError> {
        let (limit, after) = page.parse()?;
        let found = self.flows.store.users_after(&after, limit + 1).await?;
        Ok(Page::of(found, limit, |(u, _)| u.username.as_str()))
    }

    /// Creates a user under `user::register`'s rules (Argon2id on a hashing thread).
    pub async fn create_user(&self, new: NewUser) -> Result<(User, Profile), AdminError> {
        check_profile(&new.profile)?;
        let now = self.flows.now();
        let NewUser {
            username,
            password,
            profile,
        } = new;
        let user = hashing::run(Purpose::SignIn, move || register(&username, &password, now))
            .await?
            .map_err(user_error)?;
        self.flows
            .store
            .create_user(&user)
            .await
            .map_err(|e| match e {
                StoreError::Conflict => AdminError::Conflict(format!(
                    "a user named {} exists already",
                    user.username.as_str()
                )),
                e => e.into(),
            })?;
        if profile != Profile::default() {
            self.flows
                .store
                .set_profile(user.username.as_str(), &profile)
                .await?;
        }
        tracing::info!(event = "admin_user_created", sub = %user.id);
        let username = user.username.as_str();
        self.record([self.change("user create").user(username)])
            .await;
        Ok((user, profile))
    }

    pub async fn user(&self, username: &str) -> Result<(User, Profile), AdminError> {
        let user = self.find_user(username).await?;
        let (_, profile) = self
            .flows
            .store
            .get_profile(&user.id)
            .await?
            .unwrap_or_default();
        Ok((user, profile))
    }

    /// The user, without the profile (a 404 if there is none).
    async fn find_user(&self, username: &str) -> Result<User, AdminError> {
        self.flows
            .store
            .get_user_by_username(username)
            .await?
            .ok_or_else(|| not_found("user"))
    }

    /// Changes a profile as the CLI's `user update` does.
    pub async fn update_user(
        &self,
        username: &str,
        change: ProfileChange,
    ) -> Result<(User, Profile), AdminError> {
        let (user, mut profile) = self.user(username).await?;
        if let Some(email) = change.email {
            // A new address is not known to be theirs unless said so.
            profile.email_verified = false;
            profile.email = Some(email).filter(|e| !e.is_empty());
        }
        if let Some(name) = change.name {
            profile.name = Some(name).filter(|n| !n.is_empty());
        }
        if let Some(verified) = change.email_verified {
            profile.email_verified = verified;
        }
        check_profile(&profile)?;
        if !self.flows.store.set_profile(username, &profile).await? {
            return Err(not_found("user"));
        }
        tracing::info!(event = "admin_user_updated", sub = %user.id);
        self.record([self.change("user update").user(username)])
            .await;
        Ok((user, profile))
    }

    /// Deletes a user with their tokens, sessions and consents.
    pub async fn delete_user(&self, username: &str) -> Result<(), AdminError> {
        if !self
            .flows
            .store
            .delete_user(username, self.flows.now())
            .await?
        {
            return Err(not_found("user"));
        }
        tracing::info!(event = "admin_user_deleted");
        let events = [
            self.change("user delete"),
            self.revoked(RevocationCause::UserDeleted),
        ];
        self.record(events.map(|e| e.user(username))).await;
        Ok(())
    }

    /// Replaces a password; the user's sessions end and their tokens are revoked.
    pub async fn set_password(&self, username: &str, password: Secret) -> Result<(), AdminError> {
        let user = self.find_user(username).await?;
        let hash = hashing::run(Purpose::SignIn, move || new_password_hash(&password))
            .await?
            .map_err(user_error)?;
        if !self
            .flows
            .store
            .set_password(username, &hash, self.flows.now())
            .await?
        {
            return Err(not_found("user"));
        }
        tracing::info!(event = "admin_password_set", sub = %user.id);
        let events = [
            self.change("user set-password"),
            self.revoked(RevocationCause::PasswordChanged),
        ];
        self.record(events.map(|e| e.user(username))).await;
        Ok(())
    }

    pub async fn user_families(
        &self,
        username: &str,
        page: &PageRequest,
    ) -> Result<Page<TokenFamily>, AdminError> {
        self.find_user(username).await?;
        let owner = FamilyOwner::User {
            username: username.to_owned(),
        };
        self.families(owner, page).await
    }

    /// Revokes every live token issued for a user; returns how many.
    pub async fn revoke_user_tokens(&self, username: &str) -> Result<u64, AdminError> {
        let revoked = self
            .flows
            .store
            .revoke_user_tokens(username, self.flows.now())
            .await?
            .ok_or_else(|| not_found("user"))?;
        tracing::info!(event = "admin_user_tokens_revoked", revoked);
        let events = [
            self.change("user revoke-tokens").user(username),
            self.revoked(RevocationCause::UserRevokeTokens)
                .user(username)
                .with("count", revoked),
        ];
        self.record(events).await;
        Ok(revoked)
    }

    /// Ends every sign-in session of a user; returns how many.
    pub async fn end_user_sessions(&self, username: &str) -> Result<u64, AdminError> {
        let user = self.find_user(username).await?;
        let ended = self.flows.store.end_user_sessions(username).await?;
        tracing::info!(event = "admin_user_sessions_ended", sub = %user.id, ended);
        let ended_sessions = self.change("user end-sessions").user(username);
        self.record([ended_sessions.with("count", ended)]).await;
        Ok(ended)
    }
}

fn check_profile(profile: &Profile) -> Result<(), AdminError> {
    check_length("name", profile.name.as_deref().unwrap_or_default())?;
    check_length("email", profile.email.as_deref().unwrap_or_default())
}

fn user_error(e: UserError) -> AdminError {
    match e {
        UserError::Username(_) | UserError::ShortPassword => AdminError::Invalid(e.to_string()),
        UserError::Hash(_) | UserError::Random => AdminError::Internal(e.to_string()),
    }
}
