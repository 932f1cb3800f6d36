//! `tessera_guard::bearer_token`: the `Authorization` header a resource server reads.
//!
//! The input is one header value; a `\n` (which no header value can contain) separates several
//! `Authorization` headers. Inputs `http::HeaderValue` refuses are skipped: hyper refuses them
//! before the guard could see them.
//!
//! Properties: never panics; several headers are always `Malformed`; a token is a non-empty
//! RFC 6750 b64token and the tail of the header.
#![no_main]

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tessera_guard::{Bearer, bearer_token};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    let mut count = 0;
    for part in data.split(|b| *b == b'\n') {
        let Ok(value) = HeaderValue::from_bytes(part) else {
            return;
        };
        headers.append(AUTHORIZATION, value);
        count += 1;
    }
    match bearer_token(&headers) {
        Bearer::Token(token) => {
            let token = token.expose();
            assert_eq!(count, 1, "a token from {count} headers");
            assert!(!token.is_empty() && !token.starts_with('='));
            assert!(
                token
                    .bytes()
                    .all(|b| { b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b) })
            );
            assert!(data.ends_with(token.as_bytes()));
        }
        Bearer::Missing | Bearer::Malformed => {}
    }
});
