//! Which client a request claims to come from, and with which credentials (RFC 6749 §2.3).
//!
//! This only *reads* the claim; checking the secret against the store is the server's job.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::OAuthError;
use crate::form::{FormParams, decode_component};
use crate::secret::Secret;

/// A client's claimed identity and how it was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresentedClient {
    /// `client_secret_basic`: the `Authorization: Basic` header.
    Basic { client_id: String, secret: Secret },
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: Secret },
    /// `none`: a public client naming itself by `client_id` alone.
    Public { client_id: String },
}

impl PresentedClient {
    pub fn client_id(&self) -> &str {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::Public { client_id } => client_id,
        }
    }

    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Self::Basic { secret, .. } | Self::Post { secret, .. } => Some(secret),
            Self::Public { .. } => None,
        }
    }

    pub fn used_basic(&self) -> bool {
        matches!(self, Self::Basic { .. })
    }
}

/// Reads the client's claim from the `Authorization` header (if any) and the form.
///
/// Returns `Ok(None)` when the request names no client at all. A client must use one method
/// only (RFC 6749 §2.3), so a Basic header together with `client_secret` in the body is refused.
pub fn presented_client(
    authorization: Option<&[u8]>,
    form: &FormParams,
) -> Result<Option<PresentedClient>, OAuthError> {
    if let Some(header) = authorization {
        let (client_id, secret) = parse_basic(header)?;
        check_body_beside_basic(&client_id, form)?;
        return Ok(Some(PresentedClient::Basic { client_id, secret }));
    }
    match (form.get("client_id"), form.get("client_secret")) {
        (Some(id), Some(secret)) => Ok(Some(PresentedClient::Post {
            client_id: id.to_owned(),
            secret: Secret::new(secret),
        })),
        (Some(id), None) => Ok(Some(PresentedClient::Public {
            client_id: id.to_owned(),
        })),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret was sent without client_id",
        )),
        (None, None) => Ok(None),
    }
}

/// What the body may say when the client authenticated with Basic as `client_id`: no
/// `client_secret` (one method only), and no other `client_id`.
pub fn check_body_beside_basic(client_id: &str, form: &FormParams) -> Result<(), OAuthError> {
    if form.get("client_secret").is_some() {
        return Err(OAuthError::invalid_request(
            "the client used more than one authentication method",
        ));
    }
    if form.get("client_id").is_some_and(|id| id != client_id) {
        return Err(OAuthError::invalid_request(
            "client_id in the body differs from the authenticated client",
        ));
    }
    Ok(())
}

/// Decodes `Basic base64(urlencode(id) ":" urlencode(secret))`. The form-urlencoding inside
/// the base64 is RFC 6749 §2.3.1's rule, which generic Basic parsers do not apply.
pub fn parse_basic(header: &[u8]) -> Result<(String, Secret), OAuthError> {
    let bad = || OAuthError::invalid_client(true);
    let header = std::str::from_utf8(header).map_err(|_| bad())?;
    let (scheme, encoded) = header.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::InvalidClient {
            description: "unsupported authentication scheme; use Basic".into(),
            basic: true,
        });
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let colon = decoded.iter().position(|b| *b == b':').ok_or_else(bad)?;
    let id = decode_component(decoded.get(..colon).unwrap_or_default()).map_err(|_| bad())?;
    let secret =
        decode_component(decoded.get(colon + 1..).unwrap_or_default()).map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, Secret::new(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    #[test]
    fn basic_credentials_are_form_urldecoded() {
        let (id, secret) = parse_basic(basic("my%20app:s%3Acret+x").as_bytes()).unwrap();
        assert_eq!(id, "my app");
        assert_eq!(secret.expose(), "s:cret x");
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        for h in [
            "Basic !!!".to_string(),
            basic("no-colon"),
            basic(":secret"),
            basic("id:%zz"),
            "Bearer abc".to_string(),
            "Basic".to_string(),
        ] {
            let err = parse_basic(h.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "invalid_client", "{h}");
        }
    }

    #[test]
    fn one_method_only() {
        let form = FormParams::from_pairs([("client_secret", "x")]);
        let err = presented_client(Some(basic("a:b").as_bytes()), &form).unwrap_err();
        assert_eq!(err.code(), "invalid_request");
        let form = FormParams::from_pairs([("client_id", "a"), ("client_secret", "b")]);
        assert!(matches!(
            presented_client(None, &form),
            Ok(Some(PresentedClient::Post { .. }))
        ));
        let form = FormParams::from_pairs([("client_id", "a")]);
        assert!(matches!(
            presented_client(None, &form),
            Ok(Some(PresentedClient::Public { .. }))
        ));
    }
}
