//! The authorization endpoint's request (RFC 6749 §4.1.1, RFC 7636, RFC 9700).
//!
//! The order of checks is the security property: nothing is ever sent to a redirect URI until
//! both the client and that exact URI are known good (RFC 6749 §4.1.2.1). Until then errors
//! are [`AuthorizeError::Show`]n to the user; after, they go back to the client as
//! [`AuthorizeError::Redirect`], with `state`.

use url::form_urlencoded;

use crate::client::{Client, GrantType, RedirectUri};
use crate::error::OAuthError;
use crate::form::{self, FormError, FormParams};
use crate::oidc::{OidcParams, Prompt, parse_max_age};
use crate::pkce::CodeChallenge;
use crate::resource::{Audience, requested_audience};
use crate::scope::Scope;

/// Why an authorization request failed, and so where the error goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI is unknown or unproven: show a page, never redirect.
    Show(String),
    /// Send `error` (and `state`) back to the client's registered redirect URI.
    Redirect {
        redirect_uri: RedirectUri,
        error: OAuthError,
        state: Option<String>,
    },
}

/// A validated authorization request, ready for login and consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: RedirectUri,
    /// Whether `redirect_uri` was in the request; if so, the token request must repeat it.
    pub redirect_uri_given: bool,
    pub scope: Scope,
    pub state: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    /// The `resource` parameters (RFC 8707), parsed; whether they are registered and open to
    /// the client is decided against the registry when the code is issued.
    pub resources: Audience,
    /// `prompt`, `max_age` and `nonce` (OIDC Core §3.1.2.1); the nonce goes into the code.
    pub oidc: OidcParams,
}

/// A request whose parameters decode and that names exactly one client; the client itself
/// still has to be looked up.
#[derive(Debug)]
pub struct UnverifiedRequest {
    pub client_id: String,
    redirect_uri: Option<String>,
    state: Option<String>,
    params: Result<FormParams, FormError>,
}

/// Whether confidential clients must use PKCE too (public clients always must).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkcePolicy {
    pub require_for_confidential: bool,
}

impl Default for PkcePolicy {
    fn default() -> Self {
        Self {
            require_for_confidential: true,
        }
    }
}

/// Only one value of `name`, or an error if it is repeated.
fn single<'a>(pairs: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ()> {
    let mut values = pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first.filter(|v| !v.is_empty())),
    }
}

impl UnverifiedRequest {
    /// Reads the query string (or POSTed form) of an authorization request.
    pub fn parse(input: &[u8]) -> Result<Self, AuthorizeError> {
        let pairs = form::pairs(input)
            .map_err(|e| AuthorizeError::Show(format!("The request is malformed: {e}.")))?;
        let client_id = single(&pairs, "client_id")
            .map_err(|()| AuthorizeError::Show("client_id is repeated.".into()))?
            .ok_or_else(|| AuthorizeError::Show("The request has no client_id.".into()))?
            .to_owned();
        let redirect_uri = single(&pairs, "redirect_uri")
            .map_err(|()| AuthorizeError::Show("redirect_uri is repeated.".into()))?
            .map(str::to_owned);
        // A repeated state cannot be echoed faithfully, so none is echoed.
        let state = single(&pairs, "state").ok().flatten().map(str::to_owned);
        Ok(Self {
            client_id,
            redirect_uri,
            state,
            params: FormParams::from_decoded(pairs),
        })
    }

    /// Validates the request against the registered client.
    pub fn validate(
        self,
        client: &Client,
        pkce: PkcePolicy,
    ) -> Result<AuthorizationRequest, AuthorizeError> {
        let redirect_uri = match &self.redirect_uri {
            Some(given) => client
                .registered_redirect_uri(given)
                .cloned()
                .ok_or_else(|| {
                    AuthorizeError::Show(
                        "The redirect_uri is not registered for this client.".into(),
                    )
                })?,
            None => match client.redirect_uris.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(AuthorizeError::Show(
                        "The request has no redirect_uri and the client has several.".into(),
                    ));
                }
            },
        };
        let state = self.state;
        let fail = |error: OAuthError| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.clone(),
            error,
            state: state.clone(),
        };
        let params = self
            .params
            .map_err(|e| fail(OAuthError::invalid_request(e.to_string())))?;
        match params.get("response_type") {
            Some("code") => {}
            None => return Err(fail(OAuthError::invalid_request("missing response_type"))),
            Some(_) => {
                return Err(fail(OAuthError::UnsupportedResponseType(
                    "only response_type=code is supported".into(),
                )));
            }
        }
        if !client.allows_grant(GrantType::AuthorizationCode) {
            return Err(fail(OAuthError::UnauthorizedClient(
                "this client may not use the authorization code flow".into(),
            )));
        }
        let scope = match params.get("scope") {
            None => client.scope.clone(),
            Some(s) => {
                let s = Scope::parse(s)
                    .map_err(|_| fail(OAuthError::InvalidScope("malformed scope".into())))?;
                if !s.is_subset(&client.scope) {
                    return Err(fail(OAuthError::InvalidScope(
                        "the requested scope exceeds what this client may request".into(),
                    )));
                }
                s
            }
        };
        let resources = requested_audience(params.get_all("resource")).map_err(fail)?;
        let method = params.get("code_challenge_method");
        let code_challenge = match params.get("code_challenge") {
            Some(c) => Some(CodeChallenge::parse(c, method).map_err(fail)?),
            None if method.is_some() => {
                return Err(fail(OAuthError::invalid_request(
                    "code_challenge_method without code_challenge",
                )));
            }
            None if client.is_public() || pkce.require_for_confidential => {
                return Err(fail(OAuthError::invalid_request(
                    "PKCE is required: send code_challenge with code_challenge_method=S256",
                )));
            }
            None => None,
        };
        let oidc = OidcParams {
            prompt: Prompt::parse(params.get("prompt")).map_err(fail)?,
            max_age: parse_max_age(params.get("max_age")).map_err(fail)?,
            nonce: params.get("nonce").map(str::to_owned),
        };
        if oidc.nonce.as_ref().is_some_and(|n| n.len() > 512) {
            return Err(fail(OAuthError::invalid_request("the nonce is too long")));
        }
        Ok(AuthorizationRequest {
            client_id: client.id.to_string(),
            redirect_uri,
            redirect_uri_given: self.redirect_uri.is_some(),
            scope,
            state,
            code_challenge,
            resources,
            oidc,
        })
    }
}

/// The registered redirect URI with `params` appended to its query, the URI itself untouched
/// (no re-serialisation that could normalise it).
pub fn redirect_with(redirect_uri: &RedirectUri, params: &[(&str, &str)]) -> String {
    let base = redirect_uri.as_str();
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{}", query.finish())
}

/// The error redirect of RFC 6749 §4.1.2.1, with the issuer (RFC 9207).
pub fn error_redirect(
    redirect_uri: &RedirectUri,
    error: &OAuthError,
    state: Option<&str>,
    issuer: &str,
) -> String {
    let mut params = vec![
        ("error", error.code()),
        ("error_description", error.description()),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    redirect_with(redirect_uri, &params)
}

/// Whether the user must be asked: not for a first-party client, nor when every requested
/// scope was approved for this client before.
pub fn needs_consent(
    client: &Client,
    requested: &Scope,
    previously_granted: Option<&Scope>,
) -> bool {
    // A self-registered client is nobody's first party, whatever its record says.
    let first_party = client.skip_consent && !client.self_registered;
    !first_party && !previously_granted.is_some_and(|g| requested.is_subset(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ClientRegistration, register};

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn client(public: bool, uris: &[&str]) -> Client {
        register(
            &ClientRegistration {
                name: "web".into(),
                public,
                redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
                scope: "api restricted".into(),
                ..Default::default()
            },
            crate::clock::UnixTime::from_secs(0),
        )
        .unwrap()
        .client
    }

    fn run(c: &Client, query: &str) -> Result<AuthorizationRequest, AuthorizeError> {
        UnverifiedRequest::parse(query.as_bytes())?.validate(c, PkcePolicy::default())
    }

    fn redirect_code(r: Result<AuthorizationRequest, AuthorizeError>) -> &'static str {
        match r {
            Err(AuthorizeError::Redirect { error, .. }) => error.code(),
            other => panic!("expected a redirect error, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request() {
        let c = client(true, &["https://app.example/cb"]);
        let q = format!(
            "response_type=code&client_id={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&scope=api&state=xyz&code_challenge={CHALLENGE}&code_challenge_method=S256",
            c.id
        );
        let r = run(&c, &q).unwrap();
        assert_eq!(r.scope.to_string(), "api");
        assert_eq!(r.state.as_deref(), Some("xyz"));
        assert!(r.redirect_uri_given);
    }

    #[test]
    fn never_redirects_to_an_unproven_uri() {
        let c = client(
            false,
            &["https://app.example/cb", "https://app.example/other"],
        );
        for uri in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://app.example:8443/cb",
            "https://app.example/cb.evil",
            "https://app.example/cb/../x",
            "https://user@app.example/cb",
            "HTTPS://app.example/cb",
        ] {
            let q = format!(
                "response_type=code&client_id={}&redirect_uri={}",
                c.id,
                form_urlencoded::byte_serialize(uri.as_bytes()).collect::<String>()
            );
            assert!(matches!(run(&c, &q), Err(AuthorizeError::Show(_))), "{uri}");
        }
        // Omitted with two registered: no way to know where to send anything.
        let q = format!("response_type=code&client_id={}", c.id);
        assert!(matches!(run(&c, &q), Err(AuthorizeError::Show(_))));
        assert!(matches!(
            UnverifiedRequest::parse(b"response_type=code"),
            Err(AuthorizeError::Show(_))
        ));
        assert!(matches!(
            UnverifiedRequest::parse(b"client_id=a&client_id=b"),
            Err(AuthorizeError::Show(_))
        ));
    }

    #[test]
    fn errors_after_the_uri_is_proven_are_redirected() {
        let c = client(true, &["https://app.example/cb"]);
        let id = &c.id;
        let pkce = format!("code_challenge={CHALLENGE}&code_challenge_method=S256");
        let cases = [
            (format!("client_id={id}&{pkce}"), "invalid_request"),
            (
                format!("response_type=token&client_id={id}&{pkce}"),
                "unsupported_response_type",
            ),
            (
                format!("response_type=code&client_id={id}&scope=admin&{pkce}"),
                "invalid_scope",
            ),
            (
                format!("response_type=code&client_id={id}"),
                "invalid_request",
            ),
            (
                format!(
                    "response_type=code&client_id={id}&code_challenge={CHALLENGE}&code_challenge_method=plain"
                ),
                "invalid_request",
            ),
            (
                format!("response_type=code&client_id={id}&code_challenge={CHALLENGE}"),
                "invalid_request",
            ),
            (
                format!("response_type=code&response_type=code&client_id={id}&{pkce}"),
                "invalid_request",
            ),
        ];
        for (q, want) in cases {
            assert_eq!(redirect_code(run(&c, &q)), want, "{q}");
        }
    }

    #[test]
    fn redirects_keep_the_registered_uri_verbatim() {
        let uri = RedirectUri::parse("https://app.example/cb?tenant=a").unwrap();
        assert_eq!(
            redirect_with(&uri, &[("code", "x y"), ("state", "a&b")]),
            "https://app.example/cb?tenant=a&code=x+y&state=a%26b"
        );
        let err = OAuthError::AccessDenied("the user denied access".into());
        assert_eq!(
            error_redirect(&uri, &err, Some("s"), "https://as"),
            "https://app.example/cb?tenant=a&error=access_denied&error_description=the+user+denied+access&state=s&iss=https%3A%2F%2Fas"
        );
    }

    #[test]
    fn consent_is_remembered_per_scope() {
        let mut c = client(false, &["https://app.example/cb"]);
        let api = Scope::parse("api").unwrap();
        let both = Scope::parse("api restricted").unwrap();
        assert!(needs_consent(&c, &api, None));
        assert!(!needs_consent(&c, &api, Some(&both)));
        assert!(needs_consent(&c, &both, Some(&api)));
        c.skip_consent = true;
        assert!(!needs_consent(&c, &both, None));
    }
}
