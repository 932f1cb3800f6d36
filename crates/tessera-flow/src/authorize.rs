//! The authorization endpoint (RFC 6749 §4.1.1): validate, sign in, ask consent, issue a code.
//!
//! Every step re-validates the whole request, so the consent form's hidden fields are worth
//! no more than a new authorization request. Nothing goes to a redirect URI before the
//! client and that exact URI are known good (`tessera_core::authorize`).

use std::sync::Arc;

use tessera_core::OAuthError;
use tessera_core::audit::{Actor, AuditEvent, AuditKind};
use tessera_core::authorize::{
    AuthorizationRequest, AuthorizeError, UnverifiedRequest, error_redirect, needs_consent,
    redirect_with,
};
use tessera_core::client::Client;
use tessera_core::clock::UnixTime;
use tessera_core::grant::{AuthorizationCodeRecord, CODE_LIFETIME};
use tessera_core::oidc::{OPENID, sign_in_needed};
use tessera_core::resource::Audience;
use tessera_core::token::{RawToken, SessionId, TokenKind, new_family_id};
use tessera_core::user::User;
use tessera_store::Store;

use crate::Flows;
use crate::audit;
use crate::client_metadata::ClientLookup;
use crate::error::FlowError;

/// Where an authorization request goes next.
#[derive(Debug)]
pub enum AuthorizeStep {
    /// Nothing may be sent to the client: tell the person why.
    Refused {
        title: &'static str,
        message: String,
    },
    /// Send the browser to this URI of the client: a code, or an error for it.
    Redirect(String),
    /// Sign the person in first, then come back to `return_to` (a local path).
    SignIn {
        client: Arc<Client>,
        request: AuthorizationRequest,
        return_to: String,
    },
    /// Ask the signed-in person to approve the request.
    Consent {
        client: Arc<Client>,
        request: AuthorizationRequest,
        user: User,
    },
}

/// The person's answer on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// A request validated against its client, or the step that ends it here.
pub type Validated = Result<(Arc<Client>, AuthorizationRequest), AuthorizeStep>;

impl Flows {
    /// An authorization request (`raw` is its query string or form body): a code at once if
    /// the person is signed in and consent is not needed, else the page to show.
    pub async fn authorize(
        &self,
        raw: &[u8],
        session: Option<&SessionId>,
    ) -> Result<AuthorizeStep, FlowError> {
        let (client, request) = match self.validate(raw).await? {
            Ok(valid) => valid,
            Err(step) => return Ok(step),
        };
        let now = self.now();
        let signed_in = self.signed_in(session, &request).await?;
        let fresh = signed_in
            .as_ref()
            .is_some_and(|(_, at)| !sign_in_needed(&request.oidc, *at, now));
        let Some((user, auth_time)) = signed_in.filter(|_| fresh) else {
            if request.oidc.prompt.none {
                let error = OAuthError::LoginRequired("the user is not signed in".into());
                return Ok(self.redirect_error(&request, &error));
            }
            let return_to = if request.oidc.prompt.login || request.oidc.max_age.is_some() {
                // After this sign-in the request is satisfied: resuming it with
                // `prompt=login` or `max_age` again would ask once more, forever.
                let mut resumed = request.clone();
                resumed.oidc.prompt.login = false;
                resumed.oidc.max_age = None;
                format!("/authorize?{}", resume_query(&client, &resumed))
            } else {
                format!("/authorize?{}", String::from_utf8_lossy(raw))
            };
            return Ok(AuthorizeStep::SignIn {
                client,
                request,
                return_to,
            });
        };
        let granted = self.store.get_consent(&user.id, &client.id).await?;
        if request.oidc.prompt.consent || needs_consent(&client, &request.scope, granted.as_ref()) {
            if request.oidc.prompt.none {
                let error = OAuthError::ConsentRequired("the user has not consented".into());
                return Ok(self.redirect_error(&request, &error));
            }
            return Ok(AuthorizeStep::Consent {
                client,
                request,
                user,
            });
        }
        let code_redirect = self
            .issue_code(&client, &request, &user, auth_time, now)
            .await?;
        Ok(AuthorizeStep::Redirect(code_redirect))
    }

    /// The signed-in person and, for an OpenID Connect request or one with `max_age`, when
    /// they signed in (`None` otherwise: only ID tokens carry it, so others skip the read).
    async fn signed_in(
        &self,
        session: Option<&SessionId>,
        request: &AuthorizationRequest,
    ) -> Result<Option<(User, Option<UnixTime>)>, FlowError> {
        let Some(user) = self.session_user(session).await? else {
            return Ok(None);
        };
        let wanted = request.scope.contains(OPENID) || request.oidc.max_age.is_some();
        let (Some(session), true) = (session, wanted) else {
            return Ok(Some((user, None)));
        };
        let at = self
            .store
            .session_signed_in_at(&session.key(), self.now())
            .await?;
        Ok(at.map(|at| (user, Some(at))))
    }

    fn redirect_error(&self, request: &AuthorizationRequest, error: &OAuthError) -> AuthorizeStep {
        AuthorizeStep::Redirect(error_redirect(
            &request.redirect_uri,
            error,
            request.state.as_deref(),
            self.issuer(),
        ))
    }

    /// The consent form's answer to the request it carries.
    pub async fn decide(
        &self,
        raw: &[u8],
        session: Option<&SessionId>,
        decision: &str,
    ) -> Result<AuthorizeStep, FlowError> {
        let (client, request) = match self.validate(raw).await? {
            Ok(valid) => valid,
            Err(step) => return Ok(step),
        };
        let Some((user, auth_time)) = self.signed_in(session, &request).await? else {
            let return_to = format!("/authorize?{}", resume_query(&client, &request));
            return Ok(AuthorizeStep::SignIn {
                client,
                request,
                return_to,
            });
        };
        let now = self.now();
        match Decision::parse(decision) {
            Some(Decision::Approve) => {
                approve(&*self.store, &client, &request, &user, now).await?;
                let code_redirect = self
                    .issue_code(&client, &request, &user, auth_time, now)
                    .await?;
                Ok(AuthorizeStep::Redirect(code_redirect))
            }
            Some(Decision::Deny) => {
                tracing::info!(event = "consent_denied", user = %user.username.as_str(), client_id = %client.id);
                let error = OAuthError::AccessDenied("the user denied the request".into());
                Ok(AuthorizeStep::Redirect(error_redirect(
                    &request.redirect_uri,
                    &error,
                    request.state.as_deref(),
                    self.issuer(),
                )))
            }
            None => Ok(AuthorizeStep::Refused {
                title: "Invalid request",
                message: "The form's decision must be approve or deny.".into(),
            }),
        }
    }

    /// Validates `raw` against its client: the request, or the step that ends it (an error
    /// page, or an error sent to the proven redirect URI).
    pub async fn validate(&self, raw: &[u8]) -> Result<Validated, FlowError> {
        let unverified = match UnverifiedRequest::parse(raw) {
            Ok(u) => u,
            Err(e) => return Ok(Err(self.refusal(e))),
        };
        let client = match self.authorizing_client(&unverified.client_id).await? {
            ClientLookup::Found(client) => client,
            ClientLookup::Unknown => {
                return Ok(Err(AuthorizeStep::Refused {
                    title: "Unknown application",
                    message:
                        "The application that sent you here is not registered with this server."
                            .into(),
                }));
            }
            ClientLookup::Refused(message) => {
                return Ok(Err(AuthorizeStep::Refused {
                    title: "Application refused",
                    message,
                }));
            }
        };
        let request = match unverified.validate(&client, self.settings.pkce) {
            Ok(request) => request,
            Err(e) => return Ok(Err(self.refusal(e))),
        };
        if request.scope.contains(OPENID) && !self.openid_enabled().await? {
            let error = OAuthError::InvalidScope("OpenID Connect is not enabled".into());
            return Ok(Err(self.redirect_error(&request, &error)));
        }
        // An unknown resource goes back to the client now, before anyone signs in for it.
        match self.code_audience(&client, &request).await {
            Ok(_) => Ok(Ok((client, request))),
            Err(FlowError::OAuth(error)) => Ok(Err(self.refusal(AuthorizeError::Redirect {
                redirect_uri: request.redirect_uri,
                error,
                state: request.state,
            }))),
            Err(e) => Err(e),
        }
    }

    /// A code for `request`, for the audience decided now, in the redirect to the client.
    async fn issue_code(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
        user: &User,
        auth_time: Option<UnixTime>,
        now: UnixTime,
    ) -> Result<String, FlowError> {
        let audience = self.code_audience(client, request).await?;
        let store = &*self.store;
        let grant = CodeGrant {
            audience: &audience,
            user,
            auth_time,
        };
        issue_code(store, client, request, grant, self.issuer(), now).await
    }

    /// The audience of a code for `request` (RFC 8707 §2.1).
    async fn code_audience(
        &self,
        client: &Client,
        request: &AuthorizationRequest,
    ) -> Result<Audience, FlowError> {
        self.resources
            .audience(&request.resources, client, &request.scope)
            .await
    }

    fn refusal(&self, e: AuthorizeError) -> AuthorizeStep {
        match e {
            AuthorizeError::Show(message) => AuthorizeStep::Refused {
                title: "Invalid authorization request",
                message,
            },
            AuthorizeError::Redirect {
                redirect_uri,
                error,
                state,
            } => AuthorizeStep::Redirect(error_redirect(
                &redirect_uri,
                &error,
                state.as_deref(),
                self.issuer(),
            )),
        }
    }
}

/// Records the person's approval: the union of what they approved for this client before
/// and what this request asks.
pub async fn approve(
    store: &dyn Store,
    client: &Client,
    request: &AuthorizationRequest,
    user: &User,
    now: UnixTime,
) -> Result<(), FlowError> {
    let previous = store.get_consent(&user.id, &client.id).await?;
    let scope = match previous {
        Some(p) => p.union(&request.scope),
        None => request.scope.clone(),
    };
    store.put_consent(&user.id, &client.id, &scope, now).await?;
    let name = user.username.as_str();
    tracing::info!(event = "consent_granted", user = %name, client_id = %client.id, scope = %request.scope);
    let event = AuditEvent::new(now, AuditKind::Consent, Actor::User(name.into()))
        .user(name)
        .client(client.id.as_str())
        .with("scope", request.scope.to_string())
        .with("consented", scope.to_string());
    audit::record(store, event).await;
    Ok(())
}

/// Whom a code is for: the audience decided for it, the person, and when they signed in.
#[derive(Debug, Clone, Copy)]
pub struct CodeGrant<'a> {
    pub audience: &'a Audience,
    pub user: &'a User,
    pub auth_time: Option<UnixTime>,
}

/// Stores a new code for the request and returns the redirect that hands it to the client,
/// with `state` and the issuer (RFC 9207).
pub async fn issue_code(
    store: &dyn Store,
    client: &Client,
    request: &AuthorizationRequest,
    grant: CodeGrant<'_>,
    issuer: &str,
    now: UnixTime,
) -> Result<String, FlowError> {
    let CodeGrant {
        audience,
        user,
        auth_time,
    } = grant;
    let code = RawToken::generate(TokenKind::AuthorizationCode).map_err(FlowError::internal)?;
    store
        .insert_code(&AuthorizationCodeRecord {
            hash: code.key(),
            client_id: client.id.clone(),
            user_id: user.id.clone(),
            redirect_uri: request.redirect_uri.as_str().to_owned(),
            redirect_uri_given: request.redirect_uri_given,
            scope: request.scope.clone(),
            code_challenge: request
                .code_challenge
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            issued_at: now,
            expires_at: now.saturating_add(CODE_LIFETIME),
            redeemed_at: None,
            family_id: new_family_id().map_err(FlowError::internal)?,
            audience: audience.clone(),
            nonce: request.oidc.nonce.clone(),
            auth_time,
        })
        .await?;
    let mut params = vec![("code", code.expose())];
    if let Some(s) = &request.state {
        params.push(("state", s));
    }
    params.push(("iss", issuer));
    tracing::debug!(event = "code_issued", user = %user.username.as_str(), client_id = %client.id);
    Ok(redirect_with(&request.redirect_uri, &params))
}

/// The query string of a validated request, to resume it after signing in again.
pub fn resume_query(client: &Client, request: &AuthorizationRequest) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in request_fields(client, request) {
        q.append_pair(name, &value);
    }
    q.finish()
}

/// The parameters of a validated request, as a consent form re-sends them.
pub fn request_fields<'a>(
    client: &'a Client,
    request: &'a AuthorizationRequest,
) -> Vec<(&'static str, std::borrow::Cow<'a, str>)> {
    let mut fields = vec![
        ("response_type", "code".into()),
        ("client_id", client.id.as_str().into()),
        ("scope", request.scope.to_string().into()),
    ];
    if request.redirect_uri_given {
        fields.push(("redirect_uri", request.redirect_uri.as_str().into()));
    }
    if let Some(s) = &request.state {
        fields.push(("state", s.as_str().into()));
    }
    if let Some(c) = &request.code_challenge {
        fields.push(("code_challenge", c.as_str().into()));
        fields.push(("code_challenge_method", "S256".into()));
    }
    for resource in request.resources.iter() {
        fields.push(("resource", resource.as_str().into()));
    }
    if let Some(nonce) = &request.oidc.nonce {
        fields.push(("nonce", nonce.as_str().into()));
    }
    if let Some(max_age) = request.oidc.max_age {
        fields.push(("max_age", max_age.to_string().into()));
    }
    let prompt = request.oidc.prompt;
    let words = [
        (prompt.none, "none"),
        (prompt.login, "login"),
        (prompt.consent, "consent"),
    ];
    let prompt: Vec<_> = words
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| *w)
        .collect();
    if !prompt.is_empty() {
        fields.push(("prompt", prompt.join(" ").into()));
    }
    fields
}
