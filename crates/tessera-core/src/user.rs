//! Resource owners: the people who log in.

use crate::clock::UnixTime;
use crate::ids::UserId;
use crate::random::random_b64;
use crate::secret::{HashError, Secret, hash_secret};

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
    pub id: UserId,
    pub username: Username,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub created_at: UnixTime,
}

/// The minimum password length of a new user (NIST SP 800-63B: 8).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(transparent)]
    Username(#[from] InvalidUsername),
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    ShortPassword,
    #[error("could not hash the password")]
    Hash(#[from] HashError),
    #[error("the system has no source of randomness")]
    Random,
}

/// A new user ready to be stored: the username checked, the password long enough and
/// hashed with Argon2id, a fresh random id. The counterpart of `client::register`; the CLI,
/// the demo and the tests all create users through it. CPU-bound (Argon2).
pub fn register(username: &str, password: &Secret, now: UnixTime) -> Result<User, UserError> {
    let username = Username::parse(username)?;
    if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    Ok(User {
        id: UserId::new(random_b64::<16>().map_err(|_| UserError::Random)?),
        username,
        password_hash: hash_secret(password)?,
        created_at: now,
    })
}

/// A new password's hash, under the same rules as [`register`].
pub fn new_password_hash(password: &Secret) -> Result<String, UserError> {
    if password.expose().chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    Ok(hash_secret(password)?)
}

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

    #[test]
    fn register_checks_the_name_and_the_password_and_hashes_it() {
        let password = Secret::new("correct horse");
        let user = register("alice", &password, UnixTime::from_secs(7)).unwrap();
        assert_eq!(user.username.as_str(), "alice");
        assert_eq!(user.created_at, UnixTime::from_secs(7));
        assert!(crate::secret::verify_secret(
            &password,
            Some(&user.password_hash)
        ));
        assert_ne!(
            register("alice", &password, UnixTime::from_secs(7))
                .unwrap()
                .id,
            user.id
        );
        assert_eq!(
            register("a b", &password, UnixTime::from_secs(0)).unwrap_err(),
            UserError::Username(InvalidUsername)
        );
        assert_eq!(
            register("alice", &Secret::new("short"), UnixTime::from_secs(0)).unwrap_err(),
            UserError::ShortPassword
        );
        assert_eq!(
            new_password_hash(&Secret::new("1234567")).unwrap_err(),
            UserError::ShortPassword
        );
    }
}
