//! Admin tokens: the bearer credentials of the admin API (issue 28).
//!
//! An admin token is `tsm_` and 256 random bits, shown once when created; the store keeps its
//! [`TokenKey`] (SHA-256, as for every token) under a public id that lists and revocations
//! name. A token is live until it is revoked or, if it has an expiry, until then.

use crate::clock::UnixTime;
use crate::random::random_b64;
use crate::token::{AdminToken, TokenKey};

/// The prefix of every admin token, so people and secret scanners recognise one.
pub const ADMIN_TOKEN_PREFIX: &str = "tsm_";

/// An admin token as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRecord {
    /// Public: shown in lists, named to revoke the token.
    pub id: String,
    pub key: TokenKey,
    pub created_at: UnixTime,
    /// `None`: until revoked.
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

impl AdminTokenRecord {
    /// Neither revoked nor expired at `now` (expiry is exclusive).
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|exp| now < exp)
    }
}

/// A new admin token valid from `now` for `lifetime` seconds (`None`: until revoked), and
/// the record to store.
pub fn new_admin_token(
    now: UnixTime,
    lifetime: Option<i64>,
) -> Result<(AdminToken, AdminTokenRecord), getrandom::Error> {
    let token = AdminToken::new(format!("{ADMIN_TOKEN_PREFIX}{}", random_b64::<32>()?));
    let record = AdminTokenRecord {
        id: random_b64::<9>()?,
        key: token.key(),
        created_at: now,
        expires_at: lifetime.map(|secs| now.saturating_add(secs)),
        revoked_at: None,
    };
    Ok((token, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_live_until_it_expires_or_is_revoked() {
        let now = UnixTime::from_secs(100);
        let (token, mut record) = new_admin_token(now, Some(60)).unwrap();
        assert!(token.expose().starts_with(ADMIN_TOKEN_PREFIX));
        assert_eq!(record.key, TokenKey::of(token.expose()));
        assert_eq!(record.id.len(), 12);
        assert!(record.is_live(UnixTime::from_secs(159)));
        assert!(!record.is_live(UnixTime::from_secs(160)));
        record.revoked_at = Some(now);
        assert!(!record.is_live(now));
        let (_, forever) = new_admin_token(now, None).unwrap();
        assert!(forever.is_live(UnixTime::from_secs(i64::MAX)));
        assert_eq!(format!("{token:?}"), "AdminToken([redacted])");
    }
}
