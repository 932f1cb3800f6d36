//! Opaque tokens: 256 random bits, a kind prefix, and the SHA-256 kept at rest.
//!
//! A token carries no data, so its meaning is whatever the store says under its hash, and a
//! revocation takes effect on the next lookup. Plain SHA-256 is enough at rest: the input has
//! 256 bits of entropy, so a leaked hash cannot be reversed by guessing, unlike a password.

use sha2::{Digest, Sha256};
use std::fmt;

use crate::clock::UnixTime;
use crate::random::random_b64;
use crate::scope::Scope;

/// What a token is for, shown by its prefix so people and secret scanners can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Access,
    Refresh,
    AuthorizationCode,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Access => "tsa_",
            Self::Refresh => "tsr_",
            Self::AuthorizationCode => "tsc_",
        }
    }

    /// The kind a presented token claims by its prefix; the store decides whether it is real.
    pub fn of(token: &str) -> Option<Self> {
        [Self::Access, Self::Refresh, Self::AuthorizationCode]
            .into_iter()
            .find(|k| token.starts_with(k.prefix()))
    }
}

/// A token in clear. It exists only in memory and in the response that hands it out.
#[derive(Clone, PartialEq, Eq)]
pub struct RawToken(String);

impl RawToken {
    /// A fresh token of `kind` from the OS CSPRNG.
    pub fn generate(kind: TokenKind) -> Result<Self, getrandom::Error> {
        Ok(Self(format!("{}{}", kind.prefix(), random_b64::<32>()?)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for RawToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawToken([redacted])")
    }
}

/// SHA-256 of a token's full text: the only form in which the store knows a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A short fingerprint is enough to correlate log lines and reveals nothing usable.
        let head: String = self.0.iter().take(4).map(|b| format!("{b:02x}")).collect();
        write!(f, "TokenHash({head}..)")
    }
}

/// What the store knows about one token, under its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub hash: TokenHash,
    pub kind: TokenKind,
    pub client_id: String,
    /// The resource owner; `None` for client_credentials tokens.
    pub subject: Option<String>,
    pub scope: Scope,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// When a refresh token was exchanged for a new one. A rotated token is dead, and
    /// presenting it again is the sign of theft that revokes its family (RFC 9700 §4.14.2).
    pub rotated_at: Option<UnixTime>,
    /// Every token descended from one grant shares a family; revoking a refresh token or
    /// detecting its reuse revokes the whole family at once.
    pub family_id: String,
    /// The subject's username, read from the user on lookup (not stored with the token).
    pub username: Option<String>,
}

impl TokenRecord {
    /// Active means: not revoked, not rotated, and not yet expired at `now` (expiry is
    /// exclusive).
    pub fn is_active(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && self.rotated_at.is_none() && now < self.expires_at
    }
}

/// A new grant's family identifier: the time it starts (12 hex digits of seconds) and 96
/// random bits. It is never shown to anyone; the time prefix only keeps the store's family
/// index growing at its end, where a random id would write a random page of it per token.
pub fn new_family_id(now: crate::clock::UnixTime) -> Result<String, getrandom::Error> {
    Ok(format!("{:012x}{}", now.max(0), random_b64::<12>()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_distinct() {
        let a = RawToken::generate(TokenKind::Access).unwrap();
        let b = RawToken::generate(TokenKind::Access).unwrap();
        assert!(a.expose().starts_with("tsa_"));
        assert_eq!(a.expose().len(), 4 + 43);
        assert_ne!(a, b);
        assert_eq!(TokenKind::of(a.expose()), Some(TokenKind::Access));
        assert_eq!(format!("{a:?}"), "RawToken([redacted])");
    }

    #[test]
    fn a_prefix_of_a_token_hashes_differently() {
        let t = RawToken::generate(TokenKind::Refresh).unwrap();
        let full = t.expose();
        let prefix = full.get(..full.len() - 1).unwrap();
        assert_ne!(TokenHash::of(prefix), t.hash());
        assert_eq!(TokenHash::of(full), t.hash());
    }
}
