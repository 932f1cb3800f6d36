//! The token endpoint's grants (RFC 6749 §4.1.3, §4.4, §6), sequenced over the store.
//!
//! Each grant is a function of the store, the lifetimes, the authenticated client, typed
//! inputs and `now`; [`Flows::token`] authenticates the client, parses the request and calls
//! one of them. A replayed code and a reused refresh token are outcomes, not errors: the
//! flow has already revoked what they reach when it returns them.

use std::net::IpAddr;

use tessera_core::OAuthError;
use tessera_core::audit::RevocationCause;
use tessera_core::client::{Client, GrantType};
use tessera_core::clock::UnixTime;
use tessera_core::form::FormParams;
use tessera_core::grant::{
    AuthorizationCodeRecord, Lifetimes, Minted, RefreshCheck, TokenRequest, TokenResponse,
    TokenSubject, check_code, check_refresh, ensure_grant_allowed, granted_scope, mint_tokens,
};
use tessera_core::ids::{FamilyId, UserId};
use tessera_core::oidc::OPENID;
use tessera_core::resource::{Audience, narrowed_audience};
use tessera_core::scope::Scope;
use tessera_core::token::{AuthorizationCode, RefreshToken};
use tessera_store::{Redemption, Store};

use crate::Flows;
use crate::audit;
use crate::client_auth::Allowed;
use crate::error::FlowError;
use crate::revoke::{revoke_reach, revoked_by_client};

/// What exchanging an authorization code came to.
#[derive(Debug)]
pub enum CodeExchange {
    /// The tokens, and the code's record they were issued for (the ID token needs it).
    Issued {
        response: TokenResponse,
        code: Box<AuthorizationCodeRecord>,
    },
    /// The code was exchanged before: it leaked. RFC 6749 §4.1.2 says the server SHOULD
    /// revoke the tokens issued from it; `revoked` of them were. `user_id`: whose they were.
    Replayed { revoked: u64, user_id: UserId },
}

/// What presenting a refresh token came to.
#[derive(Debug)]
pub enum Rotation {
    Issued(TokenResponse),
    /// It had been rotated already: stolen, or the legitimate client lost a race with the
    /// thief. Its whole family is revoked (RFC 9700 §4.14.2), so neither keeps access.
    Reused {
        revoked: u64,
        /// Whose grant it was, if a person's.
        username: Option<String>,
    },
}

/// What the token request presents with its code (RFC 6749 §4.1.3, RFC 7636 §4.5).
#[derive(Debug, Clone, Copy)]
pub struct CodePresented<'a> {
    pub code: &'a AuthorizationCode,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    /// The `resource` parameters: the part of the code's audience the access token is for.
    pub resources: &'a Audience,
}

impl Flows {
    /// `POST /token`: authenticates the client, then runs the grant it asks for.
    pub async fn token(
        &self,
        authorization: Option<&[u8]>,
        form: &FormParams,
        caller: Option<IpAddr>,
    ) -> Result<TokenResponse, FlowError> {
        let now = self.now();
        let client = self
            .clients
            .authenticate(authorization, form, Allowed::AnyClient, caller, now)
            .await?;
        let request = TokenRequest::parse(form)?;
        let grant = request.grant_type();
        ensure_grant_allowed(&client, grant)?;
        let (store, lifetimes) = (&*self.store, self.settings.lifetimes);
        let response = match request {
            TokenRequest::ClientCredentials { scope, resources } => {
                let scope = granted_scope(&client, scope.as_ref())?;
                let audience = self.resources.audience(&resources, &client, &scope).await?;
                client_credentials(store, lifetimes, &client, scope, audience, now).await?
            }
            TokenRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
                resources,
            } => {
                let presented = CodePresented {
                    code: &code,
                    redirect_uri: redirect_uri.as_deref(),
                    code_verifier: code_verifier.as_deref(),
                    resources: &resources,
                };
                match exchange_code(store, lifetimes, &client, presented, now).await? {
                    CodeExchange::Issued { mut response, code } => {
                        if code.scope.contains(OPENID) {
                            let access_token = response.access_token.expose();
                            let id_token = self.id_token(&client, &code, access_token, now).await?;
                            response.id_token = Some(id_token);
                        }
                        response
                    }
                    CodeExchange::Replayed { revoked, user_id } => {
                        tracing::warn!(
                            event = "code_replayed",
                            revoked,
                            "authorization code used twice; its tokens are revoked"
                        );
                        // A rare path: the username is read for the audit trail, which
                        // names people by it.
                        let username = match self.store.get_profile(user_id.as_str()).await {
                            Ok(found) => found.map(|(name, _)| name),
                            Err(_) => None,
                        };
                        let cause = RevocationCause::CodeReplayed;
                        let username = username.as_deref();
                        let event = revoked_by_client(&client.id, username, cause, revoked, now);
                        audit::record(store, event.address(caller)).await;
                        return Err(unknown_code().into());
                    }
                }
            }
            TokenRequest::RefreshToken {
                refresh_token,
                scope,
                resources,
            } => match refresh(
                store,
                lifetimes,
                &client,
                &refresh_token,
                Narrowing {
                    scope: scope.as_ref(),
                    resources: &resources,
                },
                now,
            )
            .await?
            {
                Rotation::Issued(response) => response,
                Rotation::Reused { revoked, username } => {
                    tracing::warn!(
                        event = "refresh_token_reused",
                        revoked,
                        "rotated refresh token presented again; family revoked"
                    );
                    let cause = RevocationCause::RefreshReused;
                    let username = username.as_deref();
                    let event = revoked_by_client(&client.id, username, cause, revoked, now);
                    audit::record(store, event.address(caller)).await;
                    return Err(OAuthError::InvalidGrant(
                        "the refresh token was already used; all tokens of this grant are revoked"
                            .into(),
                    )
                    .into());
                }
            },
        };
        // Routine, once per token: DEBUG, so the log's volume follows security events
        // (sign-ins, failures, reuse), not traffic.
        tracing::debug!(client_id = %client.id, grant = grant.as_str(), "token issued");
        self.meters.token_issued(grant);
        Ok(response)
    }
}

/// An access token for the client itself, with the scope and audience decided for it; no
/// refresh token (RFC 6749 §4.4.3).
pub async fn client_credentials(
    store: &dyn Store,
    lifetimes: Lifetimes,
    client: &Client,
    scope: Scope,
    audience: Audience,
    now: UnixTime,
) -> Result<TokenResponse, FlowError> {
    let grant = Grant {
        user_id: None,
        scope,
        family_id: None,
        grant_ends_at: None,
        audience: audience.clone(),
        grant_audience: audience,
    };
    let minted = mint(lifetimes, client, grant, now)?;
    store.insert_tokens(&minted.records).await?;
    Ok(minted.response)
}

/// Exchanges a code once; a second exchange revokes the family the first one created.
/// A code presented by the wrong client, with the wrong redirect URI or verifier, is
/// refused without being consumed.
pub async fn exchange_code(
    store: &dyn Store,
    lifetimes: Lifetimes,
    client: &Client,
    presented: CodePresented<'_>,
    now: UnixTime,
) -> Result<CodeExchange, FlowError> {
    let key = presented.code.key();
    let record = store.find_code(&key).await?.ok_or_else(unknown_code)?;
    if record.redeemed_at.is_some() && record.client_id == client.id {
        let revoked = store.revoke_family(&record.family_id, now).await?;
        return Ok(CodeExchange::Replayed {
            revoked,
            user_id: record.user_id,
        });
    }
    check_code(
        &record,
        client,
        presented.redirect_uri,
        presented.code_verifier,
        now,
    )?;
    let grant = Grant {
        user_id: Some(&record.user_id),
        scope: record.scope.clone(),
        family_id: Some(&record.family_id),
        grant_ends_at: None,
        audience: narrowed_audience(presented.resources, &record.audience)?,
        grant_audience: record.audience.clone(),
    };
    let minted = mint(lifetimes, client, grant, now)?;
    match store.redeem_code(&key, now, &minted.records).await? {
        Redemption::Redeemed => Ok(CodeExchange::Issued {
            response: minted.response,
            code: Box::new(record),
        }),
        Redemption::AlreadyRedeemed { family_id } => {
            let revoked = store.revoke_family(&family_id, now).await?;
            Ok(CodeExchange::Replayed {
                revoked,
                user_id: record.user_id,
            })
        }
        Redemption::NotFound => Err(unknown_code().into()),
    }
}

/// Rotates a refresh token: a new pair in the same family, the old token dead.
pub async fn refresh(
    store: &dyn Store,
    lifetimes: Lifetimes,
    client: &Client,
    refresh_token: &RefreshToken,
    requested: Narrowing<'_>,
    now: UnixTime,
) -> Result<Rotation, FlowError> {
    let key = refresh_token.key();
    let record = store
        .find_token(&key)
        .await?
        .ok_or_else(|| OAuthError::InvalidGrant("unknown refresh token".into()))?;
    let grace = lifetimes.refresh_grace;
    let (scope, again) = match check_refresh(&record, client, requested.scope, grace, now)? {
        RefreshCheck::Rotate { scope } => (scope, false),
        RefreshCheck::RotateAgain { scope } => (scope, true),
        RefreshCheck::Reused => {
            let revoked = revoke_reach(store, &record, now).await?;
            return Ok(Rotation::Reused {
                revoked,
                username: record.username,
            });
        }
    };
    let grant = Grant {
        user_id: record.subject.as_ref(),
        scope,
        family_id: record.family_id.as_ref(),
        // The presented refresh token expires when its grant does: the successors inherit
        // that end, so rotating never extends a sign-in.
        grant_ends_at: Some(record.expires_at),
        audience: narrowed_audience(requested.resources, &record.audience)?,
        grant_audience: record.audience.clone(),
    };
    let minted = mint(lifetimes, client, grant, now)?;
    if again {
        // Rotated already, within the grace period: a fresh pair beside the successors.
        store.insert_tokens(&minted.records).await?;
        return Ok(Rotation::Issued(minted.response));
    }
    if store
        .rotate_refresh_token(&key, now, &minted.records)
        .await?
    {
        Ok(Rotation::Issued(minted.response))
    } else {
        let revoked = revoke_reach(store, &record, now).await?;
        Ok(Rotation::Reused {
            revoked,
            username: record.username,
        })
    }
}

/// What a refresh request asks to narrow: the scope and the audience (RFC 8707 §2.2).
#[derive(Debug, Clone, Copy)]
pub struct Narrowing<'a> {
    pub scope: Option<&'a Scope>,
    pub resources: &'a Audience,
}

/// The tokens about to be minted for a client, all but their lifetimes.
struct Grant<'a> {
    user_id: Option<&'a UserId>,
    scope: Scope,
    family_id: Option<&'a FamilyId>,
    grant_ends_at: Option<UnixTime>,
    audience: Audience,
    grant_audience: Audience,
}

fn mint(
    lifetimes: Lifetimes,
    client: &Client,
    grant: Grant<'_>,
    now: UnixTime,
) -> Result<Minted, FlowError> {
    let user_id = grant.user_id;
    let subject = TokenSubject {
        client_id: &client.id,
        user_id,
        scope: grant.scope,
        family_id: grant.family_id,
        grant_ends_at: grant.grant_ends_at,
        audience: grant.audience,
        grant_audience: grant.grant_audience,
    };
    // Refresh tokens only for users, and only for clients registered for the grant.
    let with_refresh = user_id.is_some() && client.allows_grant(GrantType::RefreshToken);
    mint_tokens(&subject, lifetimes, with_refresh, now).map_err(FlowError::internal)
}

fn unknown_code() -> OAuthError {
    OAuthError::InvalidGrant("unknown, expired or used authorization code".into())
}
