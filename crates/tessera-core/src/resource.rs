//! Resource servers and the audience of a token (RFC 8707, RFC 7662 §4, RFC 9700 §2.3).
//!
//! A resource server is registered under its identifier, an absolute URI, with the scopes it
//! defines and credentials of its own. A token's audience is the set of resources it may be
//! presented to: the ones the client asked for with `resource`, or, when it asked for none,
//! every registered resource that defines one of the granted scopes. Introspection tells a
//! caller about a token only if the caller is in its audience or is the client it was issued
//! to, so a token leaked to one resource server is worthless to every other.

use std::collections::BTreeSet;
use std::fmt;

use crate::client::{Client, TokenEndpointAuthMethod};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::ids::ClientId;
pub use crate::ids::{InvalidResourceUri, ResourceUri};
use crate::random::random_b64;
use crate::scope::Scope;
use crate::secret::Secret;

/// A registered resource server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub uri: ResourceUri,
    pub name: String,
    /// The scopes this resource defines: what tokens for it are about.
    pub scope: Scope,
    /// The confidential client the resource server authenticates as (to introspect).
    pub client_id: ClientId,
    pub created_at: UnixTime,
}

impl Resource {
    /// Whether `client` may ask for tokens for this resource: it may request one of the
    /// scopes the resource defines, or the resource defines none.
    pub fn serves(&self, client: &Client) -> bool {
        self.scope.is_empty() || self.scope.iter().any(|s| client.scope.contains(s))
    }
}

/// A new resource, the client it introspects with, and that client's secret in clear (shown
/// once). The secret's hash is filled in by the caller, as for any client.
#[derive(Debug)]
pub struct RegisteredResource {
    pub resource: Resource,
    pub client: Client,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    Uri(#[from] InvalidResourceUri),
    #[error("invalid scope: {0}")]
    Scope(String),
    #[error("the system has no source of randomness")]
    Random,
}

/// Validates a resource registration and generates its credentials. Its client has no grant
/// and no scope: it can introspect (and nothing else), and only tokens meant for it.
pub fn register_resource(
    uri: &str,
    name: Option<&str>,
    scope: &str,
    now: UnixTime,
) -> Result<RegisteredResource, ResourceError> {
    let uri = ResourceUri::parse(uri)?;
    let scope = Scope::parse(scope.trim()).map_err(|_| ResourceError::Scope(scope.to_owned()))?;
    let name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(uri.as_str())
        .to_owned();
    let client_id = ClientId::new(random_b64::<16>().map_err(|_| ResourceError::Random)?);
    let secret = Secret::generate_client_secret().map_err(|_| ResourceError::Random)?;
    let client = Client {
        id: client_id.clone(),
        name: name.clone(),
        secret_hash: None,
        auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        grant_types: Vec::new(),
        scope: Scope::default(),
        redirect_uris: Vec::new(),
        skip_consent: false,
        created_at: now,
        resource: Some(uri.clone()),
        self_registered: false,
    };
    Ok(RegisteredResource {
        resource: Resource {
            uri,
            name,
            scope,
            client_id,
            created_at: now,
        },
        client,
        secret,
    })
}

/// The resources a token is for. Ordered and without repeats, so it has one stored form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Audience(BTreeSet<ResourceUri>);

impl Audience {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, uri: &ResourceUri) -> bool {
        self.0.contains(uri)
    }

    pub fn is_subset(&self, other: &Audience) -> bool {
        self.0.is_subset(&other.0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ResourceUri> {
        self.0.iter()
    }

    /// The stored form: the identifiers separated by one space (they contain none).
    pub fn stored(s: &str) -> Self {
        Self(s.split_whitespace().map(ResourceUri::stored).collect())
    }
}

impl FromIterator<ResourceUri> for Audience {
    fn from_iter<I: IntoIterator<Item = ResourceUri>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, uri) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(uri.as_str())?;
        }
        Ok(())
    }
}

/// The `resource` parameters of a request (RFC 8707 §2), parsed; none is an empty audience.
pub fn requested_audience<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Audience, OAuthError> {
    values
        .into_iter()
        .map(|v| {
            ResourceUri::parse(v).map_err(|_| {
                OAuthError::InvalidTarget(
                    "resource must be an absolute URI without a fragment".into(),
                )
            })
        })
        .collect()
}

/// The audience of a new grant for `client` with `scope`: the `requested` resources, each
/// registered and one the client may use; or, when none is requested, every registered
/// resource that defines one of the granted scopes.
pub fn grant_audience(
    requested: &Audience,
    registered: &[Resource],
    client: &Client,
    scope: &Scope,
) -> Result<Audience, OAuthError> {
    if requested.is_empty() {
        return Ok(registered
            .iter()
            .filter(|r| r.scope.iter().any(|s| scope.contains(s)))
            .map(|r| r.uri.clone())
            .collect());
    }
    for uri in requested.iter() {
        match registered.iter().find(|r| &r.uri == uri) {
            Some(resource) if resource.serves(client) => {}
            _ => {
                return Err(OAuthError::InvalidTarget(
                    "the resource is unknown or not available to this client".into(),
                ));
            }
        }
    }
    Ok(requested.clone())
}

/// The audience of a token taken from an earlier grant (a code, a refresh token): the
/// `requested` part of it, which may narrow it but never widen it (RFC 8707 §2.2).
pub fn narrowed_audience(requested: &Audience, granted: &Audience) -> Result<Audience, OAuthError> {
    if requested.is_empty() {
        Ok(granted.clone())
    } else if requested.is_subset(granted) {
        Ok(requested.clone())
    } else {
        Err(OAuthError::InvalidTarget(
            "a token may be narrowed to the resources of its grant, never widened".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, register};

    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }

    fn resource(u: &str, scope: &str) -> Resource {
        Resource {
            uri: uri(u),
            name: u.into(),
            scope: Scope::parse(scope).unwrap(),
            client_id: "rs".into(),
            created_at: UnixTime::from_secs(0),
        }
    }

    fn client(scope: &str) -> Client {
        register(
            &ClientRegistration {
                name: "c".into(),
                scope: scope.into(),
                ..Default::default()
            },
            UnixTime::from_secs(0),
        )
        .unwrap()
        .client
    }

    #[test]
    fn identifiers_are_absolute_without_fragment_and_normalised() {
        assert_eq!(
            uri("HTTPS://API.Example:443").as_str(),
            "https://api.example/"
        );
        assert_eq!(
            uri("http://127.0.0.1:5001").as_str(),
            "http://127.0.0.1:5001/"
        );
        assert_eq!(
            uri("https://a.example/mcp").as_str(),
            "https://a.example/mcp"
        );
        assert_eq!(uri("urn:example:api").as_str(), "urn:example:api");
        for bad in [
            "",
            "/relative",
            "api",
            "https://a.example/#frag",
            "https://a.example/ x",
            "http://",
            "mailto:x@example.com",
        ] {
            assert!(ResourceUri::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceUri::parse(&format!("https://a.example/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn the_audience_is_what_was_asked_or_what_the_scope_reaches() {
        let registered = [
            resource("https://a.example", "api"),
            resource("https://b.example", "admin"),
            resource("https://c.example", ""),
        ];
        let api_client = client("api read");
        let api = Scope::parse("api").unwrap();
        let derived = grant_audience(&Audience::default(), &registered, &api_client, &api).unwrap();
        assert_eq!(derived.to_string(), "https://a.example/");

        let asked: Audience = [uri("https://a.example"), uri("https://c.example")]
            .into_iter()
            .collect();
        let audience = grant_audience(&asked, &registered, &api_client, &api).unwrap();
        assert_eq!(audience, asked);

        for refused in ["https://b.example", "https://unknown.example"] {
            let asked: Audience = [uri(refused)].into_iter().collect();
            let err = grant_audience(&asked, &registered, &api_client, &api).unwrap_err();
            assert_eq!(err.code(), "invalid_target");
        }
    }

    #[test]
    fn a_later_token_narrows_and_never_widens() {
        let both: Audience = [uri("https://a.example"), uri("https://b.example")]
            .into_iter()
            .collect();
        let a: Audience = [uri("https://a.example")].into_iter().collect();
        assert_eq!(
            narrowed_audience(&Audience::default(), &both).unwrap(),
            both
        );
        assert_eq!(narrowed_audience(&a, &both).unwrap(), a);
        assert_eq!(
            narrowed_audience(&both, &a).unwrap_err().code(),
            "invalid_target"
        );
        assert_eq!(Audience::stored(&both.to_string()), both);
    }

    #[test]
    fn malformed_resource_parameters_are_invalid_target() {
        let err = requested_audience(["https://a.example#x"]).unwrap_err();
        assert_eq!(err.code(), "invalid_target");
        assert_eq!(
            requested_audience(["https://a.example", "https://A.example:443/"])
                .unwrap()
                .iter()
                .count(),
            1
        );
    }
}
