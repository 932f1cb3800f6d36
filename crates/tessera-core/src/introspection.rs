//! RFC 7662 introspection responses.

use serde::{Deserialize, Serialize};

use crate::client::Client;
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
    /// The resources the token is for (RFC 7662 §2.2 `aud`, as in RFC 7519 §4.1.3: always
    /// an array here, so its type does not depend on how many there are).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub aud: Vec<String>,
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
/// An access token is reported active only to a resource server in its audience and to the
/// client it was issued to (RFC 7662 §4): any other caller learns nothing, as if the token
/// did not exist, so a token leaked to one resource server cannot be used at another that
/// checks it. A refresh token is reported active only to its client: a resource server never
/// legitimately holds one, and telling it "active" would invite it to accept a refresh token
/// as a bearer token.
pub fn introspect(
    record: Option<&TokenRecord>,
    caller: &Client,
    issuer: &str,
    now: UnixTime,
) -> Introspection {
    let Some(record) = record else {
        return Introspection::inactive();
    };
    let own = record.client_id == caller.id;
    let audience = caller
        .resource
        .as_ref()
        .is_some_and(|resource| record.audience.contains(resource));
    let token_use = if record.is_active_access_token(now) && (own || audience) {
        "access_token"
    } else if record.kind == TokenKind::Refresh && record.is_active(now) && own {
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
        aud: record
            .audience
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        token_use: Some(token_use.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, register};
    use crate::resource::{Audience, ResourceUri};
    use crate::scope::Scope;
    use crate::token::TokenKey;

    /// A confidential client with id `id`, the credentials of `resource` if given.
    fn caller(id: &str, resource: Option<&str>) -> Client {
        let mut client = register(
            &ClientRegistration {
                name: id.into(),
                ..Default::default()
            },
            UnixTime::from_secs(0),
        )
        .unwrap()
        .client;
        client.id = id.into();
        client.resource = resource.map(|r| ResourceUri::parse(r).unwrap());
        client
    }

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
            audience: Audience::stored("https://rs.example/"),
            username: None,
        }
    }

    #[test]
    fn active_until_expiry_and_revocation() {
        let r = record(TokenKind::Access);
        let i = introspect(
            Some(&r),
            &caller("rs", Some("https://rs.example")),
            "https://as",
            UnixTime::from_secs(199),
        );
        assert!(i.active);
        assert_eq!(i.sub.as_deref(), Some("c1"));
        assert_eq!(i.token_type.as_deref(), Some("Bearer"));
        assert!(
            !introspect(
                Some(&r),
                &caller("rs", Some("https://rs.example")),
                "https://as",
                UnixTime::from_secs(200)
            )
            .active
        );
        let revoked = TokenRecord {
            revoked_at: Some(UnixTime::from_secs(150)),
            ..r
        };
        assert_eq!(
            introspect(
                Some(&revoked),
                &caller("rs", Some("https://rs.example")),
                "https://as",
                UnixTime::from_secs(160)
            ),
            Introspection::inactive()
        );
        assert!(
            !introspect(
                None,
                &caller("rs", Some("https://rs.example")),
                "https://as",
                UnixTime::from_secs(0)
            )
            .active
        );
    }

    #[test]
    fn refresh_tokens_are_active_only_for_their_client() {
        let r = record(TokenKind::Refresh);
        assert!(
            !introspect(
                Some(&r),
                &caller("rs", Some("https://rs.example")),
                "https://as",
                UnixTime::from_secs(150)
            )
            .active
        );
        let own = introspect(
            Some(&r),
            &caller("c1", None),
            "https://as",
            UnixTime::from_secs(150),
        );
        assert!(own.active);
        assert_eq!(own.token_use.as_deref(), Some("refresh_token"));
        assert_eq!(own.token_type, None);
    }

    #[test]
    fn access_tokens_are_active_only_for_their_audience_and_client() {
        let r = record(TokenKind::Access);
        let at = UnixTime::from_secs(150);
        let audience = introspect(Some(&r), &caller("rs", Some("https://rs.example")), "i", at);
        assert!(audience.active);
        assert_eq!(audience.aud, ["https://rs.example/"]);
        assert!(introspect(Some(&r), &caller("c1", None), "i", at).active);
        for stranger in [
            caller("other-rs", Some("https://other.example")),
            caller("c2", None),
        ] {
            assert_eq!(
                introspect(Some(&r), &stranger, "i", at),
                Introspection::inactive()
            );
        }
    }
}
