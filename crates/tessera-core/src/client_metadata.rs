//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a client
//! whose `client_id` is an https URL, naming the JSON document that describes it.
//!
//! The key design decision: a document is read under the rules of self-registration
//! ([`crate::registration`]: no `http` redirect URI off loopback, never `skip_consent`, a
//! scope within what the registered resource servers define) plus the draft's own: the
//! document names itself (its `client_id` is the URL it was fetched from, compared as
//! strings), it describes a public client of the code flow (no secret can be shared with
//! someone who never registered), and nobody vouches for it, so the client is marked
//! [`Client::self_registered`]: people see it as unverified and are always asked. Fetching the
//! document is I/O and lives elsewhere; here are only the rules for the URL and the bytes.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::client::{Client, GrantType, TokenEndpointAuthMethod, register};
use crate::clock::UnixTime;
use crate::ids::ClientId;
use crate::registration::{ClientMetadata, checked, client_name, refusal};
use crate::scope::Scope;

/// The largest document read, in bytes (the MCP authorization spec's 5 KB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// The longest `client_id` URL, in characters.
pub const MAX_URL_CHARS: usize = 2000;

/// Whether `client_id` is a URL, and so names a metadata document rather than a client
/// registered here: the ids Tessera issues are base64url, which never has a `:`.
pub fn names_document(client_id: &str) -> bool {
    let scheme = |s: &str| {
        client_id
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    };
    scheme("https://") || scheme("http://")
}

/// A `client_id` that may name a metadata document (draft §3): https, a host, a path other
/// than `/`, no user-info, no fragment, and already in the normal form of RFC 3986 §6.2.2
/// (lower-case scheme and host, no default port, no `.` or `..` segments), so the string
/// compared with the document's `client_id` is the one the document is fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdUrl(url::Url);

impl ClientIdUrl {
    pub fn parse(s: &str) -> Result<Self, DocumentError> {
        let bad = |why: &'static str| Err(DocumentError::ClientIdUrl(why));
        if s.chars().count() > MAX_URL_CHARS {
            return bad("is longer than 2000 characters");
        }
        let Ok(url) = url::Url::parse(s) else {
            return bad("is not a URL");
        };
        if url.scheme() != "https" {
            return bad("must be an https URL");
        }
        if url.host_str().is_none_or(str::is_empty) {
            return bad("must name a host");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return bad("must not contain a user name or password");
        }
        if url.fragment().is_some() {
            return bad("must not contain a fragment");
        }
        if url.path() == "/" {
            return bad("must have a path");
        }
        if url.as_str() != s {
            return bad(
                "must be in normal form (lower-case scheme and host, no default port, no `.` \
                 or `..` path segments)",
            );
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL, for the fetch.
    pub fn url(&self) -> &url::Url {
        &self.0
    }

    /// The host, as shown beside the client's claimed name.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

impl std::fmt::Display for ClientIdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a `client_id` URL or its document is refused; the text is shown to the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the client_id URL {0}")]
    ClientIdUrl(&'static str),
    #[error("the client metadata document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    #[error("the client metadata document is not a JSON object of client metadata")]
    NotJson,
    #[error("the client metadata document's client_id is not the URL it was fetched from")]
    ClientIdMismatch,
    #[error(
        "the client metadata document has a client_secret: a client described by a document \
         has no secret"
    )]
    Secret,
    #[error(
        "the client metadata document asks for token_endpoint_auth_method `{0}`; only `none` \
         is supported for such clients"
    )]
    AuthMethod(String),
    #[error("the client metadata document must include the authorization_code grant")]
    NoCodeGrant,
    #[error("the client metadata document is refused: {0}")]
    Metadata(String),
}

/// The members of a document Tessera reads; others are ignored (RFC 7591 §2).
#[derive(Debug, Deserialize)]
struct Document {
    client_id: Option<String>,
    client_secret: Option<IgnoredAny>,
    client_secret_expires_at: Option<IgnoredAny>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
    client_name: Option<String>,
    scope: Option<String>,
}

/// The client that `document`, fetched from `url`, describes; `offered` is every scope a
/// client may ask for here (as for self-registration), `now` its creation time if new.
///
/// Its name is the `client_name` it claims followed by the URL's host in parentheses (the
/// host is the one thing about it that is proven), or the URL itself.
pub fn client_from_document(
    url: &ClientIdUrl,
    document: &[u8],
    offered: &Scope,
    now: UnixTime,
) -> Result<Client, DocumentError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge);
    }
    let document: Document =
        serde_json::from_slice(document).map_err(|_| DocumentError::NotJson)?;
    if document.client_id.as_deref() != Some(url.as_str()) {
        return Err(DocumentError::ClientIdMismatch);
    }
    if document.client_secret.is_some() || document.client_secret_expires_at.is_some() {
        return Err(DocumentError::Secret);
    }
    // Absent, RFC 7591 would mean client_secret_basic, which a document cannot use; the
    // draft's documents describe public clients, so absent is read as `none`.
    match document.token_endpoint_auth_method.as_deref() {
        None | Some("none") => {}
        Some(other) => {
            return Err(DocumentError::AuthMethod(other.chars().take(100).collect()));
        }
    }
    if let Some(grants) = &document.grant_types
        && !grants
            .iter()
            .any(|g| g == GrantType::AuthorizationCode.as_str())
    {
        return Err(DocumentError::NoCodeGrant);
    }
    let metadata = ClientMetadata {
        redirect_uris: document.redirect_uris,
        token_endpoint_auth_method: Some(TokenEndpointAuthMethod::None.as_str().to_owned()),
        grant_types: document.grant_types,
        response_types: document.response_types,
        client_name: document.client_name,
        scope: document.scope,
        client_id: None,
        client_secret: None,
        post_logout_redirect_uris: None,
        id_token_signed_response_alg: None,
    };
    let invalid = |e: crate::OAuthError| DocumentError::Metadata(e.description().to_owned());
    let (registration, _) = checked(&metadata, offered).map_err(invalid)?;
    let mut client = register(&registration, now)
        .map_err(|e| invalid(refusal(e)))?
        .client;
    client.id = ClientId::new(url.as_str());
    client.auth_method = TokenEndpointAuthMethod::None;
    client.secret_hash = None;
    client.skip_consent = false;
    client.self_registered = true;
    client.name = match client_name(&metadata) {
        Some(name) => format!("{name} ({})", url.host()),
        None => url.as_str().to_owned(),
    };
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://app.example/oauth/client.json";

    /// Reads `document` as fetched from [`URL`], offering the scopes `mcp` and `read`: the
    /// client, or the error's text.
    fn check(document: &str) -> Result<Client, String> {
        let url = ClientIdUrl::parse(URL).unwrap();
        let offered = Scope::parse("mcp read").unwrap();
        client_from_document(&url, document.as_bytes(), &offered, UnixTime::from_secs(7))
            .map_err(|e| e.to_string())
    }

    fn refused(document: &str, containing: &str) {
        let error = check(document).expect_err(document);
        assert!(error.contains(containing), "{error:?} for {document}");
    }

    #[test]
    fn a_document_makes_a_public_unverified_client_of_the_code_flow() {
        let client = check(&format!(
            r#"{{"client_id":"{URL}","client_name":"Claude","redirect_uris":["http://127.0.0.1:9/callback"],
               "grant_types":["authorization_code","refresh_token"],"token_endpoint_auth_method":"none",
               "logo_uri":"https://app.example/logo.png"}}"#
        ))
        .unwrap();
        assert_eq!(client.id, URL);
        assert_eq!(client.name, "Claude (app.example)");
        assert!(client.is_public());
        assert_eq!(client.auth_method, TokenEndpointAuthMethod::None);
        assert!(client.self_registered && !client.skip_consent);
        assert_eq!(
            client.grant_types,
            [GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(client.scope.to_string(), "mcp read", "the offered scope");
        assert!(
            client
                .registered_redirect_uri("http://127.0.0.1:9/callback")
                .is_some()
        );
        assert_eq!(client.created_at, UnixTime::from_secs(7));

        // The least a document can say: its id and a redirect URI; absent auth method is none.
        let least = check(&format!(
            r#"{{"client_id":"{URL}","redirect_uris":["https://app.example/cb"],"scope":"read"}}"#
        ))
        .unwrap();
        assert_eq!(least.name, URL);
        assert_eq!(least.grant_types, [GrantType::AuthorizationCode]);
        assert_eq!(least.scope.to_string(), "read");
    }

    #[test]
    fn documents_that_break_the_rules_are_refused() {
        let cb = r#""redirect_uris":["https://app.example/cb"]"#;
        refused(
            &format!(r#"{{"client_id":"https://other.example/client.json",{cb}}}"#),
            "not the URL",
        );
        refused(&format!(r#"{{{cb}}}"#), "not the URL");
        refused(
            &format!(r#"{{"client_id":"{URL}/",{cb}}}"#),
            "not the URL", // Compared as strings: no normalisation.
        );
        refused(
            &format!(r#"{{"client_id":"{URL}",{cb},"client_secret":"s"}}"#),
            "client_secret",
        );
        refused(
            &format!(r#"{{"client_id":"{URL}",{cb},"client_secret_expires_at":0}}"#),
            "client_secret",
        );
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            refused(
                &format!(r#"{{"client_id":"{URL}",{cb},"token_endpoint_auth_method":"{method}"}}"#),
                method,
            );
        }
        refused(&format!(r#"{{"client_id":"{URL}"}}"#), "redirect URI");
        refused(
            &format!(r#"{{"client_id":"{URL}","redirect_uris":["http://app.example/cb"]}}"#),
            "may not be registered",
        );
        refused(
            &format!(r#"{{"client_id":"{URL}",{cb},"grant_types":["client_credentials"]}}"#),
            "authorization_code",
        );
        refused(
            &format!(
                r#"{{"client_id":"{URL}",{cb},"grant_types":["authorization_code","client_credentials"]}}"#
            ),
            "client_credentials",
        );
        refused(
            &format!(r#"{{"client_id":"{URL}",{cb},"scope":"admin"}}"#),
            "not offered",
        );
        refused(&format!(r#"["{URL}"]"#), "not a JSON object");
        refused("", "not a JSON object");
        refused(
            &format!(r#"{{"client_id":"{URL}","redirect_uris":"https://app.example/cb"}}"#),
            "not a JSON object",
        );
        let padded = format!(
            r#"{{"client_id":"{URL}",{cb},"padding":"{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        );
        refused(&padded, "larger than 5120 bytes");
    }

    #[test]
    fn only_https_urls_with_a_path_in_normal_form_name_documents() {
        for ok in [
            URL,
            "https://app.example:8443/c",
            "https://127.0.0.1:4000/client.json",
            "https://app.example/c?v=1",
        ] {
            assert!(names_document(ok));
            assert!(ClientIdUrl::parse(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("http://app.example/client.json", "https"),
            ("https://app.example", "path"),
            ("https://app.example/", "path"),
            ("https://user:pw@app.example/c", "user name"),
            ("https://app.example/c#x", "fragment"),
            ("https://app.example/a/../c", "normal form"),
            ("https://app.example/./c", "normal form"),
            ("https://APP.example/c", "normal form"),
            ("https://app.example:443/c", "normal form"),
            ("https:///c", "path"), // Read as the host `c`.
            ("https://app.example/ c", "normal form"),
        ] {
            let error = ClientIdUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert!(names_document("HTTPS://app.example/c"));
        assert!(!names_document("b7Hq2-x_client"));
        assert!(!names_document("urn:client"));
        let long = format!("https://app.example/{}", "a".repeat(MAX_URL_CHARS));
        assert!(ClientIdUrl::parse(&long).is_err());
    }
}
