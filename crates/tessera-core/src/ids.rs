//! Identifiers: who a client, a person, a grant or a resource server is. Not secrets (RFC 6749 §2.2 says a
//! client id is public), but distinct types, so one cannot be passed where another belongs.

use std::fmt;
use std::ops::Deref;

macro_rules! identifier {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    )*};
}

identifier! {
    /// A registered client's `client_id`.
    ClientId;
    /// A person's stable id: the `sub` of every token issued for them.
    UserId;
    /// The grant every token descended from one authorization shares; revoking a refresh
    /// token or detecting a replay revokes the whole family.
    FamilyId;
}

/// Longest resource identifier accepted; longer ones are not URIs anyone registers.
const MAX_URI_LENGTH: usize = 2048;

/// A resource identifier (RFC 8707 §2): an absolute URI without a fragment, kept in the
/// normal form of RFC 3986 §6.2.2 and §6.2.3 (lower-case scheme and host, no default port,
/// `/` for an empty http path), so `https://API.example` and `https://api.example:443/`
/// name one resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ResourceUri(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a resource identifier must be an absolute URI without a fragment")]
pub struct InvalidResourceUri;

impl ResourceUri {
    pub fn parse(s: &str) -> Result<Self, InvalidResourceUri> {
        if s.len() > MAX_URI_LENGTH || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidResourceUri);
        }
        let url = url::Url::parse(s).map_err(|_| InvalidResourceUri)?;
        if url.fragment().is_some() || url.cannot_be_a_base() && url.scheme() != "urn" {
            return Err(InvalidResourceUri);
        }
        if matches!(url.scheme(), "http" | "https") && !url.has_host() {
            return Err(InvalidResourceUri);
        }
        Ok(Self(url.to_string()))
    }

    /// An identifier read back from the store, where only parsed ones are written.
    pub fn stored(s: &str) -> Self {
        Self(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
