//! `client_auth::parse_basic`: the `Authorization: Basic` header of token, introspection and
//! revocation requests (RFC 6749 §2.3.1).
//!
//! Properties: never panics; an accepted header yields a non-empty client id and names the
//! Basic scheme.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::client_auth::parse_basic;

fuzz_target!(|data: &[u8]| {
    if let Ok((client_id, _secret)) = parse_basic(data) {
        assert!(!client_id.is_empty());
        let scheme = data.get(..6).unwrap_or_default();
        assert!(scheme.eq_ignore_ascii_case(b"basic "), "accepted {data:?}");
    }
});
