//! What every admin handler shares: the extractors whose refusals are problem details, the
//! admin-token check, the page query and the JSON shapes of the answers.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tessera_core::client::Client;
use tessera_core::oidc::Profile;
use tessera_core::resource::Resource;
use tessera_core::user::User;
use tessera_flow::admin::{Page, PageRequest};
use tessera_store::{ClientOidc, TokenFamily};
use utoipa::{IntoParams, ToSchema};

use crate::error::WebError;
use crate::state::AppState;

/// The longest `detail` a refused request's problem repeats of the parser's message.
const MAX_DETAIL_CHARS: usize = 300;

/// Admits a request only with a live admin token (every route but the document).
pub async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.flows.admin_operator(authorization).await {
        Ok(operator) => {
            let mut request = request;
            request.extensions_mut().insert(operator);
            next.run(request).await
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

fn refused(status: StatusCode, text: String) -> WebError {
    WebError::AdminRequest {
        status,
        detail: text.chars().take(MAX_DETAIL_CHARS).collect(),
    }
}

/// `axum::Json`, refusing as a problem: 400 (syntax), 413 (size), 415 (content type) or
/// 422 (a value of the wrong type or a missing field).
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, WebError> {
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(value)| Self(value))
            .map_err(|e: JsonRejection| refused(e.status(), e.body_text()))
    }
}

/// `axum::extract::Path`, refusing as a problem (400).
pub struct AdminPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AdminPath<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|e: PathRejection| refused(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// `axum::extract::Query`, refusing as a problem (400).
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WebError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|e: QueryRejection| refused(StatusCode::BAD_REQUEST, e.body_text()))
    }
}

/// Which page of a list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items in the page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next` cursor of the page before; absent for the first page.
    pub after: Option<String>,
}

impl From<PageQuery> for PageRequest {
    fn from(q: PageQuery) -> Self {
        // A limit out of range is refused by the flow, not clamped here.
        PageRequest {
            limit: q.limit,
            after: q.after,
        }
    }
}

macro_rules! page {
    ($($(#[$doc:meta])* $name:ident of $item:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// The cursor of the next page (`after`); null on the last.
            pub next: Option<String>,
        }

        impl<T: Into<$item>> From<Page<T>> for $name {
            fn from(page: Page<T>) -> Self {
                Self {
                    items: page.items.into_iter().map(Into::into).collect(),
                    next: page.next,
                }
            }
        }
    )*};
}
pub(crate) use page;

page! {
    /// A page of clients, by id.
    ClientPage of ClientView;
    /// A page of resource servers, by identifier.
    ResourcePage of ResourceView;
    /// A page of users, by username.
    UserPage of UserView;
    /// A page of token families, by family id.
    FamilyPage of FamilyView;
}

/// A registered client.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    /// Public clients have no secret and use PKCE.
    pub public: bool,
    pub grant_types: Vec<String>,
    /// The scopes it may request, space-separated.
    pub scope: String,
    pub redirect_uris: Vec<String>,
    /// Its users are not asked for consent.
    pub skip_consent: bool,
    /// It registered itself (RFC 7591).
    pub self_registered: bool,
    /// The resource server this client is the credentials of.
    pub resource: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// The secret, in the answer to its creation only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_secret: Option<String>,
    /// Its OpenID Connect settings: in the answers about this one client, not in lists.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub oidc: Option<ClientOidcView>,
}

/// A client's OpenID Connect settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientOidcView {
    /// Where it may send people after they sign out (RP-initiated logout), matched exactly.
    pub post_logout_redirect_uris: Vec<String>,
    /// The algorithm of its ID tokens; absent: the server's default, ES256.
    pub id_token_signed_response_alg: Option<SigningAlg>,
}

/// An algorithm ID tokens are signed with.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub enum SigningAlg {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "RS256")]
    Rs256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }
}

impl From<ClientOidc> for ClientOidcView {
    fn from(oidc: ClientOidc) -> Self {
        Self {
            post_logout_redirect_uris: oidc.post_logout_redirect_uris,
            id_token_signed_response_alg: match oidc.id_token_signed_response_alg.as_deref() {
                Some("RS256") => Some(SigningAlg::Rs256),
                Some(_) => Some(SigningAlg::Es256),
                None => None,
            },
        }
    }
}

impl From<Client> for ClientView {
    fn from(c: Client) -> Self {
        Self {
            public: c.is_public(),
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scope: c.scope.to_string(),
            redirect_uris: c
                .redirect_uris
                .iter()
                .map(|u| u.as_str().to_owned())
                .collect(),
            resource: c.resource.map(|r| r.to_string()),
            created_at: c.created_at.as_secs(),
            client_id: c.id.into_string(),
            name: c.name,
            skip_consent: c.skip_consent,
            self_registered: c.self_registered,
            client_secret: None,
            oidc: None,
        }
    }
}

/// A registered resource server (RFC 8707).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    /// Its identifier, an absolute URI.
    pub resource: String,
    pub name: String,
    /// The scopes it defines, space-separated.
    pub scope: String,
    /// The client it introspects as.
    pub client_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Its client's secret, in the answer to its creation only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_secret: Option<String>,
}

impl From<Resource> for ResourceView {
    fn from(r: Resource) -> Self {
        Self {
            resource: r.uri.to_string(),
            name: r.name,
            scope: r.scope.to_string(),
            client_id: r.client_id.into_string(),
            created_at: r.created_at.as_secs(),
            client_secret: None,
        }
    }
}

/// A user and their profile (never a password hash).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// The stable `sub` of their tokens.
    pub user_id: String,
    pub username: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    /// Unix seconds.
    pub created_at: i64,
}

impl From<(User, Profile)> for UserView {
    fn from((user, profile): (User, Profile)) -> Self {
        Self {
            user_id: user.id.into_string(),
            username: user.username.as_str().to_owned(),
            name: profile.name,
            email: profile.email,
            email_verified: profile.email_verified,
            created_at: user.created_at.as_secs(),
        }
    }
}

/// The active tokens of one grant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FamilyView {
    pub family_id: String,
    pub client_id: String,
    /// The person's `sub`.
    pub user_id: Option<String>,
    /// Unix seconds: when its oldest active token was issued.
    pub issued_at: i64,
    /// Unix seconds: when its last active token expires.
    pub expires_at: i64,
    /// How many of its tokens are active.
    pub active_tokens: u64,
}

impl From<TokenFamily> for FamilyView {
    fn from(f: TokenFamily) -> Self {
        Self {
            family_id: f.family_id.into_string(),
            client_id: f.client_id.into_string(),
            user_id: f.subject.map(|s| s.into_string()),
            issued_at: f.issued_at.as_secs(),
            expires_at: f.expires_at.as_secs(),
            active_tokens: f.tokens,
        }
    }
}

/// How many tokens a revocation reached.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// How many sessions ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ended {
    pub ended: u64,
}
