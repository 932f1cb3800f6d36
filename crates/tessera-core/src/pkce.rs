//! PKCE (RFC 7636) with the S256 method only.
//!
//! `plain` is refused: it protects nothing once the authorization request leaks, which is the
//! attack PKCE exists for (RFC 9700 §2.1.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::OAuthError;

/// A `code_challenge` from an authorization request: BASE64URL(SHA256(verifier)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

/// A `code_verifier` from a token request: 43 to 128 unreserved characters (RFC 7636 §4.1).
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier([redacted])")
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

impl CodeChallenge {
    /// Parses the challenge and its method. A missing method would mean `plain` (RFC 7636
    /// §4.3), so it is refused like `plain` itself.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, OAuthError> {
        match method {
            Some("S256") => {}
            Some("plain") | None => {
                return Err(OAuthError::invalid_request(
                    "code_challenge_method must be S256",
                ));
            }
            Some(_) => {
                return Err(OAuthError::invalid_request(
                    "unsupported code_challenge_method; use S256",
                ));
            }
        }
        // An S256 challenge is the base64url encoding of 32 bytes: exactly 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(is_unreserved) {
            return Err(OAuthError::invalid_request(
                "code_challenge must be BASE64URL(SHA256(code_verifier))",
            ));
        }
        Ok(Self(challenge.to_owned()))
    }

    /// Rebuilds a challenge that was validated before it was stored.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `verifier` hashes to this challenge, compared in constant time.
    pub fn is_satisfied_by(&self, verifier: &CodeVerifier) -> bool {
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.0.as_bytes()));
        computed.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

impl CodeVerifier {
    pub fn parse(s: &str) -> Result<Self, OAuthError> {
        if (43..=128).contains(&s.len()) && s.bytes().all(is_unreserved) {
            Ok(Self(s.to_owned()))
        } else {
            Err(OAuthError::InvalidGrant(
                "code_verifier must be 43 to 128 unreserved characters".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_appendix_b() {
        let c = CodeChallenge::parse(CHALLENGE, Some("S256")).unwrap();
        assert!(c.is_satisfied_by(&CodeVerifier::parse(VERIFIER).unwrap()));
        let other = CodeVerifier::parse(&"a".repeat(43)).unwrap();
        assert!(!c.is_satisfied_by(&other));
    }

    #[test]
    fn refuses_plain_missing_and_malformed() {
        assert!(CodeChallenge::parse(CHALLENGE, Some("plain")).is_err());
        assert!(CodeChallenge::parse(CHALLENGE, None).is_err());
        assert!(CodeChallenge::parse(CHALLENGE, Some("s256")).is_err());
        assert!(CodeChallenge::parse("short", Some("S256")).is_err());
        assert!(CodeChallenge::parse(&format!("{}=", &CHALLENGE[..42]), Some("S256")).is_err());
        for bad in [
            "a".repeat(42),
            "a".repeat(129),
            format!("{}+", "a".repeat(42)),
        ] {
            assert!(CodeVerifier::parse(&bad).is_err(), "{bad}");
        }
        assert!(CodeVerifier::parse(&"~".repeat(128)).is_ok());
    }
}
