//! `pkce::CodeChallenge::parse` (authorization request) and `CodeVerifier::parse` (token
//! request), on UTF-8 input.
//!
//! Properties: neither panics; only S256 is accepted; an accepted verifier's S256 challenge
//! parses and is satisfied by it, and an accepted challenge is not satisfied by a verifier
//! equal to itself (the `plain` downgrade).
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use tessera_core::pkce::{CodeChallenge, CodeVerifier};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let challenge = CodeChallenge::parse(s, Some("S256"));
    assert!(CodeChallenge::parse(s, Some("plain")).is_err());
    assert!(CodeChallenge::parse(s, None).is_err());
    let verifier = CodeVerifier::parse(s);
    if let Ok(verifier) = &verifier {
        let derived = URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()));
        let derived = CodeChallenge::parse(&derived, Some("S256"));
        assert!(derived.is_ok_and(|c| c.is_satisfied_by(verifier)));
    }
    if let (Ok(challenge), Ok(verifier)) = (&challenge, &verifier) {
        assert!(
            !challenge.is_satisfied_by(verifier),
            "plain accepted for {s:?}"
        );
    }
});
