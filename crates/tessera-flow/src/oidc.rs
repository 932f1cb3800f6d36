//! OpenID Connect over the store: the ID token a code exchange adds, userinfo with the opaque
//! access token, and whether OpenID Connect is on at all (it is when there is a key to sign
//! with). The claims themselves are decided in `tessera_core::oidc`.

use std::sync::Arc;

use tessera_core::OAuthError;
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::form::FormParams;
use tessera_core::grant::AuthorizationCodeRecord;
use tessera_core::oidc::{
    EndSessionRequest, IdTokenClaims, IdTokenSubject, OPENID, ScopedClaims, SigningAlg, UserInfo,
    end_session_client, post_logout_redirect,
};
use tessera_core::token::TokenKey;

use crate::Flows;
use crate::error::FlowError;
use crate::keys::{KeyError, KeySet};

impl From<KeyError> for FlowError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Store(e) => Self::Store(e),
            other => Self::internal(other),
        }
    }
}

impl Flows {
    /// The signing keys this node uses now (read again every few seconds).
    pub async fn key_set(&self) -> Result<Arc<KeySet>, FlowError> {
        Ok(self.keys.current().await?)
    }

    /// Whether OpenID Connect is on: a key signs ID tokens.
    pub async fn openid_enabled(&self) -> Result<bool, FlowError> {
        Ok(self.key_set().await?.enabled())
    }

    /// The ID token for the tokens a code was just exchanged for (OIDC Core §3.1.3.3).
    pub async fn id_token(
        &self,
        client: &Client,
        code: &AuthorizationCodeRecord,
        access_token: &str,
        now: UnixTime,
    ) -> Result<String, FlowError> {
        let keys = self.key_set().await?;
        let (username, profile) = self
            .store
            .get_profile(&code.user_id)
            .await?
            .ok_or_else(|| OAuthError::InvalidGrant("the user no longer exists".into()))?;
        let claims = IdTokenClaims::new(
            &IdTokenSubject {
                issuer: self.issuer(),
                user_id: code.user_id.as_str(),
                username: &username,
                client_id: client.id.as_str(),
                scope: &code.scope,
                nonce: code.nonce.as_deref(),
                auth_time: code.auth_time.unwrap_or(code.issued_at),
                access_token,
                profile: &profile,
            },
            now,
        );
        // The client's choice (OIDC Registration `id_token_signed_response_alg`), else ES256.
        let alg = self
            .store
            .get_client_oidc(client.id.as_str())
            .await?
            .and_then(|o| o.id_token_signed_response_alg)
            .and_then(|a| SigningAlg::parse(&a))
            .unwrap_or(SigningAlg::Es256);
        Ok(keys.sign(alg, &claims)?)
    }

    /// Checks an RP-initiated logout request: a hint we signed (expired or not), a client
    /// that agrees with it, and a post-logout URI that client registered exactly. Asked again
    /// when the confirmation form comes back.
    pub async fn check_logout(&self, params: &FormParams) -> Result<LogoutCheck, FlowError> {
        let request = EndSessionRequest::parse(params);
        let refuse = |why: &str| Ok(LogoutCheck::Refused(why.to_owned()));
        let hint = match &request.id_token_hint {
            Some(token) => match self.key_set().await?.verify_hint(token, self.issuer()) {
                Some(hint) => Some(hint),
                None => return refuse("The id_token_hint was not issued by this server."),
            },
            None => None,
        };
        let client_id = match end_session_client(&request, hint.as_ref().map(|h| h.aud.as_str())) {
            Ok(client_id) => client_id,
            Err(why) => return refuse(why),
        };
        let registered = match client_id {
            Some(id) => self.store.get_client_oidc(id).await?.unwrap_or_default(),
            None if request.post_logout_redirect_uri.is_some() => {
                return refuse("A post_logout_redirect_uri needs a client_id or an id_token_hint.");
            }
            None => Default::default(),
        };
        match post_logout_redirect(&request, &registered.post_logout_redirect_uris) {
            Ok(redirect) => Ok(LogoutCheck::Valid {
                redirect,
                fields: request.fields(),
            }),
            Err(why) => refuse(why),
        }
    }
}

/// What a logout request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutCheck {
    /// Sign out, then go to `redirect` if any; `fields` are the request, for the
    /// confirmation form.
    Valid {
        redirect: Option<String>,
        fields: Vec<(&'static str, String)>,
    },
    /// Show why, and sign nobody out.
    Refused(String),
}

impl Flows {
    /// Userinfo (OIDC Core §5.3): the person an active access token with `openid` was
    /// issued for, and the claims its scope allows. `token` is the bearer token, if any.
    pub async fn userinfo(&self, token: Option<&str>) -> Result<UserInfo, FlowError> {
        let invalid = || OAuthError::InvalidToken("the access token is invalid".into());
        let token = token.ok_or_else(|| OAuthError::InvalidToken("no access token".into()))?;
        let record = self
            .store
            .find_token(&TokenKey::of(token))
            .await?
            .filter(|r| r.is_active_access_token(self.now()))
            .ok_or_else(invalid)?;
        let user_id = record.subject.as_ref().ok_or_else(invalid)?;
        if !record.scope.contains(OPENID) {
            return Err(OAuthError::InsufficientScope(
                "userinfo needs a token with the openid scope".into(),
            )
            .into());
        }
        let (username, profile) = self.store.get_profile(user_id).await?.ok_or_else(invalid)?;
        Ok(UserInfo {
            sub: user_id.to_string(),
            claims: ScopedClaims::for_scope(&record.scope, &username, &profile),
        })
    }
}
