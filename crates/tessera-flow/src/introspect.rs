//! Introspection (RFC 7662).

use std::net::IpAddr;

use tessera_core::OAuthError;
use tessera_core::form::FormParams;
use tessera_core::introspection::{Introspection, introspect};
use tessera_core::token::TokenKey;

use crate::Flows;
use crate::client_auth::Allowed;
use crate::error::FlowError;

impl Flows {
    /// `POST /introspect`: any confidential client may ask, and learns about a token only
    /// if it is a resource server in the token's audience or the client the token was issued
    /// to (`tessera_core::introspection::introspect`). A store failure is an error, never
    /// `active: false`: saying "inactive" when we cannot know would be a lie a resource
    /// server might cache.
    pub async fn introspect(
        &self,
        authorization: Option<&[u8]>,
        form: &FormParams,
        caller: Option<IpAddr>,
    ) -> Result<Introspection, FlowError> {
        let now = self.now();
        let client = self
            .clients
            .authenticate(authorization, form, Allowed::ConfidentialOnly, caller, now)
            .await?;
        let token = form
            .get("token")
            .ok_or_else(|| OAuthError::invalid_request("missing token"))?;
        // `token_type_hint` is only a hint (RFC 7662 §2.1): one lookup by key finds any kind.
        let record = self.store.find_token(&TokenKey::of(token)).await?;
        let answer = introspect(record.as_ref(), &client, self.issuer(), now);
        self.meters.introspected(answer.active);
        Ok(answer)
    }
}
