//! `RedirectUri::parse` (client registration) and `Scope::parse` (authorization, token and
//! introspection requests, introspection responses), on UTF-8 input.
//!
//! Properties: neither panics; an accepted redirect URI is kept verbatim and has no fragment,
//! whitespace or control character; a scope's `to_string()` parses back to the same scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::client::RedirectUri;
use tessera_core::scope::Scope;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(uri) = RedirectUri::parse(s) {
        assert_eq!(uri.as_str(), s);
        assert!(!s.contains('#'), "a redirect URI with a fragment: {s:?}");
        assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()));
    }
    if let Ok(scope) = Scope::parse(s) {
        let text = scope.to_string();
        assert_eq!(
            Scope::parse(&text).as_ref(),
            Ok(&scope),
            "{s:?} -> {text:?}"
        );
        for token in scope.iter() {
            assert!(!token.is_empty() && !token.contains(' '));
        }
    }
});
