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
//!
//! Argon2's 19 MiB of working memory is kept by each thread that hashes, instead of being
//! allocated and freed for every run: glibc answers the free of so large a block by raising
//! its mmap and trim thresholds for the whole process, after which every thread's arena keeps
//! that much freed memory, and the server's memory grows for good (docs/BENCHMARKS.md,
//! "Bounds").

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
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

/// Salt length of new hashes, in bytes (the PHC recommendation, and argon2's default).
const SALT_BYTES: usize = 16;

/// Hashes a secret into an Argon2id PHC string with a fresh random salt.
pub fn hash_secret(secret: &Secret) -> Result<String, HashError> {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|_| HashError)?;
    let argon2 = Argon2::default();
    let params = argon2.params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    with_memory(params.block_count(), |memory| {
        argon2.hash_password_into_with_memory(secret.0.as_bytes(), &salt, &mut out, memory)
    })
    .map_err(|_| HashError)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|_| HashError)?,
        salt: Some(Salt::new(&salt).map_err(|_| HashError)?),
        hash: Some(Output::new(&out).map_err(|_| HashError)?),
    };
    Ok(phc.to_string())
}

/// Whether `secret` matches the Argon2 PHC string `stored`, compared in constant time.
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
    matches(secret.0.as_bytes(), &parsed) && real
}

/// Recomputes the hash with the stored algorithm, version, parameters and salt.
fn matches(secret: &[u8], stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(stored.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = stored
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(stored) else {
        return false;
    };
    let argon2 = Argon2::new(algorithm, version, params);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let Some(out) = buffer.get_mut(..expected.len()) else {
        return false;
    };
    let computed = with_memory(argon2.params().block_count(), |memory| {
        argon2.hash_password_into_with_memory(secret, salt, out, memory)
    });
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(out).is_ok_and(|out| &out == expected)
}

thread_local! {
    /// Argon2's working memory, kept by each thread that hashes (see the module's notes).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `hash` on this thread's Argon2 memory, grown to `blocks` if need be (once, for the
/// parameters in use).
fn with_memory<T>(
    blocks: usize,
    hash: impl FnOnce(&mut [Block]) -> argon2::Result<T>,
) -> argon2::Result<T> {
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        match memory.get_mut(..blocks) {
            Some(blocks) => hash(blocks),
            None => Err(argon2::Error::MemoryTooLittle),
        }
    })
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

    /// Hashes made by argon2's own `PasswordHasher` (every hash stored before this module
    /// did its own hashing) verify here, and ours verify there.
    #[test]
    fn agrees_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let secret = Secret::new("correct horse battery staple");
        let theirs = Argon2::default()
            .hash_password(secret.0.as_bytes())
            .unwrap()
            .to_string();
        assert!(verify_secret(&secret, Some(&theirs)));
        assert!(!verify_secret(&Secret::new("correct horse"), Some(&theirs)));
        let ours = hash_secret(&secret).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(secret.0.as_bytes(), &parsed)
                .is_ok()
        );
        assert_ne!(
            hash_secret(&secret).unwrap(),
            ours,
            "a fresh salt each time"
        );
    }

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
