//! The bearer token of a request: the `Authorization: Bearer` header only (RFC 6750 §2.1).
//!
//! Tokens in the query string or the form body are not accepted: they end up in logs and
//! browser history (RFC 6750 §2.3 and RFC 9700 §2.5 advise against them).

use http::HeaderMap;
use http::header::AUTHORIZATION;
pub use tessera_core::token::AccessToken;

/// What the `Authorization` header says about a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    /// No bearer credentials at all (no header, or another scheme such as Basic).
    Missing,
    /// A header that claims to be Bearer but does not follow the b64token syntax, or several
    /// `Authorization` headers.
    Malformed,
    /// A well-formed token; its `Debug` is redacted.
    Token(AccessToken),
}

/// Reads the bearer token from the request headers.
pub fn bearer_token(headers: &HeaderMap) -> Bearer {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Bearer::Missing;
    };
    if values.next().is_some() {
        return Bearer::Malformed;
    }
    // Read as bytes: the checks below admit only ASCII, so the text needs no other pass.
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|b| *b == b' ') {
        Some(space) => bytes.split_at(space),
        None => (bytes, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme, unless the header is not even visible ASCII.
        return match value.to_str() {
            Ok(_) => Bearer::Missing,
            Err(_) => Bearer::Malformed,
        };
    }
    let spaces = rest.iter().take_while(|b| **b == b' ').count();
    let token = rest.get(spaces..).unwrap_or_default();
    match b64token(token) {
        Some(token) => Bearer::Token(AccessToken::new(token)),
        None => Bearer::Malformed,
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 §2.1).
fn b64token(token: &[u8]) -> Option<&str> {
    let padding = token.iter().rev().take_while(|b| **b == b'=').count();
    let body = token.get(..token.len() - padding)?;
    let well_formed = !body.is_empty()
        && body.iter().all(|b| {
            matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        });
    if !well_formed {
        return None;
    }
    std::str::from_utf8(token).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn read(values: &[&str]) -> Bearer {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        bearer_token(&h)
    }

    #[test]
    fn reads_only_well_formed_bearer_headers() {
        assert_eq!(read(&[]), Bearer::Missing);
        assert_eq!(read(&["Basic YTpi"]), Bearer::Missing);
        assert_eq!(
            read(&["Bearer tsa_abc-_.~+/=="]),
            Bearer::Token(AccessToken::new("tsa_abc-_.~+/=="))
        );
        assert_eq!(
            read(&["bearer tsa_x"]),
            Bearer::Token(AccessToken::new("tsa_x"))
        );
        let debug = format!("{:?}", read(&["Bearer tsa_secret-text"]));
        assert!(!debug.contains("secret-text"), "{debug}");
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer ===",
            "Bearer a=b",
            "Bearer \"a\"",
        ] {
            assert_eq!(read(&[bad]), Bearer::Malformed, "{bad}");
        }
        assert_eq!(read(&["Bearer a", "Bearer b"]), Bearer::Malformed);
        assert_eq!(read(&["Bearer\ta"]), Bearer::Missing);
        assert_eq!(read(&["Bearer \ta"]), Bearer::Malformed);
        assert_eq!(
            read(&["BEARER    tsa_x=="]),
            Bearer::Token(AccessToken::new("tsa_x=="))
        );
    }

    #[test]
    fn a_header_that_is_not_visible_ascii_is_malformed() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Basic \xe9t\xe9").unwrap(),
        );
        assert_eq!(bearer_token(&h), Bearer::Malformed);
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer t\xe9").unwrap(),
        );
        assert_eq!(bearer_token(&h), Bearer::Malformed);
    }
}
