//! What a validated token grants, and what a route requires.

use std::fmt;

use serde::Serialize;
use tessera_core::clock::UnixTime;
use tessera_core::scope::Scope;

/// An active token's meaning, as the authorization server described it. Handlers receive
/// this through the [`crate::Token`] extractor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// The resource owner (`sub`); for a client's own token, the client.
    pub subject: Option<String>,
    pub username: Option<String>,
    pub client_id: Option<String>,
    #[serde(serialize_with = "scope_string")]
    pub scope: Scope,
    pub expires_at: Option<UnixTime>,
    pub issued_at: Option<UnixTime>,
    /// The resources the token is for (`aud`, RFC 8707), as the authorization server wrote
    /// them; a guard bound to a resource canonicalises them before comparing.
    pub audience: Vec<String>,
}

fn scope_string<S: serde::Serializer>(scope: &Scope, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&scope.to_string())
}

/// The scopes a route needs: all of them, or any one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRequirement {
    All(Vec<String>),
    Any(Vec<String>),
}

impl ScopeRequirement {
    pub fn is_met_by(&self, granted: &Scope) -> bool {
        match self {
            Self::All(needed) => needed.iter().all(|s| granted.contains(s)),
            Self::Any(options) => options.iter().any(|s| granted.contains(s)),
        }
    }
}

impl fmt::Display for ScopeRequirement {
    /// The value of the `scope` attribute of an `insufficient_scope` challenge.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Self::All(list) | Self::Any(list)) = self;
        f.write_str(&list.join(" "))
    }
}
