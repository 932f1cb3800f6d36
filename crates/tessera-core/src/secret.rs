//! Client secrets and passwords at rest: Argon2id PHC strings.
//!
//! Client secrets are generated here (256 bits, shown once). For such a secret a fast hash
//! would already resist guessing, but one hashing scheme for every secret (client secrets now,
//! user passwords later) keeps the rule simple: nothing a client or person authenticates with
//! is stored in a form cheaper to attack than Argon2id. The cost per request is avoided by the
//! server's verified-credential cache, not by a weaker hash.
//!
//! Parameters: argon2 0.6's defaults, which are OWASP's recommendation for Argon2id
//! (m = 19 MiB, t = 2, p = 1). These functions are CPU-bound for tens of milliseconds; async
//! callers run them on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use std::fmt;
use std::sync::OnceLock;

use crate::random::random_b64;

/// A secret in clear: a client secret or a password. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// A new client secret: `tss_` and 256 random bits.
    pub fn generate_client_secret() -> Result<Self, getrandom::Error> {
        Ok(Self(format!("tss_{}", random_b64::<32>()?)))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not hash the secret")]
pub struct HashError;

/// Hashes a secret into an Argon2id PHC string with a fresh random salt.
pub fn hash_secret(secret: &Secret) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(secret.0.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| HashError)
}

/// Checks a secret against a stored PHC string, in constant time for a given hash.
///
/// With `stored = None` (unknown client or user) the secret is checked against a dummy hash
/// with the same parameters, so the answer takes as long as for a real one and timing does
/// not reveal which identifiers exist.
pub fn verify_secret(secret: &Secret, stored: Option<&str>) -> bool {
    let (phc, real) = match stored {
        Some(s) => (s, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(secret.0.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_secret(&Secret::new("tessera dummy secret for unknown identifiers"))
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_secret() {
        let s = Secret::generate_client_secret().unwrap();
        let phc = hash_secret(&s).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_secret(&s, Some(&phc)));
        assert!(!verify_secret(&Secret::new("wrong"), Some(&phc)));
        assert!(!verify_secret(&s, None));
        assert!(!verify_secret(&s, Some("not a phc string")));
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
    }
}
