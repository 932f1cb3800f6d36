//! RFC 7662 introspection responses.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::token::{TokenKind, TokenRecord};

/// An introspection response. Inactive tokens say nothing but `active: false` (RFC 7662 §2.2),
/// so a caller learns nothing about tokens that are not valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exp: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iat: Option<UnixTime>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iss: Option<String>,
    /// Not in RFC 7662: `access_token` or `refresh_token`, as Ory Hydra reports it, so that a
    /// resource server can refuse a refresh token presented as a bearer token.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token_use: Option<String>,
}

impl Introspection {
    pub fn inactive() -> Self {
        Self::default()
    }
}

/// Decides what `caller` may learn about `record` at `now`.
///
/// A refresh token is reported active only to the client it was issued to: a resource server
/// never legitimately holds one, and telling it "active" would invite it to accept a refresh
/// token as a bearer token.
pub fn introspect(
    record: Option<&TokenRecord>,
    caller_client_id: &str,
    issuer: &str,
    now: UnixTime,
) -> Introspection {
    let Some(record) = record else {
        return Introspection::inactive();
    };
    let token_use = if record.is_active_access_token(now) {
        "access_token"
    } else if record.kind == TokenKind::Refresh
        && record.is_active(now)
        && record.client_id == caller_client_id
    {
        "refresh_token"
    } else {
        return Introspection::inactive();
    };
    Introspection {
        active: true,
        scope: Some(record.scope.to_string()),
        client_id: Some(record.client_id.to_string()),
        username: record.username.clone(),
        token_type: (record.kind == TokenKind::Access).then(|| "Bearer".to_owned()),
        exp: Some(record.expires_at),
        iat: Some(record.issued_at),
        // A client_credentials token acts for the client itself, so its subject is the client.
        sub: Some(
            record
                .subject
                .as_ref()
                .map_or_else(|| record.client_id.to_string(), ToString::to_string),
        ),
        iss: Some(issuer.to_owned()),
        token_use: Some(token_use.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use crate::token::TokenKey;

    fn record(kind: TokenKind) -> TokenRecord {
        TokenRecord {
            hash: TokenKey::of("x"),
            kind,
            client_id: "c1".into(),
            subject: None,
            scope: Scope::parse("api").unwrap(),
            issued_at: UnixTime::from_secs(100),
            expires_at: UnixTime::from_secs(200),
            revoked_at: None,
            rotated_at: None,
            family_id: Some("f".into()),
            username: None,
        }
    }

    #[test]
    fn active_until_expiry_and_revocation() {
        let r = record(TokenKind::Access);
        let i = introspect(Some(&r), "rs", "https://as", UnixTime::from_secs(199));
        assert!(i.active);
        assert_eq!(i.sub.as_deref(), Some("c1"));
        assert_eq!(i.token_type.as_deref(), Some("Bearer"));
        assert!(!introspect(Some(&r), "rs", "https://as", UnixTime::from_secs(200)).active);
        let revoked = TokenRecord {
            revoked_at: Some(UnixTime::from_secs(150)),
            ..r
        };
        assert_eq!(
            introspect(Some(&revoked), "rs", "https://as", UnixTime::from_secs(160)),
            Introspection::inactive()
        );
        assert!(!introspect(None, "rs", "https://as", UnixTime::from_secs(0)).active);
    }

    #[test]
    fn refresh_tokens_are_active_only_for_their_client() {
        let r = record(TokenKind::Refresh);
        assert!(!introspect(Some(&r), "rs", "https://as", UnixTime::from_secs(150)).active);
        let own = introspect(Some(&r), "c1", "https://as", UnixTime::from_secs(150));
        assert!(own.active);
        assert_eq!(own.token_use.as_deref(), Some("refresh_token"));
        assert_eq!(own.token_type, None);
    }
}
