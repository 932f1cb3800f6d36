//! What revoking a token reaches (RFC 7009 §2.1).
//!
//! A refresh token takes its whole family along: the access tokens minted with it and every
//! successor, since the grant itself is withdrawn. An access token goes alone, so a resource
//! server's logout does not end the user's other sessions of the same grant.

use crate::ids::FamilyId;
use crate::token::{TokenKind, TokenRecord};

/// The tokens a revocation of one token reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// Every token of this family.
    Family(&'a FamilyId),
    /// Only the token itself.
    Single,
}

/// What revoking `record` reaches. A refresh token stored without a family (none is minted
/// so) goes alone.
pub fn reach(record: &TokenRecord) -> Reach<'_> {
    match (&record.family_id, record.kind) {
        (Some(family), TokenKind::Refresh) => Reach::Family(family),
        _ => Reach::Single,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::Scope;
    use crate::token::TokenKey;

    fn record(kind: TokenKind, family: Option<&str>) -> TokenRecord {
        TokenRecord {
            hash: TokenKey::of("x"),
            kind,
            client_id: "c".into(),
            subject: None,
            scope: Scope::default(),
            issued_at: crate::clock::UnixTime::from_secs(0),
            expires_at: crate::clock::UnixTime::from_secs(1),
            revoked_at: None,
            rotated_at: None,
            family_id: family.map(FamilyId::from),
            audience: Default::default(),
            username: None,
        }
    }

    #[test]
    fn a_refresh_token_reaches_its_family_and_an_access_token_only_itself() {
        let refresh = record(TokenKind::Refresh, Some("f"));
        assert_eq!(reach(&refresh), Reach::Family(&"f".into()));
        assert_eq!(reach(&record(TokenKind::Access, Some("f"))), Reach::Single);
        assert_eq!(reach(&record(TokenKind::Refresh, None)), Reach::Single);
        assert_eq!(reach(&record(TokenKind::Access, None)), Reach::Single);
    }
}
