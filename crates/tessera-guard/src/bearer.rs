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
    let Ok(value) = value.to_str() else {
        return Bearer::Malformed;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Bearer::Missing;
    }
    let token = rest.trim_start_matches(' ');
    if is_b64token(token) {
        Bearer::Token(AccessToken::new(token))
    } else {
        Bearer::Malformed
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 §2.1).
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
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
    }
}
