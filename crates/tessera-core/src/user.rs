//! Resource owners: the people who log in.

use crate::clock::UnixTime;

/// A username: 1 to 64 characters, no whitespace or control characters. Compared exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a username is 1 to 64 characters without spaces or control characters")]
pub struct InvalidUsername;

impl Username {
    pub fn parse(s: &str) -> Result<Self, InvalidUsername> {
        let n = s.chars().count();
        if (1..=64).contains(&n) && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidUsername)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user as stored. `id` is the stable `sub` of every token issued for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: Username,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
}

/// The minimum password length accepted by `tessera user create` (NIST SP 800-63B: 8).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("ålice@example.com").is_ok());
        for bad in ["", "a b", "a\tb", "a\0", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }
}
